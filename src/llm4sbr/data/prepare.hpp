// From raw interactions to the samples of the paper (paper-notes §1): sessionize, filter, remap ids,
// split, and build (prefix, target) samples.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/data/dataset.hpp"
#include "llm4sbr/core/settings.hpp"

namespace llm4sbr::data {

enum class SessionizeMode {
  kUser,   ///< one session per user/session key (the paper's Beauty)
  kClock,  ///< fixed clock-aligned buckets of `clock_seconds` per user (the reference's ML-1M: 10 min)
  kGap,    ///< a new session after `gap_seconds` of inactivity (most session datasets)
};

enum class SplitMode {
  kOrdered,  ///< the last sessions in session order (order of first appearance in the source) are test
  kTime,     ///< sessions sorted by start time, the latest are test
};

struct PrepareOptions {
  SessionizeMode sessionize = SessionizeMode::kUser;
  std::int64_t clock_seconds = 600;
  std::int64_t gap_seconds = 1800;
  std::int64_t min_session_length = 2;  ///< sessions shorter than this are dropped
  std::int64_t min_item_count = 5;      ///< items seen fewer times are removed (see iterative_filter)
  /// false: drop every session that contains a rare item (the reference's whole-session drop), once.
  /// true: repeat "remove rare items, drop short sessions" until nothing changes.
  bool iterative_filter = false;
  SplitMode split = SplitMode::kOrdered;
  double test_fraction = 0.1;          ///< share of sessions held out for test (floor, like the reference)
  std::int64_t test_sessions = -1;     ///< if >= 0, exactly this many sessions are test (overrides fraction)
  double valid_fraction = 0.1;         ///< share of the training sessions (the last ones) carved for validation
  bool augment = true;                 ///< every prefix is a sample (Beauty); false: last item only (ML-1M)
  std::int64_t max_sessions = -1;      ///< if >= 0, keep only the first N sessions (subsets for tests)
  /// A longer session keeps only its last N clicks (after filtering), which bounds every model's memory
  /// and time per sample; 0 = no limit. The default covers Beauty's longest session (204 clicks).
  std::int64_t max_session_length = 256;
};

/// The keys of data.* (prepare_options_from_config, and skip_malformed for the readers).
const SettingsSchema& data_settings();

/// Reads `data.*` keys of a run config (sessionize, clock_seconds, gap_seconds, min_session_length,
/// min_item_count, iterative_filter, split, test_fraction, test_sessions, valid_fraction, augment,
/// max_sessions, max_session_length). Throws ConfigError for an unknown enum value or a bad range.
PrepareOptions prepare_options_from_config(const Config& cfg);

/// Runs the whole preparation. Throws InputError if nothing is left after filtering.
/// Samples are ordered session by session (in split order), longest prefix first within a session,
/// like the reference (`seq[:-i]` for i = 1..len-1), and numbered 0.. within each split.
PreparedDataset prepare(const RawDataset& raw, const PrepareOptions& opt);

/// The statistics written to stats.json: sessions, items, clicks, train_samples, valid_samples,
/// test_samples, avg_prefix_length, avg_session_length, plus per-split session counts.
nlohmann::json dataset_stats(const PreparedDataset& ds);

}  // namespace llm4sbr::data
