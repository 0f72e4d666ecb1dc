// End to end on real data: prepare a Beauty subset, train SR-GNN for one epoch, beat most-popular;
// and the same through the `llm4sbr run` command line a user types.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <nlohmann/json.hpp>

#include "e2e/beauty_subset.hpp"
#include "test_support.hpp"

using namespace llm4sbr;

TEST(EndToEnd, SrGnnOneEpochBeatsMostPopularOnBeautySubset) {
  LLM4SBR_REQUIRE_DATA("amazon-beauty-2014");
  const auto [test, popular] = llm4sbr::testing::expect_beats_most_popular(llm4sbr::testing::beauty_subset_config());
  EXPECT_GT(test.at("MRR@20"), popular.at("MRR@20"));
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
