// Kill it at any point, run it again: the whole `llm4sbr run` (a Beauty subset, the tiny GGUF chat model for
// Stage 1, SR-GNN and LLM4SBR(SR-GNN) for two epochs) killed with SIGKILL in every stage and at random moments,
// and run again with the same command each time, ends with the metrics.json, intents.npy and responses.jsonl of
// a run that was never stopped, and leaves no temporary file behind.
//
// One setting differs from the defaults: llm.parallel=1. llama.cpp's batched decoding is not batch-invariant:
// an answer's logits differ in the last bits with the other sequences of its batch, and a resumed run batches
// the prompts that are left differently. The random-weight test model's logits are nearly flat, so such bits
// flip its greedy choice now and then; with one sequence at a time every answer is computed the same way in
// any run. (With parallel > 1 nothing is lost or generated twice either, as EndToEnd.RunKilledInStageOne...
// checks; only an answer that was in flight may come out otherwise.)
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "e2e/background_process.hpp"
#include "e2e/limited_process.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using llm4sbr::testing::ProcessResult;
using llm4sbr::testing::read_text;

namespace {

constexpr unsigned kTimeoutSeconds = 300;

std::vector<std::string> run_args(const fs::path& out) {
  return {LLM4SBR_CLI, "run", "--config", "configs/beauty.yaml", "--set", "data.max_sessions=150", "--set",
          "data.min_item_count=2", "--set", "data.iterative_filter=true", "--set", "train.epochs=2", "--set",
          "intent.source=llm", "--set", "llm.model=llama:" + llm4sbr::testing::tiny_model("tiny-qwen2-chat.gguf").string(),
          "--set", "llm.max_tokens=3", "--set", "prompt.max_items=3", "--set", "llm.parallel=1", "--out", out.string()};
}

std::vector<std::string> environment(const std::string& kill_at = "") {
  std::vector<std::string> env{"LLM4SBR_DATA_DIR=" + llm4sbr::testing::data_dir().string()};
  if (!kill_at.empty()) env.push_back("LLM4SBR_KILL_AT=" + kill_at);
  return env;
}

ProcessResult run(const fs::path& out, const std::string& kill_at = "") {
  return llm4sbr::testing::run_with_file_size_limit(run_args(out), -1, kTimeoutSeconds, LLM4SBR_SOURCE_DIR,
                                                    environment(kill_at));
}

// What a run must end with: metrics.json without timings and its own paths, every answer without its time
// (keyed by split, sample and view: the order of the lines follows the order of generation), and the bytes
// of every split's intents.npy.
struct Outcome {
  nlohmann::json metrics;
  std::map<std::tuple<std::string, std::int64_t, std::string>, nlohmann::json> answers;
  std::map<std::string, std::string> intents;
  std::size_t answer_lines = 0;
};

void drop_run_specific(nlohmann::json& j) {
  if (j.is_object()) {
    for (const char* key : {"train_seconds", "eval_seconds", "train_samples_per_second", "checkpoint_dir", "intents_dir"})
      j.erase(key);
    for (auto& [key, value] : j.items()) drop_run_specific(value);
  } else if (j.is_array()) {
    for (auto& value : j) drop_run_specific(value);
  }
}

fs::path only_subdir(const fs::path& dir, const std::string& prefix) {
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().starts_with(prefix)) return e.path();
  return {};
}

Outcome outcome_of(const fs::path& out) {
  Outcome o;
  o.metrics = nlohmann::json::parse(read_text(out / "metrics.json"));
  drop_run_specific(o.metrics);
  for (const char* split : {"train", "valid", "test"}) {
    for (auto record : llm4sbr::testing::read_jsonl(only_subdir(out / "stages", "responses-") / split / "responses.jsonl")) {
      record.erase("seconds");
      ++o.answer_lines;
      o.answers[{split, record.at("sample").get<std::int64_t>(), record.at("view").get<std::string>()}] = record;
    }
    o.intents[split] = read_text(only_subdir(out / "stages", "intents-") / split / "intents.npy");
  }
  return o;
}

void expect_same_outcome(const fs::path& out, const Outcome& want) {
  const Outcome got = outcome_of(out);
  EXPECT_EQ(got.metrics, want.metrics) << "metrics.json differs from the uninterrupted run's";
  EXPECT_EQ(got.answer_lines, got.answers.size()) << "a (sample, view) was answered twice";
  EXPECT_EQ(got.answers.size(), want.answers.size());
  for (const auto& [key, record] : want.answers) {
    const auto it = got.answers.find(key);
    ASSERT_NE(it, got.answers.end()) << "no answer for " << std::get<0>(key) << " sample " << std::get<1>(key);
    EXPECT_EQ(it->second, record);
  }
  for (const auto& [split, bytes] : want.intents) EXPECT_TRUE(got.intents.at(split) == bytes) << split << " intents.npy differs";
  for (const auto& e : fs::recursive_directory_iterator(out))
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << "left behind: " << e.path();
}

// The last line a killed run printed (progress bars end theirs with '\r'): where it was.
std::string last_line(const std::string& output) {
  std::string last;
  std::size_t begin = 0;
  for (std::size_t end; (end = output.find_first_of("\r\n", begin)) != std::string::npos || begin < output.size();) {
    if (end == std::string::npos) end = output.size();
    if (end > begin) last = output.substr(begin, end - begin);
    begin = end + 1;
  }
  return last.substr(0, 110);
}

class KillAnywhere : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!fs::exists(llm4sbr::testing::data_dir() / "amazon-beauty-2014")) return;
    dir_ = new llm4sbr::testing::TempDir;
    const auto t0 = std::chrono::steady_clock::now();
    const auto whole = run(*dir_ / "whole");
    ASSERT_EQ(whole.exit_code, 0) << whole.output;
    seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    reference_ = new Outcome(outcome_of(*dir_ / "whole"));
  }
  static void TearDownTestSuite() {
    delete reference_;
    delete dir_;
  }
  void SetUp() override {
    LLM4SBR_REQUIRE_DATA("amazon-beauty-2014");
    ASSERT_NE(reference_, nullptr) << "the uninterrupted run failed";
  }

  static llm4sbr::testing::TempDir* dir_;
  static Outcome* reference_;
  static double seconds_;
};

llm4sbr::testing::TempDir* KillAnywhere::dir_ = nullptr;
Outcome* KillAnywhere::reference_ = nullptr;
double KillAnywhere::seconds_ = 0;

// One kill in each stage, in the order the run reaches them; each run after a kill resumes the last one's work.
TEST_F(KillAnywhere, KilledInEveryStageEndsAsTheUninterruptedRun) {
  const auto out = *dir_ / "every-stage";
  const std::vector<std::pair<std::string, std::string>> points{
      {"write:train.tsv", "preparing the data: train.tsv written, not yet renamed into place"},
      {"train:2:1", "training SR-GNN: epoch 2, batch 1"},
      {"answer:40", "generating: half of the 40th answer line written"},
      {"write:projection.npy", "encoding: the fitted text encoder being written"},
      {"write:intents.npy", "localizing: the first split's intents being written"},
      {"eval:1", "evaluating LLM4SBR(SR-GNN) after epoch 1"},
      {"state:2", "training LLM4SBR(SR-GNN): half of epoch 2's state written"},
      {"write:metrics.json", "writing the report: metrics.json"},
      {"write:results.md", "writing the report: results.md"}};
  std::string previous;
  for (const auto& [point, stage] : points) {
    const auto killed = run(out, point);
    ASSERT_EQ(killed.signal, SIGKILL) << "never killed " << stage << " (" << point << "):\n" << killed.output;
    if (previous == "answer:40")
      EXPECT_NE(killed.output.find("cutting off a torn last record"), std::string::npos) << "the torn line was not cut:\n"
                                                                                         << killed.output;
    previous = point;
    if (point == "answer:40") {
      bool torn = false;
      for (const char* split : {"train", "valid", "test"}) {
        const auto text = read_text(only_subdir(out / "stages", "responses-") / split / "responses.jsonl");
        torn = torn || (!text.empty() && !text.ends_with('\n'));
      }
      ASSERT_TRUE(torn) << "no responses.jsonl ends in a torn line";
    }
  }
  const auto last = run(out);
  ASSERT_EQ(last.exit_code, 0) << last.output;
  expect_same_outcome(out, *reference_);
}

// SIGKILL from outside at moments drawn uniformly over the uninterrupted run's duration, up to kKills times
// (a run that finishes first ends the series). The seed is printed; LLM4SBR_KILL_SEED=N repeats a series.
TEST_F(KillAnywhere, KilledAtRandomMomentsEndsAsTheUninterruptedRun) {
  constexpr int kKills = 12;
  const char* seed_env = std::getenv("LLM4SBR_KILL_SEED");
  const auto seed = seed_env ? static_cast<unsigned>(std::stoul(seed_env)) : std::random_device{}();
  std::printf("LLM4SBR_KILL_SEED=%u (the uninterrupted run took %.2f s)\n", seed, seconds_);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> moment(0.0, seconds_);
  const auto out = *dir_ / ("random-" + std::to_string(seed));
  for (int k = 1; k <= kKills; ++k) {
    const double at = moment(rng);
    const auto log = *dir_ / ("random-" + std::to_string(k) + ".log");
    const auto started = llm4sbr::testing::start_process(run_args(out), environment(), log, kTimeoutSeconds, LLM4SBR_SOURCE_DIR);
    const auto deadline = started.start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(at));
    bool exited = false;
    while (!exited && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      exited = ::waitpid(started.pid, nullptr, WNOHANG) == started.pid;
    }
    if (exited) {
      std::printf("run %d finished before %.2f s\n", k, at);
      break;
    }
    ::kill(started.pid, SIGKILL);
    const auto killed = llm4sbr::testing::wait_process(started);
    std::printf("run %d killed at %.2f s: %s\n", k, at, last_line(killed.result.output).c_str());
  }
  const auto last = run(out);
  ASSERT_EQ(last.exit_code, 0) << "seed " << seed << ":\n" << last.output;
  SCOPED_TRACE("LLM4SBR_KILL_SEED=" + std::to_string(seed));
  expect_same_outcome(out, *reference_);
}

}  // namespace
