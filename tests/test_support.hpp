// Helpers shared by the tests: where the real data is, and scratch directories.
#pragma once

#include <gtest/gtest.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

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

/// A tiny random-weight GGUF model built for the tests (tiny-qwen2-chat.gguf, tiny-bert-embed.gguf).
inline std::filesystem::path tiny_model(const std::string& name) { return std::filesystem::path(LLM4SBR_TINY_MODELS) / name; }

/// Every line of a JSON-lines file, parsed (blank lines skipped).
inline std::vector<nlohmann::json> read_jsonl(const std::filesystem::path& file) {
  std::vector<nlohmann::json> out;
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

/// The whole text of a file ("" if it cannot be read).
inline std::string read_text(const std::filesystem::path& file) {
  std::stringstream s;
  s << std::ifstream(file).rdbuf();
  return s.str();
}

/// Runs a shell command with its output in `log`; returns its exit status (-1 if it did not exit).
inline int run_logged(const std::string& command, const std::filesystem::path& log) {
  const int rc = std::system(fmt::format("{} > '{}' 2>&1", command, log.string()).c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/// The Beauty dataset prepared once (configs/beauty.yaml) into a directory shared by the tests of a process.
inline std::filesystem::path prepared_beauty() {
  static TempDir dir;
  static bool done = false;
  if (!done) {
    const auto cmd = fmt::format("cd '{}' && LLM4SBR_DATA_DIR='{}' '{}' prepare --config configs/beauty.yaml --out '{}' > /dev/null 2>&1",
                                 LLM4SBR_SOURCE_DIR, data_dir().string(), LLM4SBR_CLI, (dir / "beauty").string());
    if (std::system(cmd.c_str()) != 0) throw std::runtime_error("prepare failed: " + cmd);
    done = true;
  }
  return dir / "beauty";
}

/// Skips the current test if a real dataset folder is missing (it ships in ../shared/data).
#define LLM4SBR_REQUIRE_DATA(sub)                                                       \
  do {                                                                                  \
    if (!std::filesystem::exists(::llm4sbr::testing::data_dir() / (sub)))               \
      GTEST_SKIP() << "dataset folder missing: " << (::llm4sbr::testing::data_dir() / (sub)); \
  } while (0)

}  // namespace llm4sbr::testing
