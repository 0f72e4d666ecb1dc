// Shards of the inference stage: parsing "i/n", a partition of the prompts by hash, and merging shard
// stores with every problem named (missing, doubled, unexpected, another prompt).
#include <gtest/gtest.h>

#include <fstream>

#include "llm4sbr/core/error.hpp"
#include "llm4sbr/core/hash.hpp"
#include "llm4sbr/llm/response_store.hpp"
#include "llm4sbr/llm/shard.hpp"
#include "test_support.hpp"

using namespace llm4sbr;
using llm4sbr::testing::TempDir;

namespace {

llm::ResponseRecord record(std::int64_t sample, const std::string& view, const std::string& answer = "a") {
  return {sample, view, hash_hex(fmt::format("prompt {} {}", sample, view)), "test", answer, 10, 2, 0.1};
}

std::vector<llm::PromptKey> expected_keys(std::int64_t samples) {
  std::vector<llm::PromptKey> keys;
  for (std::int64_t s = 0; s < samples; ++s)
    for (const std::string view : {"long", "short"}) keys.push_back({s, view, record(s, view).prompt_hash, ""});
  return keys;
}

void write_store(const std::filesystem::path& file, const std::vector<llm::ResponseRecord>& records) {
  std::filesystem::create_directories(file.parent_path());
  std::ofstream out(file);
  for (const auto& r : records) out << llm::to_jsonl(r);
}

std::string merge_error(const std::vector<llm::PromptKey>& expected, const std::vector<std::filesystem::path>& files,
                        const std::filesystem::path& out) {
  try {
    llm::merge_shards(expected, files, out);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Shard, ParsesIOfN) {
  const auto s = llm::Shard::parse("2/8");
  EXPECT_EQ(s.index, 2);
  EXPECT_EQ(s.count, 8);
  for (const std::string bad : {"0/2", "3/2", "1/0", "1", "a/2", "1/2x", "/2", "1/", "-1/2"})
    EXPECT_THROW(llm::Shard::parse(bad), ConfigError) << bad;
}

TEST(Shard, ThePromptsArePartitionedEvenly) {
  const std::int64_t n = 3;
  std::vector<int> per_shard(n, 0);
  for (int p = 0; p < 3000; ++p) {
    const auto h = hash_hex(fmt::format("prompt {}", p));
    int holders = 0;
    for (std::int64_t i = 1; i <= n; ++i)
      if (llm::Shard{i, n}.holds(h)) ++holders, ++per_shard[static_cast<std::size_t>(i - 1)];
    EXPECT_EQ(holders, 1) << h;
    EXPECT_TRUE(llm::Shard{}.holds(h));
  }
  for (int c : per_shard) EXPECT_NEAR(c, 1000, 150);
}

TEST(Shard, MergeJoinsShardsInExpectedOrder) {
  TempDir tmp;
  const auto expected = expected_keys(3);
  write_store(tmp / "s1.jsonl", {record(2, "short"), record(0, "long"), record(1, "long", "old")});
  // A later line of the same (sample, view) in one file replaces the earlier one, as in ResponseStore;
  // a torn last line (a killed writer) is left out.
  write_store(tmp / "s2.jsonl", {record(0, "short"), record(1, "short"), record(2, "long")});
  {
    std::ofstream out(tmp / "s1.jsonl", std::ios::app);
    out << llm::to_jsonl(record(1, "long", "new")) << R"({"sample": 9, "vi)";
  }
  EXPECT_EQ(llm::merge_shards(expected, {tmp / "s1.jsonl", tmp / "s2.jsonl"}, tmp / "out/responses.jsonl"), 6u);
  const auto merged = llm::read_response_file(tmp / "out/responses.jsonl");
  ASSERT_EQ(merged.size(), 6u);
  for (std::size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(merged[i].second.sample, expected[i].sample);
    EXPECT_EQ(merged[i].second.view, expected[i].view);
  }
  EXPECT_EQ(merged[2].second.response, "new");
}

TEST(Shard, MergeNamesWhatIsMissingDoubledOrUnexpected) {
  TempDir tmp;
  const auto expected = expected_keys(3);
  auto wrong_prompt = record(2, "long");
  wrong_prompt.prompt_hash = hash_hex("another template");
  write_store(tmp / "s1.jsonl", {record(0, "long"), record(0, "short"), record(7, "long")});
  write_store(tmp / "s2.jsonl", {record(0, "short"), wrong_prompt});
  const auto out = tmp / "out/responses.jsonl";
  const std::string e = merge_error(expected, {tmp / "s1.jsonl", tmp / "s2.jsonl"}, out);
  EXPECT_NE(e.find("1 doubled records: " + (tmp / "s1.jsonl").string() + ":2 and " + (tmp / "s2.jsonl").string() + ":1"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("1 records of an unexpected (sample, view): " + (tmp / "s1.jsonl").string() + ":3: sample 7 view long"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("1 records answering another prompt"), std::string::npos) << e;
  EXPECT_NE(e.find("4 (sample, view) pairs without a record"), std::string::npos) << e;
  EXPECT_FALSE(std::filesystem::exists(out));  // nothing written when refused

  EXPECT_THROW(llm::merge_shards(expected, {tmp / "nope.jsonl"}, out), InputError);
}

// Shards answered by two models (another llm.model on one machine) are refused, naming both and where they are.
TEST(Shard, MergeRefusesAnswersOfTwoModels) {
  TempDir tmp;
  const auto expected = expected_keys(2);
  write_store(tmp / "s1.jsonl", {record(0, "long"), record(0, "short")});
  auto other = [](llm::ResponseRecord r) {
    r.model = "llama:other.gguf";
    return r;
  };
  write_store(tmp / "s2.jsonl", {other(record(1, "long")), other(record(1, "short"))});
  const auto out = tmp / "out/responses.jsonl";
  const std::string e = merge_error(expected, {tmp / "s1.jsonl", tmp / "s2.jsonl"}, out);
  EXPECT_NE(e.find("2 models answering"), std::string::npos) << e;
  EXPECT_NE(e.find("'test' at " + (tmp / "s1.jsonl").string() + ":1"), std::string::npos) << e;
  EXPECT_NE(e.find("'llama:other.gguf' at " + (tmp / "s2.jsonl").string() + ":1"), std::string::npos) << e;
  EXPECT_FALSE(std::filesystem::exists(out));

  write_store(tmp / "s2.jsonl", {record(1, "long"), record(1, "short")});  // the same model: merged
  EXPECT_EQ(llm::merge_shards(expected, {tmp / "s1.jsonl", tmp / "s2.jsonl"}, out), 4u);
}
