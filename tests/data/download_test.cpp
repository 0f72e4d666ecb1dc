// Downloads fail fast and clearly without a network (as on the build machines), and leave nothing behind.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "llm4sbr/core/error.hpp"
#include "llm4sbr/data/download.hpp"
#include "test_support.hpp"

using namespace llm4sbr;

TEST(Download, UnknownNamesListTheKnownOnes) {
  llm4sbr::testing::TempDir dir;
  try {
    data::download_model("gpt-17", dir.path());
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("qwen2.5-0.5b-instruct (chat)"), std::string::npos) << e.what();
  }
  EXPECT_THROW(data::download_dataset("netflix", dir.path()), ConfigError);
  EXPECT_FALSE(data::downloadable_models().empty());
}

TEST(Download, ModelDownloadWithoutNetworkFailsFastNamingTheUrlAndLeavesNoFolder) {
  llm4sbr::testing::TempDir dir;
  const auto models = dir / "models";
  const std::string cmd = fmt::format("'{}' download model qwen2.5-0.5b-instruct --models-dir '{}' > '{}' 2>&1", LLM4SBR_CLI,
                                      models.string(), (dir / "log").string());
  const auto t0 = std::chrono::steady_clock::now();
  const int rc = std::system(cmd.c_str());
  std::stringstream log;
  log << std::ifstream(dir / "log").rdbuf();
  if (rc == 0) GTEST_SKIP() << "this machine reaches the model hub; the offline case cannot be tested here";
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(60));
  EXPECT_NE(log.str().find("huggingface.co/Qwen/Qwen2.5-0.5B-Instruct-GGUF"), std::string::npos) << log.str();
  EXPECT_NE(log.str().find("copy qwen2.5-0.5b-instruct-q4_k_m.gguf into"), std::string::npos) << log.str();
  EXPECT_FALSE(std::filesystem::exists(models)) << "an empty models folder was left behind";
}
