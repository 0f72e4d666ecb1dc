#include "llm4sbr/llm/response_store.hpp"

#include <exception>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "llm4sbr/core/error.hpp"
#include "llm4sbr/core/json_number.hpp"
#include "llm4sbr/core/kill_point.hpp"

namespace llm4sbr::llm {

namespace fs = std::filesystem;

namespace {

ResponseRecord parse_record(const std::string& line, const std::string& file, std::size_t line_no) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range: a number beyond double
    throw InputError(file, line_no, "", std::string("not a JSON object: ") + e.what());
  }
  if (!j.is_object()) throw InputError(file, line_no, "", "not a JSON object");
  // An integer field: absent gives `fallback` (none: required), anything but an integer that fits is an error.
  const auto integer = [&](const char* key, std::optional<std::int64_t> fallback) -> std::int64_t {
    if (!j.contains(key)) {
      if (fallback) return *fallback;
      throw InputError(file, line_no, key, "missing");
    }
    if (const auto v = as_int64(j[key])) return *v;
    throw InputError(file, line_no, key, fmt::format("must be an integer, not {}", j[key].dump().substr(0, 40)));
  };
  ResponseRecord r;
  r.sample = integer("sample", std::nullopt);
  r.prompt_tokens = integer("prompt_tokens", 0);
  r.completion_tokens = integer("completion_tokens", 0);
  try {
    r.view = j.at("view").get<std::string>();
    r.prompt_hash = j.at("prompt_hash").get<std::string>();
    r.model = j.value("model", "");
    r.response = j.at("response").get<std::string>();
    r.seconds = j.value("seconds", 0.0);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(file, line_no, "", std::string("bad response record: ") + e.what());
  }
  return r;
}

// Calls on_record(line number, record) for every complete line and returns the size in bytes of the
// complete lines: what is left after them is the torn tail of an interrupted write.
std::uintmax_t scan_records(const fs::path& file, const std::function<void(std::size_t, ResponseRecord&&)>& on_record) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw InputError(file.string(), 0, "", "cannot open");
  std::string line;
  std::size_t line_no = 0;
  std::uintmax_t good_bytes = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (in.eof()) {  // the last line of a killed write has no '\n'
      spdlog::warn("{}:{}: cutting off a torn last record ({} bytes) left by an interrupted run", file.string(), line_no,
                   line.size());
      break;
    }
    good_bytes += line.size() + 1;
    if (!line.empty()) on_record(line_no, parse_record(line, file.string(), line_no));
  }
  return good_bytes;
}

}  // namespace

std::string to_jsonl(const ResponseRecord& r) {
  nlohmann::json j = {{"sample", r.sample},          {"view", r.view},
                      {"prompt_hash", r.prompt_hash}, {"model", r.model},
                      {"response", r.response},       {"prompt_tokens", r.prompt_tokens},
                      {"completion_tokens", r.completion_tokens}, {"seconds", r.seconds}};
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

std::vector<std::pair<std::size_t, ResponseRecord>> read_response_file(const fs::path& file) {
  std::vector<std::pair<std::size_t, ResponseRecord>> out;
  scan_records(file, [&](std::size_t line_no, ResponseRecord&& r) { out.emplace_back(line_no, std::move(r)); });
  return out;
}

ResponseStore::ResponseStore(fs::path file) : file_(std::move(file)) {
  if (file_.has_parent_path()) fs::create_directories(file_.parent_path());
  created_ = !fs::exists(file_);
  exceptions_at_open_ = std::uncaught_exceptions();
  out_ = std::fopen(file_.c_str(), "ab");
  if (!out_) throw InputError(file_.string(), 0, "", "cannot open for appending");
  // Locked before the torn tail is cut: a second writer would lose lines. The kernel drops the lock when
  // the process dies, so a killed run never leaves the file locked.
  if (::flock(::fileno(out_), LOCK_EX | LOCK_NB) != 0) {
    std::fclose(out_);
    out_ = nullptr;
    throw InputError(file_.string(), 0, "",
                     "another process (an infer or run still going?) is writing this file; wait for it or use "
                     "another output folder");
  }
  const std::uintmax_t good_bytes = scan_records(file_, [&](std::size_t, ResponseRecord&& r) {
    by_prompt_[r.prompt_hash] = {r.sample, r.view};
    records_[{r.sample, r.view}] = std::move(r);
  });
  if (fs::file_size(file_) != good_bytes) fs::resize_file(file_, good_bytes);
}

ResponseStore::~ResponseStore() {
  if (!out_) return;
  // A store created by a job that failed before its first answer (the servers could not be reached, say)
  // must not look like the start of one; removed while the lock is still held. A job that succeeds keeps
  // its file, empty or not (a shard may hold no prompt of a split).
  std::error_code ec;
  const bool failing = std::uncaught_exceptions() > exceptions_at_open_;
  if (failing && created_ && records_.empty() && fs::file_size(file_, ec) == 0 && !ec) fs::remove(file_, ec);
  std::fclose(out_);
}

bool ResponseStore::has(std::int64_t sample, const std::string& view, const std::string& prompt_hash) const {
  auto it = records_.find({sample, view});
  return it != records_.end() && it->second.prompt_hash == prompt_hash;
}

std::optional<ResponseRecord> ResponseStore::find_prompt(const std::string& prompt_hash) const {
  auto it = by_prompt_.find(prompt_hash);
  if (it == by_prompt_.end()) return std::nullopt;
  return records_.at(it->second);
}

void ResponseStore::append(const ResponseRecord& r) {
  // One write of the whole line: a kill leaves either the full line or a torn tail that has no '\n'.
  const std::string line = to_jsonl(r);
  if (kill_points_armed()) {
    static std::atomic<std::int64_t> appended{0};
    if (const auto point = fmt::format("answer:{}", ++appended); is_kill_point(point)) {
      std::fwrite(line.data(), 1, line.size() / 2, out_);  // the torn line a kill mid-write leaves
      std::fflush(out_);
      kill_point(point);
    }
  }
  if (std::fwrite(line.data(), 1, line.size(), out_) != line.size() || std::fflush(out_) != 0)
    throw Error(fmt::format("{}: write failed (disk full?): {}", file_.string(), std::strerror(errno)));
  by_prompt_[r.prompt_hash] = {r.sample, r.view};
  records_[{r.sample, r.view}] = r;
}

}  // namespace llm4sbr::llm
