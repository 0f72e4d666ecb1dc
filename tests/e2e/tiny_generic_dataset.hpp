// A small made-up dataset in the generic layout (interactions.csv, items.csv): enough sessions for the whole
// pipeline to run in seconds, with a repeating item order that a model can learn. The CLI tests of write
// failures and diverging training run on it.
#pragma once

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace llm4sbr::testing {

/// Writes DIR/generic/interactions.csv and items.csv (400 sessions of 3 to 8 clicks over 60 items) and
/// returns DIR, the data directory to pass as --data-dir.
inline std::filesystem::path write_tiny_generic_dataset(const std::filesystem::path& dir) {
  const auto folder = dir / "generic";
  std::filesystem::create_directories(folder);
  std::ofstream clicks(folder / "interactions.csv");
  clicks << "session_id,item_id,timestamp\n";
  for (int s = 0; s < 400; ++s) {
    int item = (s * 13) % 60;
    for (int k = 0; k < 3 + s % 6; ++k) {
      clicks << fmt::format("s{},i{},{}\n", s, item, 1000000 + s * 100 + k);
      item = (item * 7 + 3) % 60;  // the next click follows from this one: there is something to learn
    }
  }
  static const char* const kColours[] = {"red", "matte", "rose", "nude", "coral", "plum"};
  static const char* const kKinds[] = {"lipstick", "mascara", "serum", "shampoo", "cream"};
  std::ofstream items(folder / "items.csv");
  items << "item_id,title\n";
  for (int i = 0; i < 60; ++i) items << fmt::format("i{},\"{} {}, no. {}\"\n", i, kColours[i % 6], kKinds[i % 5], i);
  return dir;
}

}  // namespace llm4sbr::testing
