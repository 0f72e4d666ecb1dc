// The in-process llama.cpp backend on a tiny random-weight Qwen2 model (built from the vocab file of the
// llama.cpp source): real tokenization, chat template, batched decoding; and `llm4sbr infer` on real
// Beauty samples, killed midway and resumed.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <random>
#include <fstream>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <llama.h>
#include <nlohmann/json.hpp>

#include "llm4sbr/llm/llama_backend.hpp"
#include "llm_answers.hpp"
#include "test_support.hpp"

using namespace llm4sbr;

namespace {

std::filesystem::path tiny_chat_model() { return llm4sbr::testing::tiny_model("tiny-qwen2-chat.gguf"); }

// Greedy generation on two threads: max_tokens answers, `parallel` sequences.
llm::GenerationOptions generation(std::int64_t max_tokens, std::int64_t parallel) {
  llm::GenerationOptions opt;
  opt.max_tokens = max_tokens;
  opt.parallel = parallel;
  opt.threads = 2;
  return opt;
}

// A prompt header followed by n numbered clicks: prompts that extend it share a long prefix.
std::string click_list(int n) {
  std::string text = "The order in which users click on items is as follows:\n";
  for (int i = 1; i <= n; ++i) text += fmt::format("{}. Item number {}_{}\n", i, i, i * 7);
  return text;
}

using llm4sbr::testing::prepared_beauty;
using llm4sbr::testing::read_jsonl;

std::string infer_command(const std::filesystem::path& data, const std::filesystem::path& out, int limit,
                          const std::string& extra = "") {
  return fmt::format("'{}' infer --data '{}' --llm 'llama:{}' --split test --limit {} --out '{}' --set llm.max_tokens=6 "
                     "--set llm.parallel=8 --set llm.threads=2 {}",
                     LLM4SBR_CLI, data.string(), tiny_chat_model().string(), limit, out.string(), extra);
}

}  // namespace

// greedy_token picks what llama.cpp's greedy sampler picks from the same logits: the first of equal maxima,
// over vocabularies of random logits with ties and -inf (and all -inf).
TEST(LlamaBackend, GreedyTokenIsLlamaCppsGreedyChoice) {
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> level(-20, 20);  // few distinct values: many ties
  llama_sampler* greedy = llama_sampler_init_greedy();
  // Sizes around greedy_token's 256-value blocks, with the largest value anywhere (a partial last block too).
  const std::vector<std::size_t> sizes{1, 5, 255, 256, 257, 1000, 4096, 151936};
  for (int round = 0; round < 80; ++round) {
    std::vector<float> logits(sizes[static_cast<std::size_t>(round) % sizes.size()]);
    for (auto& v : logits) v = static_cast<float>(level(rng)) / 4.0f;
    logits[static_cast<std::size_t>(round) % logits.size()] = -INFINITY;
    if (round % 3 == 0) logits[static_cast<std::size_t>(rng()) % logits.size()] = 6.0f;  // one clear maximum
    if (round % 5 == 1) logits.back() = 7.0f;  // in the last (partial) block
    if (round % 7 == 0) std::fill(logits.begin(), logits.end(), -INFINITY);
    std::vector<llama_token_data> data(logits.size());
    for (std::size_t i = 0; i < logits.size(); ++i) data[i] = {static_cast<llama_token>(i), logits[i], 0.0f};
    llama_token_data_array candidates{data.data(), data.size(), -1, false};
    llama_sampler_apply(greedy, &candidates);
    EXPECT_EQ(llm::greedy_token(logits.data(), static_cast<std::int32_t>(logits.size())),
              data[static_cast<std::size_t>(candidates.selected)].id) << "round " << round;
  }
  llama_sampler_free(greedy);
}

TEST(LlamaBackend, GeneratesForEveryPromptInParallel) {
  llm::LlamaBackend backend(tiny_chat_model(), generation(8, 3));
  EXPECT_NE(backend.format_chat("hello").find("<|im_start|>user\nhello<|im_end|>"), std::string::npos);
  const std::vector<std::string> prompts = {"one", "two two", "three three three", "four", "five five"};
  std::vector<int> seen(prompts.size(), 0);
  std::vector<llm::Generation> gens(prompts.size());
  backend.generate(prompts, [&](std::size_t i, const llm::Generation& g) {
    ++seen[i];
    gens[i] = g;
  });
  std::vector<std::string> texts;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(seen[i], 1) << i;
    EXPECT_GT(gens[i].prompt_tokens, 0);
    EXPECT_LE(gens[i].completion_tokens, 8);
    texts.push_back(gens[i].text);
  }
  llm4sbr::testing::expect_real_answers(texts);
  // Greedy decoding repeats itself exactly in the same batches (the same arithmetic).
  std::vector<std::string> again(prompts.size());
  backend.generate(prompts, [&](std::size_t i, const llm::Generation& g) { again[i] = g.text; });
  EXPECT_EQ(again, texts);
  // A prompt alone is decoded in other batch shapes, which changes the last bits of its logits (llama.cpp is not
  // batch-invariant); the random-weight model's logits are nearly flat, so such bits flip a greedy choice now
  // and then (about one token in a thousand): the same answers alone but for near-ties.
  std::size_t same = 0;
  for (std::size_t i = 0; i < prompts.size(); ++i)
    backend.generate({prompts[i]}, [&](std::size_t, const llm::Generation& g) { same += g.text == texts[i]; });
  EXPECT_GE(same, prompts.size() - 1) << "answers alone differ from the same prompts' answers in a batch beyond near-ties";
}

// With temperature > 0 the seed of an answer is llm.seed mixed with its prompt: the same answer whatever its
// batch, slot or order, so a killed and resumed run samples what an uninterrupted one would.
TEST(LlamaBackend, SampledAnswersDependOnlyOnThePromptAndTheSeed) {
  auto opt = generation(6, 3);
  opt.temperature = 1.0;
  opt.seed = 7;
  const std::vector<std::string> prompts = {"lipstick", "night cream", "soap bar", "shampoo", "nail polish", "perfume"};
  const auto answers = [&](const llm::GenerationOptions& o, const std::vector<std::string>& p) {
    llm::LlamaBackend backend(tiny_chat_model(), o);
    std::vector<std::string> out(p.size());
    backend.generate(p, [&](std::size_t i, const llm::Generation& g) { out[i] = g.text; });
    return out;
  };
  const auto all = answers(opt, prompts);
  llm4sbr::testing::expect_real_answers(all);
  EXPECT_EQ(answers(opt, {prompts[4]}), std::vector<std::string>{all[4]}) << "alone";
  auto two = opt;
  two.parallel = 2;
  EXPECT_EQ(answers(two, {prompts[5], prompts[3], prompts[0]}), (std::vector<std::string>{all[5], all[3], all[0]}))
      << "in another order and other slots";
  auto other_seed = opt;
  other_seed.seed = 8;
  EXPECT_NE(answers(other_seed, prompts), all) << "llm.seed still matters";
}

TEST(LlamaBackend, ReusesTheKvCacheOfSharedPrefixes) {
  llm::LlamaBackend backend(tiny_chat_model(), generation(4, 1));
  const std::string base = click_list(20);
  std::int64_t reused = 0;
  backend.generate({base + "Question A", base + "Question B"}, [&](std::size_t, const llm::Generation& g) { reused += g.reused_tokens; });
  EXPECT_GT(reused, 100);
}

// The schedule and the count of re-used tokens on hand-made token lists: sorted neighbours in runs, the common
// prefix with the previous prompt of the run, and the last token always computed (an identical prompt too).
TEST(LlamaBackend, ReusedPromptTokensOfPrefixRuns) {
  const std::vector<std::vector<std::int32_t>> tokens{{1, 2, 9}, {7}, {1, 2, 3, 5}, {1, 2, 3, 4}, {1, 2, 3, 4}};
  const auto one = llm::prefix_runs(tokens, 1);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0], (std::vector<std::size_t>{3, 4, 2, 0, 1}));  // sorted by tokens, equal ones in their order
  // {1,2,3,4} twice: 3 (its last token decoded again); {1,2,3,5}: 3; {1,2,9}: 2; {7}: 0.
  EXPECT_EQ(llm::reused_prompt_tokens(tokens, one), 8);
  const auto two = llm::prefix_runs(tokens, 2);  // runs {3, 4} and {2, 0, 1}: the third prompt starts a run
  EXPECT_EQ(two, (std::vector<std::vector<std::size_t>>{{3, 4}, {2, 0, 1}}));
  EXPECT_EQ(llm::reused_prompt_tokens(tokens, two), 5);
}

// count_prefill, without decoding, gives the re-used tokens that generate() reports (one sequence: no stealing).
TEST(LlamaBackend, CountPrefillIsWhatGenerateReuses) {
  llm::LlamaBackend backend(tiny_chat_model(), generation(3, 1));
  std::vector<std::string> prompts;
  for (int i = 1; i <= 6; ++i) prompts.push_back(click_list(i) + "What does the user want?");
  prompts.push_back("Something else entirely");
  std::int64_t reused = 0, tokens = 0;
  backend.generate(prompts, [&](std::size_t, const llm::Generation& g) {
    reused += g.reused_tokens;
    tokens += g.prompt_tokens;
  });
  const auto count = backend.count_prefill(prompts);
  EXPECT_EQ(count.prompts, 7);
  EXPECT_EQ(count.prompt_tokens, tokens);
  EXPECT_EQ(count.reused_tokens, reused);
  EXPECT_GT(count.reused_tokens, 100);
}

TEST(LlamaBackend, MissingModelFileIsAClearError) {
  EXPECT_THROW(llm::LlamaBackend("/nonexistent/model.gguf", {}), InputError);
}

TEST(Infer, TwoHundredBeautySamplesTwoViewsResumeAfterKill) {
  LLM4SBR_REQUIRE_DATA("amazon-beauty-2014");
  const auto data = prepared_beauty();
  llm4sbr::testing::TempDir out;
  const auto responses = out / "test" / "responses.jsonl";

  // Start, kill -9 once some records are written, then run the same command to completion.
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    setpgid(0, 0);  // its own process group, so that one kill reaches the shell and llm4sbr
    execl("/bin/sh", "sh", "-c", (infer_command(data, out.path(), 200) + " > /dev/null 2>&1").c_str(), nullptr);
    _exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  std::size_t seen = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    seen = std::filesystem::exists(responses) ? read_jsonl(responses).size() : 0;
    if (seen >= 20) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(-pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  ASSERT_GE(seen, 20u) << "no records appeared before the deadline";
  const std::size_t before = read_jsonl(responses).size();
  ASSERT_LT(before, 400u) << "the run finished before it could be killed; nothing was tested";

  ASSERT_EQ(std::system((infer_command(data, out.path(), 200) + " > /dev/null 2>&1").c_str()), 0);
  const auto records = read_jsonl(responses);
  std::set<std::pair<std::int64_t, std::string>> keys;
  for (const auto& r : records) keys.insert({r["sample"].get<std::int64_t>(), r["view"].get<std::string>()});
  EXPECT_EQ(records.size(), 400u);  // none doubled
  EXPECT_EQ(keys.size(), 400u);     // none lost: 200 samples x {long, short}
  EXPECT_EQ(keys.begin()->first, 0);
  EXPECT_EQ(keys.rbegin()->first, 199);
  llm4sbr::testing::expect_real_answers(llm4sbr::testing::answers_in(responses));

  // A third run has nothing left to do and changes nothing.
  ASSERT_EQ(std::system((infer_command(data, out.path(), 200) + " > /dev/null 2>&1").c_str()), 0);
  EXPECT_EQ(read_jsonl(responses).size(), 400u);
}

// `infer --count-prefill` on real Beauty prompts: the table of prompt tokens and those the KV cache re-uses,
// the same counts as a generating run of the same prompts reports in its log; an HTTP backend is refused.
TEST(Infer, CountPrefillMatchesTheGeneratingRun) {
  LLM4SBR_REQUIRE_DATA("amazon-beauty-2014");
  const auto data = prepared_beauty();
  llm4sbr::testing::TempDir out;
  const auto log = out / "log";
  auto text_of = [](const std::filesystem::path& f) {
    std::stringstream s;
    s << std::ifstream(f).rdbuf();
    return s.str();
  };
  ASSERT_EQ(std::system((infer_command(data, out / "run", 30) + " > '" + log.string() + "' 2>&1").c_str()), 0);
  const auto run = text_of(log);
  const auto at = run.find(" prompt tokens re-used");
  ASSERT_NE(at, std::string::npos) << run;
  const auto reused = run.substr(run.rfind(' ', at - 1) + 1, at - run.rfind(' ', at - 1) - 1);
  const auto count = fmt::format("'{}' infer --count-prefill --data '{}' --llm 'llama:{}' --split test --limit 30 "
                                 "--set llm.parallel=8 > '{}' 2>&1",
                                 LLM4SBR_CLI, data.string(), tiny_chat_model().string(), log.string());
  ASSERT_EQ(std::system(count.c_str()), 0) << text_of(log);
  const auto table = text_of(log);
  EXPECT_NE(table.find("prefill of 60 distinct prompts"), std::string::npos) << table;
  // Work stealing near the end of the generating run can move a run's tail; with 60 prompts and 8 sequences
  // the counts still agree to within a few prompts' prefixes.
  const auto row = table.substr(table.rfind("\n| ") + 3);
  const auto counted = std::stoll(row.substr(row.find("| ") + 2));
  EXPECT_NEAR(static_cast<double>(counted), std::stod(reused), 0.1 * std::stod(reused)) << table << run;
  const auto http = fmt::format("'{}' infer --count-prefill --data '{}' --llm 'openai:http://127.0.0.1:9' --split test "
                                "--limit 2 > '{}' 2>&1",
                                LLM4SBR_CLI, data.string(), log.string());
  EXPECT_NE(std::system(http.c_str()), 0);
  EXPECT_NE(text_of(log).find("--count-prefill counts the prefix reuse of in-process llama.cpp"), std::string::npos)
      << text_of(log);
}

TEST(Infer, UnknownBackendAndMissingModelFailClearly) {
  LLM4SBR_REQUIRE_DATA("amazon-beauty-2014");
  const auto data = prepared_beauty();
  llm4sbr::testing::TempDir out;
  const auto bad = fmt::format("'{}' infer --data '{}' --llm 'llama:/nope.gguf' --split test --limit 2 --out '{}' > '{}' 2>&1",
                               LLM4SBR_CLI, data.string(), out.path().string(), (out / "log").string());
  EXPECT_NE(std::system(bad.c_str()), 0);
  std::stringstream log;
  log << std::ifstream(out / "log").rdbuf();
  EXPECT_NE(log.str().find("/nope.gguf"), std::string::npos) << log.str();
}

TEST(Infer, AnswersOfAnotherModelInTheOutputFolderAreRefused) {
  LLM4SBR_REQUIRE_DATA("amazon-beauty-2014");
  const auto data = prepared_beauty();
  llm4sbr::testing::TempDir out;
  std::filesystem::create_directories(out / "test");
  std::ofstream(out / "test" / "responses.jsonl")
      << R"({"sample": 0, "view": "long", "prompt_hash": "h", "model": "llama:other-model.gguf", "response": "Lipstick"})"
      << "\n";
  const auto log = out / "log";
  EXPECT_NE(std::system((infer_command(data, out.path(), 2) + " > '" + log.string() + "' 2>&1").c_str()), 0);
  std::stringstream text;
  text << std::ifstream(log).rdbuf();
  EXPECT_NE(text.str().find("responses.jsonl"), std::string::npos) << text.str();
  EXPECT_NE(text.str().find("holds answers from 'llama:other-model.gguf'"), std::string::npos) << text.str();
  EXPECT_EQ(read_jsonl(out / "test" / "responses.jsonl").size(), 1u) << "the other model's answers stay as they were";
}
