// End to end on real data: prepare a Beauty subset, train SR-GNN for one epoch, beat most-popular;
// and the same through the `llm4sbr run` command line a user types.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <nlohmann/json.hpp>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/data/prepare.hpp"
#include "llm4sbr/data/readers.hpp"
#include "llm4sbr/train/experiment.hpp"
#include "llm4sbr/train/popularity.hpp"
#include "llm4sbr/train/trainer.hpp"
#include "test_support.hpp"

using namespace llm4sbr;

namespace {

// The first 4,000 Beauty users; a 5-core filter on a subset would drop almost every session, so rare
// items are removed iteratively with a lower threshold.
Config subset_config() {
  Config cfg = Config::load(std::filesystem::path(LLM4SBR_SOURCE_DIR) / "configs" / "beauty.yaml");
  cfg.set("paths.configs", std::string(LLM4SBR_SOURCE_DIR) + "/configs");
  cfg.apply_overrides({"data.max_sessions=4000", "data.min_item_count=3", "data.iterative_filter=true",
                       "train.epochs=1", "threads=2"});
  return cfg;
}

}  // namespace

TEST(EndToEnd, SrGnnOneEpochBeatsMostPopularOnBeautySubset) {
  LLM4SBR_REQUIRE_DATA("amazon-beauty-2014");
  Config cfg = subset_config();
  auto raw = data::read_dataset("beauty", llm4sbr::testing::data_dir() / "amazon-beauty-2014");
  auto ds = data::prepare(raw, data::prepare_options_from_config(cfg));
  ASSERT_GT(ds.train.size(), 10000u);
  ASSERT_GT(ds.test.size(), 1000u);

  auto opt = train::train_options_from_config(cfg);
  train::PopularityRecommenderImpl pop(ds);
  auto pop_metrics = train::evaluate(pop, ds.test, opt, false);

  llm4sbr::testing::TempDir dir;
  auto run = train::train_backbone(cfg, ds, dir.path());
  ASSERT_EQ(run.result.epochs.size(), 1u);
  EXPECT_GT(run.result.test.at("HR@20"), pop_metrics.at("HR@20"));
  EXPECT_GT(run.result.test.at("MRR@20"), pop_metrics.at("MRR@20"));
  EXPECT_TRUE(std::filesystem::exists(dir / "srgnn" / "best.pt"));
}

TEST(EndToEnd, CliRunWritesMetricsAndReuseThePreparedData) {
  LLM4SBR_REQUIRE_DATA("amazon-beauty-2014");
  llm4sbr::testing::TempDir dir;
  const std::string cmd = fmt::format(
      "cd '{}' && LLM4SBR_DATA_DIR='{}' '{}' run --config configs/beauty.yaml --set data.max_sessions=1500 "
      "--set data.min_item_count=2 --set data.iterative_filter=true "
      "--set train.epochs=1 --set enhance.enabled=false --out '{}' > '{}' 2>&1",
      LLM4SBR_SOURCE_DIR, llm4sbr::testing::data_dir().string(), LLM4SBR_CLI, (dir / "run").string(), (dir / "log.txt").string());
  ASSERT_EQ(std::system(cmd.c_str()), 0) << std::ifstream(dir / "log.txt").rdbuf();
  auto metrics = nlohmann::json::parse(std::ifstream(dir / "run" / "metrics.json"));
  for (const char* k : {"HR@5", "HR@10", "HR@20", "MRR@5", "MRR@20", "NDCG@5", "NDCG@20"}) {
    ASSERT_TRUE(metrics["test"].contains(k)) << k;
    EXPECT_GE(metrics["test"][k].get<double>(), 0.0);
    EXPECT_LE(metrics["test"][k].get<double>(), 100.0);
  }
  EXPECT_TRUE(metrics["best_on_test"].contains("HR@20"));
  EXPECT_EQ(metrics["epochs"].size(), 1u);
  EXPECT_TRUE(std::filesystem::exists(dir / "run" / "results.md"));
  EXPECT_TRUE(std::filesystem::exists(dir / "run" / "config.yaml"));

  // A misspelled key is an error that names it, before any work is done.
  const std::string typo = fmt::format("cd '{}' && '{}' run --config configs/beauty.yaml --set train.epoch=3 --out '{}' > '{}' 2>&1",
                                       LLM4SBR_SOURCE_DIR, LLM4SBR_CLI, (dir / "typo").string(), (dir / "typo.txt").string());
  EXPECT_NE(std::system(typo.c_str()), 0);
  std::stringstream typo_log;
  typo_log << std::ifstream(dir / "typo.txt").rdbuf();
  EXPECT_NE(typo_log.str().find("unknown config key 'train.epoch'"), std::string::npos) << typo_log.str();
  EXPECT_FALSE(std::filesystem::exists(dir / "typo" / "stages"));

  // Running the same command again re-uses the prepared data instead of reading the raw files.
  ASSERT_EQ(std::system((cmd + " ; grep -q 're-using' '" + (dir / "log.txt").string() + "'").c_str()), 0)
      << std::ifstream(dir / "log.txt").rdbuf();
}
