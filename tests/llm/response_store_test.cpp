#include "llm4sbr/llm/response_store.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "llm4sbr/core/error.hpp"
#include "test_support.hpp"

using llm4sbr::llm::ResponseRecord;
using llm4sbr::llm::ResponseStore;

TEST(ResponseStore, AppendsAndReadsBack) {
  llm4sbr::testing::TempDir dir;
  {
    ResponseStore s(dir / "r.jsonl");
    s.append({1, "long", "h1", "m", "Lipstick \"Red\"\nline", 10, 3, 0.5});
    s.append({2, "short", "h2", "m", "Blush", 11, 2, 0.4});
  }
  ResponseStore s(dir / "r.jsonl");
  ASSERT_EQ(s.size(), 2u);
  EXPECT_TRUE(s.has(1, "long", "h1"));
  EXPECT_FALSE(s.has(1, "long", "other-prompt"));
  EXPECT_EQ(s.records().at({1, "long"}).response, "Lipstick \"Red\"\nline");
  EXPECT_EQ(s.find_prompt("h2")->sample, 2);
}

TEST(ResponseStore, CutsOffATornLastLineAndKeepsGoing) {
  llm4sbr::testing::TempDir dir;
  {
    ResponseStore s(dir / "r.jsonl");
    s.append({1, "long", "h1", "m", "ok", 1, 1, 0});
  }
  std::ofstream(dir / "r.jsonl", std::ios::app) << R"({"sample": 2, "view": "lo)";  // a killed write
  {
    ResponseStore s(dir / "r.jsonl");
    EXPECT_EQ(s.size(), 1u);
    s.append({2, "long", "h2", "m", "fine", 1, 1, 0});
  }
  ResponseStore s(dir / "r.jsonl");
  EXPECT_EQ(s.size(), 2u);
  EXPECT_TRUE(s.has(2, "long", "h2"));
}

TEST(ResponseStore, CorruptCompleteLineNamesFileAndLine) {
  llm4sbr::testing::TempDir dir;
  std::ofstream(dir / "r.jsonl") << R"({"sample": 1, "view": "long", "prompt_hash": "h", "response": "a"})" << "\n"
                                  << "not json\n";
  try {
    ResponseStore s(dir / "r.jsonl");
    FAIL();
  } catch (const llm4sbr::InputError& e) {
    EXPECT_EQ(e.line(), 2u);
    EXPECT_NE(std::string(e.what()).find("r.jsonl"), std::string::npos);
  }
}

// Found by fuzz/responses_jsonl_fuzz.cpp: a count of 7.7e91 was cast to int64 (undefined behaviour), and a
// sample of 2.5 was read as 2. Every integer field must be an integer that fits.
TEST(ResponseStore, ANumberThatIsNotAnIntegerIsAnErrorNamingItsField) {
  const std::string head = R"({"view": "long", "prompt_hash": "h", "response": "a", )";
  for (const auto& [fields, field] : std::vector<std::pair<std::string, std::string>>{
           {R"("sample": 0, "completion_tokens": 76666666666666666666666666666666666666666666666666666666666666666666666666666666666666666666)",
            "completion_tokens"},
           {R"("sample": 2.5)", "sample"},
           {R"("sample": 9223372036854775808)", "sample"},
           {R"("sample": 1, "prompt_tokens": "12")", "prompt_tokens"},
           {R"("view2": 1)", "sample"},
           {R"("sample": 9E559)", "r.jsonl"}}) {  // beyond double: nlohmann's out_of_range escaped the parser
    llm4sbr::testing::TempDir dir;
    std::ofstream(dir / "r.jsonl") << head << fields << "}\n";
    try {
      ResponseStore s(dir / "r.jsonl");
      ADD_FAILURE() << "accepted: " << fields;
    } catch (const llm4sbr::InputError& e) {
      EXPECT_EQ(e.line(), 1u);
      EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    }
  }
}

TEST(ResponseStore, SecondWriterOfTheSameFileIsRefusedUntilTheFirstCloses) {
  llm4sbr::testing::TempDir dir;
  {
    ResponseStore first(dir / "r.jsonl");
    first.append({1, "long", "h1", "m", "ok", 1, 1, 0});
    try {
      ResponseStore second(dir / "r.jsonl");
      FAIL() << "two stores wrote one file";
    } catch (const llm4sbr::InputError& e) {
      EXPECT_NE(std::string(e.what()).find("another process"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("r.jsonl"), std::string::npos) << e.what();
    }
    first.append({2, "long", "h2", "m", "still fine", 1, 1, 0});
  }
  ResponseStore again(dir / "r.jsonl");  // the lock went with the first store
  EXPECT_EQ(again.size(), 2u);
}

// `infer --llm openai:URL` with nothing listening fails before its first answer: it must not leave an empty
// responses.jsonl behind. Files that existed, that hold answers, or of a job that succeeded stay.
TEST(ResponseStore, AnEmptyFileOfAJobThatFailedBeforeItsFirstAnswerIsRemoved) {
  llm4sbr::testing::TempDir dir;
  const auto fail_with = [](const std::filesystem::path& file, bool answer) {
    try {
      ResponseStore s(file);
      if (answer) s.append({0, "long", "h", "m", "Lipstick", 1, 1, 0});
      throw std::runtime_error("no endpoint could be reached");
    } catch (const std::runtime_error&) {
    }
  };
  fail_with(dir / "a" / "r.jsonl", false);
  EXPECT_FALSE(std::filesystem::exists(dir / "a" / "r.jsonl"));
  fail_with(dir / "b" / "r.jsonl", true);
  EXPECT_EQ(ResponseStore(dir / "b" / "r.jsonl").size(), 1u);
  { ResponseStore s(dir / "c" / "r.jsonl"); }  // succeeded with nothing to answer (a shard may hold none)
  EXPECT_TRUE(std::filesystem::exists(dir / "c" / "r.jsonl"));
  fail_with(dir / "c" / "r.jsonl", false);  // it existed before this job
  EXPECT_TRUE(std::filesystem::exists(dir / "c" / "r.jsonl"));
}
