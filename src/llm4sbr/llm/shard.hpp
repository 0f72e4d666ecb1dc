// Stage 1 over many machines: `infer --shard i/n` answers a deterministic 1/n of the prompts, and
// merge_shards joins the shards' responses.jsonl into one store, checking that every expected prompt is
// answered exactly once. The shard of a prompt is a function of its text alone (its hash), so identical
// prompts land in one shard and are generated once, and shards balance without knowing each other.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "llm4sbr/data/dataset.hpp"
#include "llm4sbr/llm/response_store.hpp"
#include "llm4sbr/text/prompts.hpp"

namespace llm4sbr::llm {

struct Shard {
  std::int64_t index = 1;  ///< 1..count
  std::int64_t count = 1;

  /// Parses "i/n" with 1 <= i <= n. Throws ConfigError quoting the text otherwise.
  static Shard parse(const std::string& text);
  /// Whether this shard answers the prompt whose hash_hex is `prompt_hash`: its value mod n is i - 1.
  bool holds(const std::string& prompt_hash) const;
};

/// One (sample, view) prompt of a split.
struct PromptKey {
  std::int64_t sample = 0;
  std::string view;
  std::string hash;    ///< hash_hex(prompt)
  std::string prompt;  ///< the user message
};

/// Calls visit(key) for every (sample, view) of `samples`, in sample order and then `views` order.
/// Visiting instead of returning a vector keeps a split of 300,000 prompts out of memory.
void for_each_prompt(const data::PreparedDataset& ds, const std::vector<data::Sample>& samples,
                     const std::vector<std::string>& views, const text::PromptTemplate& tpl,
                     const std::function<void(PromptKey&&)>& visit);

/// The keys of every (sample, view) of `samples` with their hashes, prompt texts left out: what a merge
/// expects.
std::vector<PromptKey> prompt_keys(const data::PreparedDataset& ds, const std::vector<data::Sample>& samples,
                                   const std::vector<std::string>& views, const text::PromptTemplate& tpl);

/// One record per expected (sample, view), taken from `files` (the stores of `infer` shards, or of one
/// `merge`), in the order of `expected`. Within one file a later record of a (sample, view) replaces an
/// earlier one, as ResponseStore reads it. Records of a view that no expected key has are left out when
/// `other_views_ok` (answers made for more views than a run uses), else they count as unexpected. Throws
/// Error starting with `what` and listing the problems (each with file and line, a few of each kind) when
/// a record is doubled across files, answers a (sample, view) that is not expected or another prompt than
/// the expected one, or when an expected (sample, view) has no record; InputError for an unreadable file.
std::vector<ResponseRecord> collect_answers(const std::vector<PromptKey>& expected,
                                            const std::vector<std::filesystem::path>& files, const std::string& what,
                                            bool other_views_ok = false);

/// Writes `records` as `out_file` (atomically, replacing it; its folder is created).
void write_response_file(const std::vector<ResponseRecord>& records, const std::filesystem::path& out_file);

/// `llm4sbr merge`: collect_answers of the shard files (every record must be expected) written as
/// `out_file`. Returns the number of records written; throws as collect_answers, naming `out_file`.
std::size_t merge_shards(const std::vector<PromptKey>& expected, const std::vector<std::filesystem::path>& shard_files,
                         const std::filesystem::path& out_file);

}  // namespace llm4sbr::llm
