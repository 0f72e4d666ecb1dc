#include "llm4sbr/llm/shard.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <charconv>
#include <map>
#include <set>

#include "llm4sbr/core/atomic_file.hpp"
#include "llm4sbr/core/error.hpp"
#include "llm4sbr/core/hash.hpp"
#include "llm4sbr/llm/response_store.hpp"

namespace llm4sbr::llm {

namespace fs = std::filesystem;

Shard Shard::parse(const std::string& text) {
  Shard s;
  const auto slash = text.find('/');
  auto number = [&](std::size_t from, std::size_t to, std::int64_t& out) {
    const char* end = text.data() + to;
    auto [ptr, ec] = std::from_chars(text.data() + from, end, out);
    return ec == std::errc() && ptr == end && to > from;
  };
  if (slash == std::string::npos || !number(0, slash, s.index) || !number(slash + 1, text.size(), s.count) ||
      s.count < 1 || s.index < 1 || s.index > s.count)
    throw ConfigError(fmt::format("--shard must be i/n with 1 <= i <= n (e.g. 2/8), not '{}'", text));
  return s;
}

bool Shard::holds(const std::string& prompt_hash) const {
  if (count == 1) return true;
  std::uint64_t h = 0;
  std::from_chars(prompt_hash.data(), prompt_hash.data() + prompt_hash.size(), h, 16);
  return static_cast<std::int64_t>(h % static_cast<std::uint64_t>(count)) == index - 1;
}

void for_each_prompt(const data::PreparedDataset& ds, const std::vector<data::Sample>& samples,
                     const std::vector<std::string>& views, const text::PromptTemplate& tpl,
                     const std::function<void(PromptKey&&)>& visit) {
  for (const auto& sample : samples)
    for (const auto& view : views) {
      PromptKey key{sample.id, view, "", text::build_prompt(tpl, ds, sample, view)};
      key.hash = hash_hex(key.prompt);
      visit(std::move(key));
    }
}

std::vector<PromptKey> prompt_keys(const data::PreparedDataset& ds, const std::vector<data::Sample>& samples,
                                   const std::vector<std::string>& views, const text::PromptTemplate& tpl) {
  std::vector<PromptKey> keys;
  for_each_prompt(ds, samples, views, tpl, [&](PromptKey&& k) {
    k.prompt.clear();
    keys.push_back(std::move(k));
  });
  return keys;
}

namespace {

using Key = std::pair<std::int64_t, std::string>;

struct Found {
  ResponseRecord record;
  std::string where;  // "file:line"
};

// The problems of a merge, a few of each kind shown in full and the rest counted.
class Problems {
 public:
  void add(const std::string& kind, std::string text) {
    auto& [count, shown] = by_kind_[kind];
    if (++count <= kShown) shown.push_back(std::move(text));
  }
  bool empty() const { return by_kind_.empty(); }
  std::string describe() const {
    std::string out;
    for (const auto& [kind, entry] : by_kind_) {
      const auto& [count, shown] = entry;
      out += fmt::format("\n  {} {}: {}{}", count, kind, fmt::join(shown, "; "),
                         count > kShown ? fmt::format("; ... ({} more)", count - kShown) : "");
    }
    return out;
  }

 private:
  static constexpr std::size_t kShown = 5;
  std::map<std::string, std::pair<std::size_t, std::vector<std::string>>> by_kind_;
};

}  // namespace

std::vector<ResponseRecord> collect_answers(const std::vector<PromptKey>& expected, const std::vector<fs::path>& files,
                                            const std::string& what, bool other_views_ok) {
  std::map<Key, const PromptKey*> wanted;
  std::set<std::string> views;
  for (const auto& k : expected) {
    wanted[{k.sample, k.view}] = &k;
    views.insert(k.view);
  }
  std::map<Key, Found> found;
  Problems problems;
  for (const auto& file : files) {
    if (!fs::exists(file)) throw InputError(file.string(), 0, "", "no such file (did this shard's infer run finish?)");
    std::map<Key, Found> in_file;  // a later line of a (sample, view) replaces an earlier one, as in ResponseStore
    for (auto& [line, r] : read_response_file(file)) {
      if (other_views_ok && !views.count(r.view)) continue;
      Key key{r.sample, r.view};
      in_file[key] = {std::move(r), fmt::format("{}:{}", file.string(), line)};
    }
    for (auto& [key, f] : in_file) {
      const auto w = wanted.find(key);
      if (w == wanted.end()) {
        problems.add("records of an unexpected (sample, view)",
                     fmt::format("{}: sample {} view {}", f.where, key.first, key.second));
      } else if (w->second->hash != f.record.prompt_hash) {
        problems.add("records answering another prompt (different prompt settings?)",
                     fmt::format("{}: sample {} view {}", f.where, key.first, key.second));
      } else if (auto [it, fresh] = found.try_emplace(key, f); !fresh) {
        problems.add("doubled records", fmt::format("{} and {}: sample {} view {}", it->second.where, f.where, key.first, key.second));
      }
    }
  }
  for (const auto& k : expected)
    if (!found.count({k.sample, k.view}))
      problems.add("(sample, view) pairs without a record (an unfinished shard?)", fmt::format("sample {} view {}", k.sample, k.view));
  // One LLM answers every prompt: shards made with other models would mix their intents in one run. A record
  // without a model name (written by hand) matches any.
  std::map<std::string, std::string> first_of_model;
  for (const auto& [key, f] : found)
    if (!f.record.model.empty()) first_of_model.try_emplace(f.record.model, f.where);
  if (first_of_model.size() > 1)
    for (const auto& [model, where] : first_of_model)
      problems.add("models answering (one model must answer every prompt)", fmt::format("'{}' at {}", model, where));
  if (!problems.empty()) {
    std::vector<std::string> names;
    for (const auto& f : files) names.push_back(f.string());
    throw Error(fmt::format("{} refused; the answers ({}) do not hold every expected prompt exactly once, from one "
                            "model:{}", what, fmt::join(names, ", "), problems.describe()));
  }
  std::vector<ResponseRecord> out;
  out.reserve(expected.size());
  for (const auto& k : expected) out.push_back(std::move(found.at({k.sample, k.view}).record));
  return out;
}

void write_response_file(const std::vector<ResponseRecord>& records, const fs::path& out_file) {
  if (out_file.has_parent_path()) fs::create_directories(out_file.parent_path());
  AtomicFile out(out_file);
  for (const auto& r : records) out.write(to_jsonl(r));
  out.commit();
}

std::size_t merge_shards(const std::vector<PromptKey>& expected, const std::vector<fs::path>& shard_files,
                         const fs::path& out_file) {
  const auto records = collect_answers(expected, shard_files, "merge into " + out_file.string());
  write_response_file(records, out_file);
  return records.size();
}

}  // namespace llm4sbr::llm
