// load_trained: every backbone, plain and with the LLM4SBR head, trained on a tiny dataset, saved, its run
// folder moved, and loaded back scores the test sessions exactly as the model that was saved.
#include "llm4sbr/train/checkpoint.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "llm4sbr/core/error.hpp"
#include "llm4sbr/data/io.hpp"
#include "llm4sbr/data/prepare.hpp"
#include "llm4sbr/intent/intent_stage.hpp"
#include "llm4sbr/models/batch.hpp"
#include "llm4sbr/models/session_encoder.hpp"
#include "llm4sbr/train/build.hpp"
#include "llm4sbr/train/device.hpp"
#include "llm4sbr/train/experiment.hpp"
#include "test_support.hpp"

namespace llm4sbr::train {
namespace {

namespace fs = std::filesystem;
using llm4sbr::testing::TempDir;

// Twenty titled items, 60 users clicking 3-6 of them (seeded), prepared like a real dataset.
data::PreparedDataset tiny_dataset() {
  const std::vector<std::string> words{"red", "matte", "lipstick", "shampoo", "oil", "cream", "blush", "palette",
                                       "serum", "rose", "mint", "gel"};
  data::RawDataset raw;
  raw.name = "tiny";
  std::mt19937 rng(7);
  for (int i = 0; i < 20; ++i)
    raw.titles["i" + std::to_string(i)] = words[i % 12] + " " + words[(i * 5 + 3) % 12] + " " + words[(i * 7 + 1) % 12];
  std::int64_t order = 0;
  for (int u = 0; u < 60; ++u) {
    const int length = 3 + static_cast<int>(rng() % 4);
    for (int c = 0; c < length; ++c)
      raw.interactions.push_back({"u" + std::to_string(u), "i" + std::to_string(rng() % 20), order, order++});
  }
  data::PrepareOptions opt;
  opt.min_item_count = 1;
  opt.test_fraction = 0.2;
  return data::prepare(raw, opt);
}

Config tiny_config(const std::string& model, bool head) {
  Config cfg;
  cfg.set("model", model);
  cfg.set("paths.configs", std::string(LLM4SBR_SOURCE_DIR) + "/configs");
  cfg.set("models." + model + ".hidden_size", "8");
  cfg.apply_overrides({"train.epochs=1", "train.batch_size=16", "intent.source=titles", "intent.top_r=2",
                       "threads=1", std::string("enhance.enabled=") + (head ? "true" : "false")});
  return cfg;
}

// The scores of the first test samples, in eval mode without gradients.
torch::Tensor test_scores(models::RecommenderImpl& model, const data::PreparedDataset& ds, const torch::Tensor& intents) {
  torch::NoGradGuard no_grad;
  model.eval();
  const std::vector<data::Sample> samples(ds.test.begin(), ds.test.begin() + std::min<std::size_t>(8, ds.test.size()));
  auto batch = models::make_batch(samples, device_of(model));
  if (intents.defined()) batch.intents = intents.to(device_of(model)).index_select(0, batch.sample_ids);
  return model.forward(batch).scores.to(torch::kCPU);
}

TEST(LoadTrained, EveryBackboneRoundTripsBitForBitAfterTheRunFolderMoves) {
  TempDir dir;
  const auto run = dir / "run";
  const auto prepared = run / "stages" / "prepare-tiny";
  data::write_prepared(tiny_dataset(), prepared);
  const auto ds = data::read_prepared(prepared);
  ASSERT_GE(ds.test.size(), 4u);

  std::map<std::string, torch::Tensor> saved;  // run folder name -> scores of the saved model
  for (const auto& name : models::registered_encoders())
    for (const bool head : {false, true}) {
      const auto cfg = tiny_config(name, head);
      const std::string folder = name + (head ? "-llm4sbr" : "");
      SCOPED_TRACE(folder);
      if (!head) {
        auto model = build_backbone(cfg, ds);
        train_model(cfg, ds, *model, run / folder, {}, {prepared, {}, {}});
        saved[folder] = test_scores(*model, ds, {});
        continue;
      }
      const auto stage = intent::run_intent_stage(cfg, ds, "tiny", run / "stages");
      auto model = build_llm4sbr(cfg, ds, stage.views, stage.dim);
      train_model(cfg, ds, *model, run / folder, {stage.train, stage.valid, stage.test},
                  {prepared, stage.encoder_dir, stage.dir});
      saved[folder] = test_scores(*model, ds, stage.test);
    }

  fs::rename(run, dir / "moved");
  for (const auto& [folder, scores] : saved) {
    SCOPED_TRACE(folder);
    const auto trained = load_trained(dir / "moved" / folder / "best.pt");
    ASSERT_TRUE(trained.model);
    EXPECT_FALSE(trained.model->is_training());
    EXPECT_TRUE(trained.recorded);
    EXPECT_EQ(trained.dataset->n_items(), ds.n_items());
    EXPECT_EQ(trained.dataset->items.front().raw_id, ds.items.front().raw_id);
    const bool head = folder.ends_with("-llm4sbr");
    EXPECT_EQ(trained.intents_dir.empty(), !head);
    if (head) {
      EXPECT_EQ(trained.views, (std::vector<std::string>{"long", "short"}));
      ASSERT_TRUE(trained.encoder);
      EXPECT_EQ(trained.catalogue.size(0), ds.n_items());
      EXPECT_EQ(trained.catalogue.size(1), trained.text_dim);
    }
    const auto loaded = test_scores(*trained.model, *trained.dataset, trained.intents("test"));
    EXPECT_TRUE(torch::equal(loaded, scores)) << "max |diff| " << (loaded - scores).abs().max().item<float>();
  }
}

TEST(LoadTrained, ACheckpointWithoutItsDataOrIntentsIsRefusedNamingWhatIsMissing) {
  TempDir dir;
  const auto prepared = dir / "prepared";
  data::write_prepared(tiny_dataset(), prepared);
  const auto ds = data::read_prepared(prepared);
  const auto cfg = tiny_config("srgnn", true);
  const auto stage = intent::run_intent_stage(cfg, ds, "tiny", dir / "stages");
  auto model = build_llm4sbr(cfg, ds, stage.views, stage.dim);
  train_model(cfg, ds, *model, dir / "run", {stage.train, stage.valid, stage.test}, {prepared, stage.encoder_dir, stage.dir});

  fs::remove_all(stage.dir);
  try {
    load_trained(dir / "run" / "best.pt");
    FAIL() << "loaded without its intents";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("are not there"), std::string::npos) << e.what();
  }
  fs::remove_all(prepared);
  LoadOptions plain;
  plain.config = tiny_config("srgnn", false);
  plain.intents = dir / "elsewhere";
  EXPECT_THROW(load_trained(dir / "run" / "best.pt", torch::kCPU, plain), InputError);
}

}  // namespace
}  // namespace llm4sbr::train
