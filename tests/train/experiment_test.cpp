// The cached stages of `llm4sbr run`: where the raw data must be, and what a damaged cache says.
#include "llm4sbr/train/experiment.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/core/error.hpp"
#include "test_support.hpp"

using namespace llm4sbr;
namespace fs = std::filesystem;

namespace {

// The error message of `f`, or "" when it throws nothing.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(PrepareCached, AnEmptyDataDirectorySaysHowToFillIt) {
  llm4sbr::testing::TempDir dir;
  fs::create_directories(dir / "data");
  const auto e = error_of([&] { train::prepare_cached(Config::parse("dataset: ml-100k"), dir / "data", dir / "stages"); });
  EXPECT_NE(e.find("no ml-100k data in " + (dir / "data" / "ml-100k").string()), std::string::npos) << e;
  EXPECT_NE(e.find("`llm4sbr download ml-100k`"), std::string::npos) << e;
  const auto g = error_of([&] { train::prepare_cached(Config::parse("dataset: generic"), dir / "data", dir / "stages"); });
  EXPECT_NE(g.find("put interactions.csv"), std::string::npos) << g;
}

TEST(PrepareCached, ADamagedCachedStageNamesTheFolderToDelete) {
  llm4sbr::testing::TempDir dir;
  fs::create_directories(dir / "data" / "generic");
  std::ofstream clicks(dir / "data" / "generic" / "interactions.csv");
  clicks << "session_id,item_id\n";
  for (int s = 0; s < 20; ++s)
    for (int j = 0; j < 3; ++j) clicks << "s" << s << ",i" << (s + j) % 5 << "\n";
  clicks.close();
  const auto cfg = Config::parse("dataset: generic\ndata: {min_item_count: 1}");
  const auto ds = train::prepare_cached(cfg, dir / "data", dir / "stages");
  fs::path stage;
  for (const auto& e : fs::directory_iterator(dir / "stages")) stage = e.path();
  ASSERT_TRUE(stage.filename().string().starts_with("prepare-")) << stage;
  std::ofstream(stage / "train.tsv") << "not a sample\n";  // damaged, e.g. by a full disk
  for (int retry = 0; retry < 2; ++retry) {
    const auto e = error_of([&] { train::prepare_cached(cfg, dir / "data", dir / "stages"); });
    EXPECT_NE(e.find("train.tsv"), std::string::npos) << e;
    EXPECT_NE(e.find("cached stage " + stage.string() + ": delete that folder"), std::string::npos) << e;
  }
  fs::remove_all(stage);  // as the message says: the next run prepares it again
  EXPECT_EQ(train::prepare_cached(cfg, dir / "data", dir / "stages").train.size(), ds.train.size());
}
