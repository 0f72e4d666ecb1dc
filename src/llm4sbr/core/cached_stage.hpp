// Reading what a cached stage folder holds (runs/X/stages/<stage>-<key>/): a damaged cache fails the same way
// on every retry until the folder is deleted, so its errors say which folder that is.
#pragma once

#include <fmt/format.h>

#include <filesystem>

#include "llm4sbr/core/error.hpp"

namespace llm4sbr {

/// Calls `read()` on what the cached stage folder `stage_dir` holds; an Error it throws is thrown again, as
/// Error, with a hint that names the folder to delete so that the next run re-creates the stage.
template <class Read>
auto read_cached_stage(const std::filesystem::path& stage_dir, Read&& read) -> decltype(read()) {
  try {
    return read();
  } catch (const Error& e) {
    throw Error(fmt::format("{}\n  (this comes from the cached stage {}: delete that folder and run again to re-create it)",
                            e.what(), stage_dir.string()));
  }
}

}  // namespace llm4sbr
