#include "llm4sbr/data/io.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <charconv>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string_view>

#include "llm4sbr/core/atomic_file.hpp"
#include "llm4sbr/core/error.hpp"
#include "llm4sbr/core/hash.hpp"
#include "llm4sbr/data/prepare.hpp"

namespace llm4sbr::data {

std::string samples_fingerprint(const PreparedDataset& ds, const std::vector<Sample>& samples) {
  std::string text;
  for (const auto& item : ds.items) text += fmt::format("{}\t{}\n", item.id, item.title);
  for (const auto& s : samples) text += fmt::format("{}\t{}\t{}\n", s.id, fmt::join(s.prefix, " "), s.target);
  return hash_hex(text);
}

std::string tsv_field(std::string_view text) {
  std::string out(text);
  for (char& c : out)
    if (c == '\t' || c == '\n' || c == '\r') c = ' ';
  return out;
}

namespace fs = std::filesystem;

namespace {

constexpr const char* kSplitNames[3] = {"train", "valid", "test"};
constexpr const char* kFiles[] = {"items.tsv", "sessions.tsv", "train.tsv", "valid.tsv", "test.tsv", "stats.json"};

void append_clean(std::string& out, std::string_view s) { out += tsv_field(s); }

void append_int(std::string& out, std::int64_t v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof(buf), v);
  out.append(buf, r.ptr);
}

void append_ids(std::string& out, const std::vector<std::int64_t>& ids) {
  for (std::size_t k = 0; k < ids.size(); ++k) {
    if (k) out.push_back(' ');
    append_int(out, ids[k]);
  }
}

std::string read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path.string(), 0, "", fs::exists(path) ? "cannot open file" : "file not found");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return text;
}

/// Walks the lines of a TSV file, numbering them from 1.
class TsvReader {
 public:
  explicit TsvReader(const fs::path& path) : file_(path.string()), text_(read_all(path)) {}

  bool next() {
    while (pos_ < text_.size()) {
      std::size_t end = text_.find('\n', pos_);
      if (end == std::string::npos) end = text_.size();
      std::string_view line(text_.data() + pos_, end - pos_);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      pos_ = end + 1;
      ++line_;
      if (line.empty()) continue;
      fields_.clear();
      std::size_t start = 0;
      while (true) {
        const std::size_t p = line.find('\t', start);
        if (p == std::string_view::npos) {
          fields_.push_back(line.substr(start));
          break;
        }
        fields_.push_back(line.substr(start, p - start));
        start = p + 1;
      }
      return true;
    }
    return false;
  }

  void expect_fields(const std::vector<const char*>& names) const {
    if (fields_.size() != names.size())
      throw InputError(file_, line_, names[std::min(fields_.size(), names.size() - 1)],
                       fmt::format("expected {} tab-separated fields, found {}", names.size(), fields_.size()));
  }

  std::string_view field(std::size_t k) const { return fields_[k]; }

  std::int64_t integer(std::size_t k, const char* name) const {
    const std::string_view s = fields_[k];
    std::int64_t v = 0;
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc() || p != s.data() + s.size())
      throw InputError(file_, line_, name, fmt::format("expected an integer, found '{}'", s));
    return v;
  }

  /// Space-separated model ids, each in 1..n_items.
  std::vector<std::int64_t> ids(std::size_t k, const char* name, std::int64_t n_items, bool allow_empty) const {
    std::vector<std::int64_t> out;
    const std::string_view s = fields_[k];
    std::size_t i = 0;
    while (i < s.size()) {
      while (i < s.size() && s[i] == ' ') ++i;
      if (i >= s.size()) break;
      std::size_t j = i;
      while (j < s.size() && s[j] != ' ') ++j;
      std::int64_t v = 0;
      const auto [p, ec] = std::from_chars(s.data() + i, s.data() + j, v);
      if (ec != std::errc() || p != s.data() + j)
        throw InputError(file_, line_, name, fmt::format("expected an item id, found '{}'", s.substr(i, j - i)));
      check_id(v, name, n_items);
      out.push_back(v);
      i = j;
    }
    if (out.empty() && !allow_empty) throw InputError(file_, line_, name, "empty list of item ids");
    return out;
  }

  void check_id(std::int64_t v, const char* name, std::int64_t n_items) const {
    if (v < 1 || v > n_items)
      throw InputError(file_, line_, name, fmt::format("item id {} outside 1..{}", v, n_items));
  }

  const std::string& file() const { return file_; }
  std::size_t line() const { return line_; }

 private:
  std::string file_;
  std::string text_;
  std::size_t pos_ = 0;
  std::size_t line_ = 0;
  std::vector<std::string_view> fields_;
};

}  // namespace

void write_prepared(const PreparedDataset& ds, const fs::path& dir) {
  fs::create_directories(dir);
  // stats.json marks a complete dataset (is_prepared): remove it first, write it last.
  std::error_code ec;
  fs::remove(dir / "stats.json", ec);

  const nlohmann::json stats = dataset_stats(ds);
  const std::int64_t n_train_sessions = stats["train_sessions"].get<std::int64_t>();
  const std::int64_t n_valid_sessions = stats["valid_sessions"].get<std::int64_t>();

  std::string out;
  out.reserve(ds.items.size() * 64);
  out += "model_id\traw_id\ttitle\n";
  for (const auto& it : ds.items) {
    append_int(out, it.id);
    out.push_back('\t');
    append_clean(out, it.raw_id);
    out.push_back('\t');
    append_clean(out, it.title);
    out.push_back('\n');
  }
  write_file_atomically(dir / "items.tsv", out);

  out.clear();
  for (std::size_t k = 0; k < ds.sessions.size(); ++k) {
    const Session& s = ds.sessions[k];
    const auto idx = static_cast<std::int64_t>(k);
    const int split = idx < n_train_sessions ? 0 : (idx < n_train_sessions + n_valid_sessions ? 1 : 2);
    append_int(out, idx);
    out.push_back('\t');
    append_clean(out, s.key);
    out.push_back('\t');
    out += kSplitNames[split];
    out.push_back('\t');
    append_int(out, s.start_time);
    out.push_back('\t');
    append_ids(out, s.items);
    out.push_back('\n');
  }
  write_file_atomically(dir / "sessions.tsv", out);

  for (int k = 0; k < 3; ++k) {
    out.clear();
    for (const auto& x : ds.split(kSplitNames[k])) {
      append_int(out, x.id);
      out.push_back('\t');
      append_int(out, x.session);
      out.push_back('\t');
      append_ids(out, x.prefix);
      out.push_back('\t');
      append_int(out, x.target);
      out.push_back('\n');
    }
    write_file_atomically(dir / (std::string(kSplitNames[k]) + ".tsv"), out);
  }

  write_file_atomically(dir / "stats.json", stats.dump(2) + "\n");
}

namespace {

// stats.json is written last (it marks a complete folder) and records how many rows each file had: a file
// cut short or edited since (fewer rows that still parse) must not be trained on silently.
void check_counts_against_stats(const PreparedDataset& ds, const nlohmann::json& stats, const fs::path& dir) {
  if (!stats.is_object()) return;
  const std::pair<const char*, std::pair<const char*, std::size_t>> counts[] = {
      {"items", {"items.tsv", ds.items.size()}},         {"sessions", {"sessions.tsv", ds.sessions.size()}},
      {"train_samples", {"train.tsv", ds.train.size()}}, {"valid_samples", {"valid.tsv", ds.valid.size()}},
      {"test_samples", {"test.tsv", ds.test.size()}}};
  for (const auto& [key, file_and_rows] : counts) {
    if (!stats.contains(key) || !stats[key].is_number_integer()) continue;
    const auto expected = stats[key].get<std::int64_t>();
    if (expected != static_cast<std::int64_t>(file_and_rows.second))
      throw InputError((dir / file_and_rows.first).string(), 0, "",
                       fmt::format("holds {} rows but stats.json records {} ({}): the prepared dataset was cut short "
                                   "or edited; delete {} to prepare it again",
                                   file_and_rows.second, expected, key, dir.string()));
  }
}

}  // namespace

PreparedDataset read_prepared(const fs::path& dir) {
  PreparedDataset ds;
  const fs::path stats_path = dir / "stats.json";
  nlohmann::json stats;
  {
    const std::string text = read_all(stats_path);
    try {
      stats = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range: a number beyond double
      throw InputError(stats_path.string(), 0, "", std::string("invalid JSON: ") + e.what());
    }
    ds.name = stats.is_object() && stats.contains("name") && stats["name"].is_string()
                  ? stats["name"].get<std::string>()
                  : dir.filename().string();
    if (stats.is_object() && stats.contains("skipped_rows") && stats["skipped_rows"].is_number_integer())
      ds.skipped_rows = stats["skipped_rows"].get<std::int64_t>();
  }
  {
    TsvReader r(dir / "items.tsv");
    bool header = true;
    while (r.next()) {
      if (header) {
        header = false;
        if (r.field(0) == "model_id") continue;
      }
      r.expect_fields({"model_id", "raw_id", "title"});
      const std::int64_t id = r.integer(0, "model_id");
      if (id != ds.n_items() + 1)
        throw InputError(r.file(), r.line(), "model_id",
                         fmt::format("expected id {} (ids must be 1..N in order), found {}", ds.n_items() + 1, id));
      ds.items.push_back({id, std::string(r.field(1)), std::string(r.field(2))});
    }
    if (ds.items.empty()) throw InputError(r.file(), 0, "", "no items");
  }
  const std::int64_t n_items = ds.n_items();
  std::vector<int> session_split;
  {
    TsvReader r(dir / "sessions.tsv");
    int last_split = 0;
    while (r.next()) {
      r.expect_fields({"session_index", "key", "split", "start_time", "items"});
      const std::int64_t idx = r.integer(0, "session_index");
      if (idx != static_cast<std::int64_t>(ds.sessions.size()))
        throw InputError(r.file(), r.line(), "session_index",
                         fmt::format("expected {} (sessions must be numbered 0.. in order), found {}",
                                     ds.sessions.size(), idx));
      int split = -1;
      for (int k = 0; k < 3; ++k)
        if (r.field(2) == kSplitNames[k]) split = k;
      if (split < 0)
        throw InputError(r.file(), r.line(), "split",
                         fmt::format("expected train, valid or test, found '{}'", r.field(2)));
      if (split < last_split)
        throw InputError(r.file(), r.line(), "split", "sessions must be listed in split order (train, valid, test)");
      last_split = split;
      Session s;
      s.key = std::string(r.field(1));
      s.start_time = r.integer(3, "start_time");
      s.items = r.ids(4, "items", n_items, false);
      ds.sessions.push_back(std::move(s));
      session_split.push_back(split);
    }
  }
  for (int k = 0; k < 3; ++k) {
    TsvReader r(dir / (std::string(kSplitNames[k]) + ".tsv"));
    std::vector<Sample>& out = k == 0 ? ds.train : (k == 1 ? ds.valid : ds.test);
    while (r.next()) {
      r.expect_fields({"sample_id", "session_index", "prefix", "target"});
      Sample x;
      x.id = r.integer(0, "sample_id");
      if (x.id != static_cast<std::int64_t>(out.size()))
        throw InputError(r.file(), r.line(), "sample_id",
                         fmt::format("expected {} (samples must be numbered 0.. in order), found {}", out.size(),
                                     x.id));
      x.session = r.integer(1, "session_index");
      if (x.session < 0 || x.session >= static_cast<std::int64_t>(ds.sessions.size()))
        throw InputError(r.file(), r.line(), "session_index",
                         fmt::format("session {} outside 0..{}", x.session, ds.sessions.size() - 1));
      if (session_split[static_cast<std::size_t>(x.session)] != k)
        throw InputError(r.file(), r.line(), "session_index",
                         fmt::format("session {} belongs to the {} split", x.session,
                                     kSplitNames[session_split[static_cast<std::size_t>(x.session)]]));
      x.prefix = r.ids(2, "prefix", n_items, false);
      x.target = r.integer(3, "target");
      r.check_id(x.target, "target", n_items);
      out.push_back(std::move(x));
    }
  }
  check_counts_against_stats(ds, stats, dir);
  return ds;
}

bool is_prepared(const fs::path& dir) {
  std::error_code ec;
  for (const char* f : kFiles)
    if (!fs::is_regular_file(dir / f, ec)) return false;
  return true;
}

}  // namespace llm4sbr::data
