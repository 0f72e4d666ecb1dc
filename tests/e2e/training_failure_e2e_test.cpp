// Training that diverges: a learning rate that explodes after the first epoch makes the loss NaN or infinite.
// `llm4sbr train` must stop with an error naming the epoch and the batch, and leave the checkpoint of the last
// good epoch in place, whole and usable by `evaluate`.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>
#include <string>
#include <vector>

#include "e2e/limited_process.hpp"
#include "e2e/tiny_generic_dataset.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using llm4sbr::testing::run_with_file_size_limit;

namespace {

constexpr unsigned kTimeoutSeconds = 300;

llm4sbr::testing::ProcessResult cli(std::vector<std::string> args) {
  args.insert(args.begin(), LLM4SBR_CLI);
  return run_with_file_size_limit(args, -1, kTimeoutSeconds, LLM4SBR_SOURCE_DIR);
}

}  // namespace

TEST(TrainingFailure, ExplodingLossStopsNamingEpochAndBatchAndKeepsTheLastGoodCheckpoint) {
  llm4sbr::testing::TempDir root;
  const auto data = llm4sbr::testing::write_tiny_generic_dataset(root / "data");
  const auto prepared = root / "prepared";
  const auto prep = cli({"prepare", "--dataset", "generic", "--data-dir", data.string(), "--out", prepared.string(),
                         "--set", "data.min_item_count=2"});
  ASSERT_EQ(prep.exit_code, 0) << prep.output;

  // Epoch 1 trains at lr 1e-3; from epoch 2 on the rate is multiplied by 1e30 (lr_gamma, every epoch).
  const auto run = root / "run";
  const auto train = cli({"train", "--data", prepared.string(), "--out", run.string(), "--set", "train.epochs=3",
                          "--set", "train.lr_step=1", "--set", "train.lr_gamma=1e30", "--set", "threads=1"});
  EXPECT_EQ(train.exit_code, 2) << "an llm4sbr::Error is exit code 2:\n" << train.output;
  std::smatch where;
  const std::string& out = train.output;
  EXPECT_TRUE(std::regex_search(out, where, std::regex(R"(became -?(nan|inf|non-finite) at epoch 2, batch [0-9]+)")))
      << "the error does not name the epoch and batch:\n" << out;
  EXPECT_EQ(out.find("epoch 3"), std::string::npos) << "training went on after the loss diverged:\n" << out;

  // The checkpoint of epoch 1 is still there: evaluated again, it gives epoch 1's test HR@20 (the same
  // weights through the same deterministic evaluation, printed with the same two decimals).
  std::smatch epoch1;
  ASSERT_TRUE(std::regex_search(out, epoch1, std::regex(R"(epoch 1: .*\| test HR@20 ([0-9]+\.[0-9]+))"))) << out;
  const auto best = run / "sr-gnn" / "best.pt";  // train writes into the folder run uses (the display name)
  ASSERT_TRUE(fs::exists(best)) << out;
  const auto eval = cli({"evaluate", "--data", prepared.string(), "--checkpoint", best.string()});
  ASSERT_EQ(eval.exit_code, 0) << eval.output;
  std::smatch row;
  ASSERT_TRUE(std::regex_search(eval.output, row, std::regex(R"(SR-GNN +[0-9.]+ +[0-9.]+ +([0-9.]+) )"))) << eval.output;
  EXPECT_EQ(row[1].str(), epoch1[1].str()) << "best.pt is not the checkpoint of epoch 1:\n" << eval.output;
}
