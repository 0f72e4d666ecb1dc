// Checks for the answers of LLM tests (kept out of test_support.hpp, which every test includes).
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "test_support.hpp"

namespace llm4sbr::testing {

/// Checks the answers of an LLM test: every one non-empty, and not all alike. The tiny test model is built
/// to answer words that follow its prompt (scripts/make-tiny-models.py); a model that answered nothing, or
/// the same to every prompt, would let every comparison of answers pass without testing anything.
inline void expect_real_answers(const std::vector<std::string>& answers) {
  ASSERT_FALSE(answers.empty()) << "no answers";
  std::size_t empty = 0;
  for (const auto& a : answers) empty += a.empty();
  EXPECT_EQ(empty, 0u) << empty << " of " << answers.size() << " answers are empty";
  EXPECT_GT(std::set<std::string>(answers.begin(), answers.end()).size(), 1u)
      << "all " << answers.size() << " prompts got the same answer: '" << answers.front() << "'";
}

/// The "response" of every record of a responses.jsonl, in file order.
inline std::vector<std::string> answers_in(const std::filesystem::path& responses_jsonl) {
  std::vector<std::string> out;
  for (const auto& r : read_jsonl(responses_jsonl)) out.push_back(r["response"].get<std::string>());
  return out;
}

}  // namespace llm4sbr::testing
