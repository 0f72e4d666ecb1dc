// responses.jsonl: the resumable record of the intent-inference stage (DESIGN.md, "File formats").
//
// One JSON object per line and per (sample, view): {"sample", "view", "prompt_hash", "model", "response",
// "prompt_tokens", "completion_tokens", "seconds"}. Records are appended and flushed as they arrive, so a
// killed run (even kill -9) loses at most the generations in flight; a torn last line (the process died
// mid-write) is cut off when the store is opened again, with a warning, and never breaks the next run.
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace llm4sbr::llm {

struct ResponseRecord {
  std::int64_t sample = 0;  ///< Sample::id within the split
  std::string view;         ///< "long", "short", "normal"
  std::string prompt_hash;  ///< hash_hex of the prompt text
  std::string model;        ///< backend and model that answered
  std::string response;     ///< the raw answer text
  std::int64_t prompt_tokens = 0;
  std::int64_t completion_tokens = 0;
  double seconds = 0;       ///< wall time of the generation (shared by a batch)
};

/// A record as one line of responses.jsonl (with the trailing '\n').
std::string to_jsonl(const ResponseRecord& record);

/// Every complete record of a responses.jsonl file, in file order, with its 1-based line number; a torn
/// last line (no '\n') is left out with a warning. Reads only: the file is not changed. Throws InputError
/// naming the file (and line) if it cannot be opened or a complete line is not a valid record.
std::vector<std::pair<std::size_t, ResponseRecord>> read_response_file(const std::filesystem::path& file);

class ResponseStore {
 public:
  /// Opens (creating if needed) `file`, locks it (flock, exclusive, released on close or death), reads every
  /// complete record and truncates a torn last line. Throws InputError naming the file when another
  /// process holds the lock, and the file and line for a complete line that is not a valid record.
  explicit ResponseStore(std::filesystem::path file);
  /// Closes the file. A file this store created and never wrote to is removed when the store is destroyed by
  /// an exception (a job that failed before its first answer leaves nothing behind).
  ~ResponseStore();
  ResponseStore(const ResponseStore&) = delete;
  ResponseStore& operator=(const ResponseStore&) = delete;

  /// True if (sample, view) already has a record for this prompt hash.
  bool has(std::int64_t sample, const std::string& view, const std::string& prompt_hash) const;
  /// A finished answer to the same prompt (any sample), to reuse instead of generating again.
  std::optional<ResponseRecord> find_prompt(const std::string& prompt_hash) const;
  /// Appends and flushes one record. A record for a (sample, view) that exists replaces it in memory
  /// (the file keeps both; the later one wins when read back).
  void append(const ResponseRecord& record);

  const std::map<std::pair<std::int64_t, std::string>, ResponseRecord>& records() const { return records_; }
  std::size_t size() const { return records_.size(); }
  const std::filesystem::path& file() const { return file_; }

 private:
  std::filesystem::path file_;
  std::FILE* out_ = nullptr;
  bool created_ = false;          ///< the file did not exist before this store opened it
  int exceptions_at_open_ = 0;    ///< std::uncaught_exceptions() when opened
  std::map<std::pair<std::int64_t, std::string>, ResponseRecord> records_;
  std::map<std::string, std::pair<std::int64_t, std::string>> by_prompt_;
};

}  // namespace llm4sbr::llm
