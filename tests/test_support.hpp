// Helpers shared by the tests: where the real data is, and scratch directories.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>

namespace llm4sbr::testing {

/// The shared data directory: $LLM4SBR_DATA_DIR, else ../shared/data beside the checkout.
inline std::filesystem::path data_dir() {
  if (const char* env = std::getenv("LLM4SBR_DATA_DIR"); env && *env) return env;
  return std::filesystem::path(LLM4SBR_SOURCE_DIR) / ".." / "shared" / "data";
}

/// A fresh, empty directory under the system temp dir, removed when the object dies.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() / ("llm4sbr-test-" + std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

/// Skips the current test if a real dataset folder is missing (it ships in ../shared/data).
#define LLM4SBR_REQUIRE_DATA(sub)                                                       \
  do {                                                                                  \
    if (!std::filesystem::exists(::llm4sbr::testing::data_dir() / (sub)))               \
      GTEST_SKIP() << "dataset folder missing: " << (::llm4sbr::testing::data_dir() / (sub)); \
  } while (0)

}  // namespace llm4sbr::testing
