#include "llm4sbr/data/io.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <tuple>

#include <nlohmann/json.hpp>

#include "llm4sbr/core/error.hpp"
#include "llm4sbr/data/prepare.hpp"
#include "test_support.hpp"

namespace llm4sbr::data {
namespace {

using llm4sbr::testing::TempDir;

PreparedDataset small_dataset() {
  RawDataset raw;
  raw.name = "tiny";
  const std::vector<std::tuple<std::string, std::string, std::int64_t>> rows = {
      {"u1", "a", 1}, {"u1", "b", 2}, {"u1", "c", 3}, {"u2", "b", 4}, {"u2", "c", 5},
      {"u3", "a", 6}, {"u3", "c", 7}, {"u4", "c", 8}, {"u4", "a", 9}, {"u4", "b", 10}};
  for (const auto& [k, i, t] : rows)
    raw.interactions.push_back({k, i, t, static_cast<std::int64_t>(raw.interactions.size())});
  raw.titles = {{"a", "Tab\there"}, {"b", "Line\nbreak"}, {"c", ""}};
  PrepareOptions o;
  o.min_item_count = 1;
  o.test_sessions = 1;
  o.valid_fraction = 0.34;  // floor(0.34 * 3) = 1 valid session
  return prepare(raw, o);
}

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void expect_same_samples(const std::vector<Sample>& a, const std::vector<Sample>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t k = 0; k < a.size(); ++k) {
    EXPECT_EQ(a[k].id, b[k].id);
    EXPECT_EQ(a[k].session, b[k].session);
    EXPECT_EQ(a[k].prefix, b[k].prefix);
    EXPECT_EQ(a[k].target, b[k].target);
  }
}

TEST(PreparedIo, RoundTrip) {
  const PreparedDataset ds = small_dataset();
  ASSERT_EQ(ds.train.size(), 3u);
  ASSERT_EQ(ds.valid.size(), 1u);
  ASSERT_EQ(ds.test.size(), 2u);
  TempDir tmp;
  const auto dir = tmp / "prepared";
  EXPECT_FALSE(is_prepared(dir));
  write_prepared(ds, dir);
  EXPECT_TRUE(is_prepared(dir));
  for (const auto& e : std::filesystem::directory_iterator(dir))
    EXPECT_EQ(e.path().string().find(".tmp"), std::string::npos) << e.path();

  const PreparedDataset back = read_prepared(dir);
  EXPECT_EQ(back.name, "tiny");
  ASSERT_EQ(back.items.size(), ds.items.size());
  for (std::size_t k = 0; k < ds.items.size(); ++k) {
    EXPECT_EQ(back.items[k].id, ds.items[k].id);
    EXPECT_EQ(back.items[k].raw_id, ds.items[k].raw_id);
  }
  // Tabs and newlines in titles become spaces, already in prepare(): the dataset read back is the one
  // prepared, so a resumed run builds the same prompts (and hashes) as the first. An empty title stays empty.
  for (std::size_t k = 0; k < ds.items.size(); ++k) EXPECT_EQ(back.items[k].title, ds.items[k].title) << k;
  EXPECT_EQ(samples_fingerprint(back, back.train), samples_fingerprint(ds, ds.train));
  EXPECT_EQ(back.items[0].title, "Tab here");
  EXPECT_EQ(back.items[1].title, "Line break");
  EXPECT_EQ(back.items[2].title, "");
  ASSERT_EQ(back.sessions.size(), ds.sessions.size());
  for (std::size_t k = 0; k < ds.sessions.size(); ++k) {
    EXPECT_EQ(back.sessions[k].key, ds.sessions[k].key);
    EXPECT_EQ(back.sessions[k].items, ds.sessions[k].items);
    EXPECT_EQ(back.sessions[k].start_time, ds.sessions[k].start_time);
  }
  expect_same_samples(back.train, ds.train);
  expect_same_samples(back.valid, ds.valid);
  expect_same_samples(back.test, ds.test);

  const auto stats = nlohmann::json::parse(slurp(dir / "stats.json"));
  EXPECT_EQ(stats, dataset_stats(ds));
  EXPECT_TRUE(slurp(dir / "items.tsv").starts_with("model_id\traw_id\ttitle\n1\ta\tTab here\n"));
  EXPECT_EQ(slurp(dir / "sessions.tsv"),
            "0\tu1\ttrain\t1\t1 2 3\n1\tu2\ttrain\t4\t2 3\n2\tu3\tvalid\t6\t1 3\n3\tu4\ttest\t8\t3 1 2\n");
  EXPECT_EQ(slurp(dir / "test.tsv"), "0\t3\t3 1\t2\n1\t3\t3\t1\n");

  // Rewriting over an existing dataset works.
  write_prepared(back, dir);
  EXPECT_TRUE(is_prepared(dir));
}

TEST(PreparedIo, MissingFileIsNotPrepared) {
  TempDir tmp;
  write_prepared(small_dataset(), tmp.path());
  std::filesystem::remove(tmp / "valid.tsv");
  EXPECT_FALSE(is_prepared(tmp.path()));
  EXPECT_THROW(read_prepared(tmp.path()), InputError);
}

TEST(PreparedIo, FileCutShortAtALineBoundaryIsRefused) {
  TempDir tmp;
  write_prepared(small_dataset(), tmp.path());
  std::ofstream(tmp / "test.tsv", std::ios::trunc) << "0\t3\t3 1\t2\n";  // the second of two rows is gone
  try {
    read_prepared(tmp.path());
    FAIL() << "a test split with a row missing was read";
  } catch (const InputError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("test.tsv"), std::string::npos) << what;
    EXPECT_NE(what.find("holds 1 rows but stats.json records 2 (test_samples)"), std::string::npos) << what;
  }
}

void expect_train_error(const std::string& train_text, std::size_t line, const std::string& field) {
  TempDir tmp;
  write_prepared(small_dataset(), tmp.path());
  {
    std::ofstream out(tmp / "train.tsv", std::ios::binary | std::ios::trunc);
    out << train_text;
  }
  try {
    read_prepared(tmp.path());
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("train.tsv:" + std::to_string(line) + ":"), std::string::npos) << msg;
    EXPECT_EQ(e.field(), field) << msg;
    EXPECT_NE(msg.find("'" + field + "'"), std::string::npos) << msg;
  }
}

TEST(PreparedIo, MalformedTrainRows) {
  expect_train_error("0\t0\t1 2\t3\n1\t0\t1 2\n", 2, "target");          // short row
  expect_train_error("0\t0\t1 2\t3\n1\t0\t1 x\t2\n", 2, "prefix");       // non-numeric id
  expect_train_error("0\t0\t1 2\t99\n", 1, "target");                     // id outside 1..N
  expect_train_error("0\t0\t1 2\t3\n5\t0\t1\t2\n", 2, "sample_id");      // not numbered in order
  expect_train_error("0\t0\t\t3\n", 1, "prefix");                         // empty prefix
  expect_train_error("0\t3\t1\t2\n", 1, "session_index");                 // a test session
}

}  // namespace
}  // namespace llm4sbr::data
