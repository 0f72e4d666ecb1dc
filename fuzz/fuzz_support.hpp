// What every libFuzzer target of fuzz/ shares: turning one fuzz input into the files a parser reads, and the
// rule that decides what a crash is.
//
// The rule: a parser of outside input may refuse it only with an llm4sbr::Error (which names the file, line
// and field, DESIGN.md "Habits"). Anything else that escapes — a std::out_of_range from deep inside, a
// yaml-cpp or JSON exception without the file's name — terminates the process and libFuzzer reports it, as
// it reports every sanitizer finding (the targets are built with ASan and UBSan), leak and hang.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "llm4sbr/core/error.hpp"

namespace llm4sbr::fuzz {

/// Separates the files of a multi-file input (ASCII "file separator"; absent from the real data).
inline constexpr char kFileSeparator = '\x1c';

/// The input cut at every kFileSeparator: part i is the content of the parser's i-th file.
inline std::vector<std::string_view> split_files(const std::uint8_t* data, std::size_t size) {
  std::vector<std::string_view> parts;
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  for (std::size_t cut; (cut = rest.find(kFileSeparator)) != std::string_view::npos; rest.remove_prefix(cut + 1))
    parts.push_back(rest.substr(0, cut));
  parts.push_back(rest);
  return parts;
}

/// A directory of this process for the files of one input: on /dev/shm when there is one (a fuzz run
/// writes them millions of times), removed at exit.
class ScratchDir {
 public:
  ScratchDir() {
    const std::filesystem::path base = std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : std::filesystem::temp_directory_path();
    path_ = base / ("llm4sbr-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::filesystem::path& path() const { return path_; }

  /// Writes part i of `parts` to names[i]; a name without a part is removed (that file is missing).
  void write(const std::vector<std::string>& names, const std::vector<std::string_view>& parts) const {
    for (std::size_t i = 0; i < names.size(); ++i) {
      const auto file = path_ / names[i];
      if (i < parts.size()) {
        std::ofstream(file, std::ios::binary | std::ios::trunc).write(parts[i].data(), static_cast<std::streamsize>(parts[i].size()));
      } else {
        std::error_code ec;
        std::filesystem::remove(file, ec);
      }
    }
  }

  /// Writes the whole input to `name` and returns its path.
  std::filesystem::path write_one(const std::string& name, const std::uint8_t* data, std::size_t size) const {
    write({name}, {std::string_view(reinterpret_cast<const char*>(data), size)});
    return path_ / name;
  }

 private:
  std::filesystem::path path_;
};

/// The scratch directory of this fuzz process.
inline const ScratchDir& scratch() {
  static const ScratchDir dir;
  return dir;
}

/// Runs `parse`; an llm4sbr::Error is a refusal (fine), anything else escapes and is a crash.
template <typename F>
void refusals_only(F&& parse) {
  try {
    parse();
  } catch (const llm4sbr::Error&) {
  }
}

}  // namespace llm4sbr::fuzz
