#include "llm4sbr/data/data_dir.hpp"

#include <fmt/format.h>

#include <cstdlib>

#include "llm4sbr/core/error.hpp"

namespace llm4sbr::data {

namespace fs = std::filesystem;

fs::path resolve_data_dir(const std::string& override_dir) {
  if (!override_dir.empty()) {
    if (fs::exists(override_dir)) return override_dir;
    throw ConfigError(fmt::format("data directory '{}' (--data-dir) does not exist", override_dir));
  }
  if (const char* env = std::getenv("LLM4SBR_DATA_DIR"); env && *env) {
    if (fs::exists(env)) return env;
    throw ConfigError(fmt::format("LLM4SBR_DATA_DIR='{}' does not exist", env));
  }
  fs::path fallback = "../shared/data";
  if (fs::exists(fallback)) return fallback;
  throw ConfigError(fmt::format(
      "no data directory: set LLM4SBR_DATA_DIR or pass --data-dir (looked for {} from {}); "
      "`llm4sbr download DATASET` fetches the public files",
      fallback.string(), fs::current_path().string()));
}

}  // namespace llm4sbr::data
