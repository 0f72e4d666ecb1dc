// Training settings and checkpoints: messages that name what is wrong.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/core/error.hpp"
#include "llm4sbr/train/checkpoint.hpp"
#include "llm4sbr/train/trainer.hpp"
#include "test_support.hpp"

using namespace llm4sbr;

namespace {

std::string config_error(const std::string& yaml) {
  try {
    train::train_options_from_config(Config::parse(yaml));
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(TrainOptions, ARangeErrorNamesItsOwnKeyAndValue) {
  EXPECT_NE(config_error("train: {eval_batch_size: 0}").find("train.eval_batch_size = 0 must be >= 1"), std::string::npos)
      << config_error("train: {eval_batch_size: 0}");
  EXPECT_NE(config_error("train: {batch_size: -3}").find("train.batch_size = -3"), std::string::npos);
  EXPECT_NE(config_error("train: {epochs: 0}").find("train.epochs = 0"), std::string::npos);
  EXPECT_EQ(config_error("train: {eval_batch_size: 50}"), "");
}

TEST(Checkpoint, ATruncatedFileIsCalledTruncatedAndNamed) {
  llm4sbr::testing::TempDir dir;
  torch::nn::Linear model(4, 3);
  const auto file = dir / "best.pt";
  torch::save(model, file.string());
  train::load_checkpoint(*model, file);  // intact: loads
  std::filesystem::resize_file(file, std::filesystem::file_size(file) / 2);
  try {
    train::load_checkpoint(*model, file);
    FAIL() << "a truncated checkpoint loaded";
  } catch (const InputError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(file.string()), std::string::npos) << what;
    EXPECT_NE(what.find("truncated or corrupt"), std::string::npos) << what;
    EXPECT_EQ(what.find("does not match the model"), std::string::npos) << what;
  }
}

// A batch of long sessions is cut smaller, so that evaluation memory (count x longest prefix²) stays bounded.
TEST(EvalBatches, LongPrefixesMakeSmallerBatchesAndEverySampleComesOnceInOrder) {
  std::vector<data::Sample> samples;
  const auto add = [&](std::size_t length, int n) {
    for (int k = 0; k < n; ++k)
      samples.push_back({static_cast<std::int64_t>(samples.size()), 0, std::vector<std::int64_t>(length, 1), 1});
  };
  add(5, 700);   // short: batches of eval_batch_size
  add(5000, 3);  // one user's 5,000 clicks: alone in their batches
  add(128, 40);  // 128 clicks: 500 * 64² / 128² = 125 fit, and only 40 are there
  const auto batches = train::eval_batches(samples, 500);
  std::vector<std::int64_t> seen;
  for (const auto& b : batches) {
    std::int64_t longest = 0;
    for (const auto i : b) longest = std::max<std::int64_t>(longest, samples[static_cast<std::size_t>(i)].prefix.size());
    EXPECT_LE(static_cast<std::int64_t>(b.size()), 500);
    EXPECT_TRUE(b.size() == 1 || static_cast<std::int64_t>(b.size()) * longest * longest <= 500 * train::kEvalCellsPerSample);
    seen.insert(seen.end(), b.begin(), b.end());
  }
  ASSERT_EQ(seen.size(), samples.size());
  for (std::size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], static_cast<std::int64_t>(i));
  EXPECT_EQ(batches.size(), 2u + 3u + 1u);  // 500 + 200 short, one per long session, the 40 together
}
