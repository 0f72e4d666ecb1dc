// Atomic file output, the one writer every stage uses: a file appears under its final name only once it
// is complete, so a killed run never leaves a half-written file that a re-run would take as finished.
#pragma once

#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace llm4sbr {

/// Writes a file through a temporary sibling ("NAME.tmp.PID") that is renamed to NAME by commit(), so
/// that a killed run never leaves a half-written file under the final name. Destroying an uncommitted
/// writer removes the temporary file. Throws Error naming the file when it cannot be created, written
/// (disk full) or renamed. Not thread-safe; move-only.
class AtomicFile {
 public:
  explicit AtomicFile(std::filesystem::path target);
  AtomicFile(AtomicFile&& other) noexcept;
  AtomicFile& operator=(AtomicFile&&) = delete;
  AtomicFile(const AtomicFile&) = delete;
  ~AtomicFile();

  void write(const void* data, std::size_t bytes);
  void write(std::string_view text) { write(text.data(), text.size()); }
  /// Flushes, closes and renames the temporary file to the target. Call once.
  void commit();

  const std::filesystem::path& target() const { return target_; }

 private:
  void fail(const std::string& what);

  std::filesystem::path target_;
  std::filesystem::path tmp_;
  std::FILE* file_ = nullptr;
};

/// Removes from `dir` the temporary files ("NAME.tmp.PID") of writers that are gone (a kill between create and
/// rename leaves one): those of `name` only, or every one when `name` is empty. The file of a process still
/// alive (another run writing the same folder) is kept. Returns the files removed. AtomicFile::commit calls it
/// for its own name.
std::vector<std::filesystem::path> remove_orphaned_temporaries(const std::filesystem::path& dir, std::string_view name = {});

/// Writes `text` to `file` atomically (AtomicFile).
void write_file_atomically(const std::filesystem::path& file, std::string_view text);

}  // namespace llm4sbr
