// The data model of a session-based recommendation dataset, from raw interactions to prepared samples.
//
// Ids: raw ids are the strings of the source files (ASIN, MovieLens movieId); model ids are 1..N in order
// of first appearance after filtering, and 0 is padding (the convention of SR-GNN and LLM4SBR).
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace llm4sbr::data {

/// One click (or rating) as read from the source files.
struct Interaction {
  std::string session_key;  ///< user id or session id, as in the source file
  std::string item;         ///< raw item id
  std::int64_t timestamp;   ///< Unix seconds (0 where the source has no time)
  std::int64_t order;       ///< position in the source, to break timestamp ties stably
};

/// What a reader returns: interactions in source order plus the item titles it knows.
struct RawDataset {
  std::string name;
  std::vector<Interaction> interactions;
  std::unordered_map<std::string, std::string> titles;  ///< raw item id -> display title
  std::int64_t skipped_rows = 0;  ///< malformed rows skipped because the user asked for it
};

/// A catalogue item after remapping.
struct Item {
  std::int64_t id;      ///< model id, 1..N
  std::string raw_id;   ///< id in the source files
  std::string title;    ///< display title ("" if the source has none)
};

/// A session after sessionization and filtering, with model ids.
struct Session {
  std::string key;                 ///< "user" or "user@bucket" / "user#k", readable in sessions.tsv
  std::vector<std::int64_t> items; ///< model ids in click order
  std::int64_t start_time = 0;     ///< timestamp of the first click
};

/// One prediction problem: the prefix of a session and the next item.
struct Sample {
  std::int64_t id;                  ///< row index within its split (0-based), the key of intents.npy rows
  std::int64_t session;             ///< index into PreparedDataset::sessions
  std::vector<std::int64_t> prefix; ///< model ids, oldest first, never empty
  std::int64_t target;              ///< model id, 1..N
};

/// The output of `llm4sbr prepare`, as written to a prepared dataset directory.
struct PreparedDataset {
  std::string name;
  std::vector<Item> items;        ///< items[k] has id k+1
  std::vector<Session> sessions;  ///< every kept session, in split order (train, valid, test)
  std::vector<Sample> train;
  std::vector<Sample> valid;
  std::vector<Sample> test;
  std::int64_t skipped_rows = 0;  ///< malformed source rows skipped (data.skip_malformed)

  std::int64_t n_items() const { return static_cast<std::int64_t>(items.size()); }
  const std::vector<Sample>& split(const std::string& name) const;
};

}  // namespace llm4sbr::data
