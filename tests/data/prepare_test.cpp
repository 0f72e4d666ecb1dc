#include "llm4sbr/data/prepare.hpp"

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <tuple>

#include "llm4sbr/core/error.hpp"
#include "llm4sbr/data/readers.hpp"
#include "test_support.hpp"

namespace llm4sbr::data {
namespace {

using llm4sbr::testing::data_dir;
using Ids = std::vector<std::int64_t>;

/// Interactions in source order: (key, item, timestamp).
RawDataset make_raw(const std::vector<std::tuple<std::string, std::string, std::int64_t>>& rows) {
  RawDataset raw;
  raw.name = "hand-made";
  for (const auto& [k, i, t] : rows)
    raw.interactions.push_back({k, i, t, static_cast<std::int64_t>(raw.interactions.size())});
  return raw;
}

PrepareOptions loose() {
  PrepareOptions o;
  o.min_item_count = 1;
  o.test_fraction = 0.0;
  o.valid_fraction = 0.0;
  return o;
}

/// Sessions as raw item ids, to compare independently of the remapping.
std::vector<std::vector<std::string>> raw_sessions(const PreparedDataset& ds) {
  std::vector<std::vector<std::string>> out;
  for (const auto& s : ds.sessions) {
    auto& v = out.emplace_back();
    for (const auto id : s.items) v.push_back(ds.items[static_cast<std::size_t>(id - 1)].raw_id);
  }
  return out;
}

std::vector<std::string> keys(const PreparedDataset& ds) {
  std::vector<std::string> out;
  for (const auto& s : ds.sessions) out.push_back(s.key);
  return out;
}

using Sessions = std::vector<std::vector<std::string>>;
using Keys = std::vector<std::string>;

// --- sessionization ---------------------------------------------------------------------------

TEST(Prepare, UserSessionsSortByTimeThenOrder) {
  // u2 appears first; within u1 the clicks are out of time order and two tie at t=5.
  const RawDataset raw = make_raw({{"u2", "x", 1}, {"u1", "c", 9}, {"u1", "a", 5}, {"u2", "y", 2}, {"u1", "b", 5}});
  const PreparedDataset ds = prepare(raw, loose());
  EXPECT_EQ(keys(ds), (Keys{"u2", "u1"}));
  EXPECT_EQ(raw_sessions(ds), (Sessions{{"x", "y"}, {"a", "b", "c"}}));
  EXPECT_EQ(ds.sessions[1].start_time, 5);
}

TEST(Prepare, ClockSessions) {
  PrepareOptions o = loose();
  o.sessionize = SessionizeMode::kClock;
  o.clock_seconds = 600;
  // u: buckets 0 (t=10, 590), 1 (t=600, 1000); v: bucket 0 and a lone click in bucket 2.
  const RawDataset raw =
      make_raw({{"u", "a", 600}, {"v", "p", 5}, {"u", "b", 10}, {"u", "c", 1000}, {"u", "d", 590}, {"v", "q", 7},
                {"v", "r", 1300}});
  const PreparedDataset ds = prepare(raw, o);
  EXPECT_EQ(keys(ds), (Keys{"u@0", "u@1", "v@0"}));  // v@2 has one click and is dropped
  EXPECT_EQ(raw_sessions(ds), (Sessions{{"b", "d"}, {"a", "c"}, {"p", "q"}}));
}

TEST(Prepare, GapSessions) {
  PrepareOptions o = loose();
  o.sessionize = SessionizeMode::kGap;
  o.gap_seconds = 100;
  const RawDataset raw = make_raw(
      {{"u", "a", 0}, {"u", "b", 100}, {"u", "c", 201}, {"u", "d", 250}, {"u", "e", 400}, {"u", "f", 450}});
  const PreparedDataset ds = prepare(raw, o);
  // A gap of exactly 100 s stays in the session; 101 s starts a new one.
  EXPECT_EQ(keys(ds), (Keys{"u#0", "u#1", "u#2"}));
  EXPECT_EQ(raw_sessions(ds), (Sessions{{"a", "b"}, {"c", "d"}, {"e", "f"}}));
  EXPECT_EQ(ds.sessions[2].start_time, 400);
}

// --- filters ------------------------------------------------------------------------------------

TEST(Prepare, WholeSessionDropVersusIterative) {
  // Item counts: a=3, b=3, z=1, c=2. With min_item_count 3:
  //  whole-session (reference): s1 [a b z] and s3 [c c] dropped -> s2, s4 remain.
  //  iterative: z and c removed; s1 becomes [a b], s3 becomes empty -> s1, s2, s4.
  const RawDataset raw = make_raw({{"s1", "a", 1}, {"s1", "b", 2}, {"s1", "z", 3}, {"s2", "a", 4}, {"s2", "b", 5},
                                   {"s3", "c", 6}, {"s3", "c", 7}, {"s4", "a", 8}, {"s4", "b", 9}});
  PrepareOptions o = loose();
  o.min_item_count = 3;
  const PreparedDataset whole = prepare(raw, o);
  EXPECT_EQ(keys(whole), (Keys{"s2", "s4"}));

  o.iterative_filter = true;
  const PreparedDataset iter = prepare(raw, o);
  EXPECT_EQ(keys(iter), (Keys{"s1", "s2", "s4"}));
  EXPECT_EQ(raw_sessions(iter), (Sessions{{"a", "b"}, {"a", "b"}, {"a", "b"}}));
}

TEST(Prepare, IterativeFilterRepeatsUntilStable) {
  // min count 2: x is rare, removing it shortens s1 to [y], which is dropped, which makes y rare
  // (count 1 in s2), which shortens s2 to [w] ... until only s3 and s4 remain.
  const RawDataset raw = make_raw({{"s1", "x", 1}, {"s1", "y", 2}, {"s2", "y", 3}, {"s2", "w", 4}, {"s3", "p", 5},
                                   {"s3", "q", 6}, {"s4", "p", 7}, {"s4", "q", 8}, {"s5", "w", 9}, {"s5", "k", 10}});
  PrepareOptions o = loose();
  o.min_item_count = 2;
  o.iterative_filter = true;
  const PreparedDataset ds = prepare(raw, o);
  EXPECT_EQ(keys(ds), (Keys{"s3", "s4"}));
}

TEST(Prepare, ReferenceCountsIncludeShortSessions) {
  // a occurs twice, once in a length-1 session; the reference counts it there too.
  const RawDataset raw = make_raw({{"s1", "a", 1}, {"s2", "a", 2}, {"s2", "b", 3}, {"s3", "b", 4}, {"s3", "b", 5}});
  PrepareOptions o = loose();
  o.min_item_count = 2;
  const PreparedDataset ds = prepare(raw, o);
  EXPECT_EQ(keys(ds), (Keys{"s2", "s3"}));
}

TEST(Prepare, MaxSessionsTruncatesBeforeFiltering) {
  const RawDataset raw = make_raw({{"s1", "a", 1}, {"s1", "b", 2}, {"s2", "a", 3}, {"s2", "b", 4}, {"s3", "a", 5},
                                   {"s3", "b", 6}});
  PrepareOptions o = loose();
  o.min_item_count = 3;
  EXPECT_EQ(prepare(raw, o).sessions.size(), 3u);
  o.max_sessions = 2;  // now a and b occur only twice each: nothing is left
  EXPECT_THROW(prepare(raw, o), InputError);
  o.min_item_count = 1;
  EXPECT_EQ(keys(prepare(raw, o)), (Keys{"s1", "s2"}));
}

TEST(Prepare, MaxSessionLengthKeepsTheLastClicks) {
  const RawDataset raw = make_raw({{"s1", "a", 1}, {"s1", "b", 2}, {"s1", "c", 3}, {"s1", "d", 4}, {"s1", "e", 5},
                                   {"s2", "a", 6}, {"s2", "b", 7}});
  PrepareOptions o = loose();
  o.max_session_length = 3;
  const auto ds = prepare(raw, o);
  EXPECT_EQ(raw_sessions(ds), (Sessions{{"c", "d", "e"}, {"a", "b"}}));
  EXPECT_EQ(ds.train.size(), 3u);  // (c, d) -> e, (c) -> d, (a) -> b
  for (const auto& s : ds.train) EXPECT_LE(s.prefix.size(), 2u);
  o.max_session_length = 0;  // no limit
  EXPECT_EQ(raw_sessions(prepare(raw, o)).front().size(), 5u);
  o.max_session_length = 1;  // shorter than a session may be
  EXPECT_THROW(prepare(raw, o), ConfigError);
  EXPECT_EQ(PrepareOptions{}.max_session_length, 256) << "the default covers Beauty's longest session (204 clicks)";
}

// --- remap, split, samples ------------------------------------------------------------------------

TEST(Prepare, RemapInFirstAppearanceOrderOfSplitOrder) {
  PrepareOptions o = loose();
  o.split = SplitMode::kTime;
  o.test_sessions = 1;
  // By first appearance: s1, s2, s3; by start time: s3 (t=1), s1 (t=5), s2 (t=9).
  const RawDataset raw = make_raw({{"s1", "q", 5}, {"s1", "r", 6}, {"s2", "r", 9}, {"s2", "s", 10}, {"s3", "p", 1},
                                   {"s3", "q", 2}});
  RawDataset titled = raw;
  titled.titles = {{"p", "Pea"}, {"r", "Arr"}};
  const PreparedDataset ds = prepare(titled, o);
  EXPECT_EQ(keys(ds), (Keys{"s3", "s1", "s2"}));
  ASSERT_EQ(ds.items.size(), 4u);
  EXPECT_EQ(ds.items[0].raw_id, "p");
  EXPECT_EQ(ds.items[0].title, "Pea");
  EXPECT_EQ(ds.items[1].raw_id, "q");
  EXPECT_EQ(ds.items[1].title, "");
  EXPECT_EQ(ds.items[2].raw_id, "r");
  EXPECT_EQ(ds.items[3].raw_id, "s");
  for (std::size_t k = 0; k < ds.items.size(); ++k) EXPECT_EQ(ds.items[k].id, static_cast<std::int64_t>(k + 1));
  EXPECT_EQ(ds.sessions[0].items, (Ids{1, 2}));
  EXPECT_EQ(ds.sessions[2].items, (Ids{3, 4}));
  ASSERT_EQ(ds.test.size(), 1u);
  EXPECT_EQ(ds.test[0].session, 2);
}

TEST(Prepare, PrefixOrderLongestFirst) {
  const RawDataset raw = make_raw({{"s", "a", 1}, {"s", "b", 2}, {"s", "c", 3}, {"s", "d", 4}});
  PrepareOptions o = loose();
  const PreparedDataset ds = prepare(raw, o);
  ASSERT_EQ(ds.train.size(), 3u);
  EXPECT_EQ(ds.train[0].prefix, (Ids{1, 2, 3}));
  EXPECT_EQ(ds.train[0].target, 4);
  EXPECT_EQ(ds.train[1].prefix, (Ids{1, 2}));
  EXPECT_EQ(ds.train[1].target, 3);
  EXPECT_EQ(ds.train[2].prefix, (Ids{1}));
  EXPECT_EQ(ds.train[2].target, 2);
  for (std::size_t k = 0; k < ds.train.size(); ++k) {
    EXPECT_EQ(ds.train[k].id, static_cast<std::int64_t>(k));
    EXPECT_EQ(ds.train[k].session, 0);
  }
  o.augment = false;
  const PreparedDataset last = prepare(raw, o);
  ASSERT_EQ(last.train.size(), 1u);
  EXPECT_EQ(last.train[0].prefix, (Ids{1, 2, 3}));
  EXPECT_EQ(last.train[0].target, 4);
}

TEST(Prepare, SplitSizes) {
  std::vector<std::tuple<std::string, std::string, std::int64_t>> rows;
  for (int s = 0; s < 25; ++s)
    for (int i = 0; i < 3; ++i) rows.emplace_back(fmt::format("s{}", s), fmt::format("i{}", i), i);
  const RawDataset raw = make_raw(rows);
  PrepareOptions o = loose();
  o.test_fraction = 0.1;   // train+valid = floor(0.9 * 25) = 22, test 3
  o.valid_fraction = 0.1;  // floor(0.1 * 22) = 2
  o.augment = false;
  const PreparedDataset ds = prepare(raw, o);
  EXPECT_EQ(ds.train.size(), 20u);
  EXPECT_EQ(ds.valid.size(), 2u);
  EXPECT_EQ(ds.test.size(), 3u);
  EXPECT_EQ(ds.valid[0].session, 20);
  EXPECT_EQ(ds.valid[0].id, 0);
  EXPECT_EQ(ds.test[2].session, 24);
  EXPECT_EQ(ds.sessions[24].key, "s24");
  const auto st = dataset_stats(ds);
  EXPECT_EQ(st["train_sessions"], 20);
  EXPECT_EQ(st["valid_sessions"], 2);
  EXPECT_EQ(st["test_sessions"], 3);
  EXPECT_EQ(st["clicks"], 75);
  EXPECT_DOUBLE_EQ(st["avg_prefix_length"].get<double>(), 2.0);
  EXPECT_DOUBLE_EQ(st["avg_session_length"].get<double>(), 3.0);

  o.test_sessions = 5;
  const PreparedDataset fixed = prepare(raw, o);
  EXPECT_EQ(fixed.test.size(), 5u);
  EXPECT_EQ(fixed.valid.size(), 2u);  // floor(0.1 * 20)
  o.test_sessions = 25;
  EXPECT_THROW(prepare(raw, o), ConfigError);
}

TEST(Prepare, BadOptions) {
  const RawDataset raw = make_raw({{"s", "a", 1}, {"s", "b", 2}});
  PrepareOptions o = loose();
  o.test_fraction = 1.0;
  EXPECT_THROW(prepare(raw, o), ConfigError);
  o = loose();
  o.min_session_length = 1;
  EXPECT_THROW(prepare(raw, o), ConfigError);
  for (const std::int64_t bad : {0, -2}) {
    o = loose();
    o.max_sessions = bad;
    try {
      prepare(raw, o);
      FAIL() << bad;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("data.max_sessions"), std::string::npos) << e.what();
    }
  }
  o = loose();
  o.sessionize = SessionizeMode::kClock;
  o.clock_seconds = 0;
  EXPECT_THROW(prepare(raw, o), ConfigError);
}

TEST(Prepare, OptionsFromConfig) {
  const Config cfg = Config::parse(R"(
data:
  sessionize: clock
  clock_seconds: 300
  gap_seconds: 60
  min_session_length: 3
  min_item_count: 2
  iterative_filter: true
  split: time
  test_fraction: 0.2
  test_sessions: 7
  valid_fraction: 0.05
  augment: false
  max_sessions: 100
)");
  const PrepareOptions o = prepare_options_from_config(cfg);
  EXPECT_EQ(o.sessionize, SessionizeMode::kClock);
  EXPECT_EQ(o.clock_seconds, 300);
  EXPECT_EQ(o.gap_seconds, 60);
  EXPECT_EQ(o.min_session_length, 3);
  EXPECT_EQ(o.min_item_count, 2);
  EXPECT_TRUE(o.iterative_filter);
  EXPECT_EQ(o.split, SplitMode::kTime);
  EXPECT_DOUBLE_EQ(o.test_fraction, 0.2);
  EXPECT_EQ(o.test_sessions, 7);
  EXPECT_DOUBLE_EQ(o.valid_fraction, 0.05);
  EXPECT_FALSE(o.augment);
  EXPECT_EQ(o.max_sessions, 100);

  const PrepareOptions d = prepare_options_from_config(Config());
  EXPECT_EQ(d.sessionize, SessionizeMode::kUser);
  EXPECT_EQ(d.min_item_count, 5);
  EXPECT_TRUE(d.augment);

  EXPECT_THROW(prepare_options_from_config(Config::parse("data: {sessionize: hourly}")), ConfigError);
  EXPECT_THROW(prepare_options_from_config(Config::parse("data: {split: random}")), ConfigError);
}

// --- the paper's Beauty (Table 2) ----------------------------------------------------------------

TEST(Prepare, BeautyMatchesPaperTable2) {
  LLM4SBR_REQUIRE_DATA("amazon-beauty-2014");
  const auto t0 = std::chrono::steady_clock::now();
  const RawDataset raw = read_amazon_beauty(data_dir() / "amazon-beauty-2014");
  const auto t1 = std::chrono::steady_clock::now();
  PrepareOptions o;  // user sessions, min length 2, min count 5, augment, 90/10 of the reference
  o.valid_fraction = 0.0;
  const PreparedDataset ds = prepare(raw, o);
  const auto t2 = std::chrono::steady_clock::now();
  std::printf("beauty: read %.3f s, prepare %.3f s\n", std::chrono::duration<double>(t1 - t0).count(),
              std::chrono::duration<double>(t2 - t1).count());

  // Table 2: Train 158,139, Test 18,000, Clicks 198,502, Items 12,101. This needs the reference's
  // session order (SessionId of session_id_to_int.json) and its split, train = int(0.9 * n):
  // 20,126 train and 2,237 test sessions. In the line order of user_sequence.txt the same split
  // gives 162,005 / 14,134 samples (182,131 / 16,371 clicks), and no test size gives 18,000
  // (the last 2,463 sessions give 160,602 / 15,537), so the session order matters.
  const auto st = dataset_stats(ds);
  EXPECT_EQ(st["sessions"], 22363);
  EXPECT_EQ(st["items"], 12101);
  EXPECT_EQ(st["clicks"], 198502);
  EXPECT_EQ(st["train_samples"], 158139);
  EXPECT_EQ(st["valid_samples"], 0);
  EXPECT_EQ(st["test_samples"], 18000);
  EXPECT_EQ(st["train_sessions"], 20126);
  EXPECT_EQ(st["test_sessions"], 2237);
  // The mean prefix length (the reference's "average sequence length") is 8.6689; Table 2 prints 8.66.
  EXPECT_NEAR(st["avg_prefix_length"].get<double>(), 8.6689, 1e-4);
  EXPECT_NEAR(st["avg_session_length"].get<double>(), 198502.0 / 22363.0, 1e-9);
  // n_node = 12102 in the reference: ids 1..12101, 0 is padding.
  std::int64_t max_id = 0;
  for (const auto& s : ds.sessions)
    for (const auto id : s.items) max_id = std::max(max_id, id);
  EXPECT_EQ(max_id, 12101);

  // The same split expressed as a session count.
  o.test_sessions = 2237;
  const PreparedDataset fixed = prepare(raw, o);
  EXPECT_EQ(fixed.train.size(), 158139u);
  EXPECT_EQ(fixed.test.size(), 18000u);
}

TEST(Prepare, BeautyWithValidation) {
  LLM4SBR_REQUIRE_DATA("amazon-beauty-2014");
  const RawDataset raw = read_amazon_beauty(data_dir() / "amazon-beauty-2014");
  const PreparedDataset ds = prepare(raw, PrepareOptions{});  // 90/10, then 10% of train for valid
  EXPECT_GT(ds.valid.size(), 0u);
  EXPECT_EQ(ds.test.size(), 18000u);
  EXPECT_EQ(ds.train.size() + ds.valid.size() + ds.test.size(), 176139u);
  const auto st = dataset_stats(ds);
  EXPECT_EQ(st["valid_sessions"], 2012);  // floor(0.1 * 20,126)
}

}  // namespace
}  // namespace llm4sbr::data
