// Where the raw datasets are: the one rule every command that reads raw data follows.
#pragma once

#include <filesystem>
#include <string>

namespace llm4sbr::data {

/// The raw-data directory: `override_dir` if set, else $LLM4SBR_DATA_DIR, else ../shared/data.
/// Throws ConfigError naming every place it looked if none exists.
std::filesystem::path resolve_data_dir(const std::string& override_dir = "");

}  // namespace llm4sbr::data
