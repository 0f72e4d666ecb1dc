// `llm4sbr infer --llm openai:URL1,URL2` end to end on real Beauty samples against two real llama-server
// processes with the tiny chat model: all records, a server killed mid-run, a bad API key, an unreachable
// URL, and shards merged against the unsharded run.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <set>
#include <thread>

#include "llm/llama_server.hpp"
#include "llm_answers.hpp"
#include "test_support.hpp"

using namespace llm4sbr;
using llm4sbr::testing::LlamaServer;
using llm4sbr::testing::read_jsonl;
using llm4sbr::testing::read_text;
using llm4sbr::testing::run_logged;
using llm4sbr::testing::TempDir;

namespace {

using Key = std::pair<std::int64_t, std::string>;

std::string infer_command(const std::string& urls, const std::filesystem::path& out, int limit, const std::string& extra = "") {
  return fmt::format("'{}' infer --data '{}' --llm 'openai:{}' --split test --limit {} --out '{}' --set llm.max_tokens=8 "
                     "--set llm.http.concurrency=4 --set llm.http.backoff_seconds=0.05 {}",
                     LLM4SBR_CLI, llm4sbr::testing::prepared_beauty().string(), urls, limit, out.string(), extra);
}

// (sample, view) -> record of a responses.jsonl; fails the test if a key is doubled.
std::map<Key, nlohmann::json> records_by_key(const std::filesystem::path& file) {
  std::map<Key, nlohmann::json> out;
  for (auto& r : read_jsonl(file)) {
    Key key{r["sample"].get<std::int64_t>(), r["view"].get<std::string>()};
    EXPECT_TRUE(out.emplace(key, r).second) << "doubled: sample " << key.first << " view " << key.second;
  }
  return out;
}

void expect_all_samples(const std::map<Key, nlohmann::json>& records, std::int64_t samples) {
  EXPECT_EQ(records.size(), static_cast<std::size_t>(2 * samples));
  for (std::int64_t s = 0; s < samples; ++s) {
    EXPECT_TRUE(records.count({s, "long"})) << s;
    EXPECT_TRUE(records.count({s, "short"})) << s;
  }
}

class HttpInfer : public ::testing::Test {
 protected:
  void SetUp() override {
    LLM4SBR_REQUIRE_LLAMA_SERVER();
    LLM4SBR_REQUIRE_DATA("amazon-beauty-2014");
    llm4sbr::testing::prepared_beauty();
  }
  std::unique_ptr<LlamaServer> start_server(const std::string& name, std::vector<std::string> extra = {}) {
    auto args = llm4sbr::testing::tiny_chat_server_args();
    args.insert(args.end(), extra.begin(), extra.end());
    return std::make_unique<LlamaServer>(llm4sbr::testing::tiny_model("tiny-qwen2-chat.gguf"), args, tmp_ / (name + ".log"));
  }
  TempDir tmp_;
};

}  // namespace

TEST_F(HttpInfer, TwoHundredBeautySamplesTwoViewsOverTwoServers) {
  auto a = start_server("a"), b = start_server("b");
  const auto log = tmp_ / "infer.log";
  ASSERT_EQ(run_logged(infer_command(a->url() + "," + b->url(), tmp_.path(), 200), log), 0) << read_text(log);
  expect_all_samples(records_by_key(tmp_ / "test/responses.jsonl"), 200);
  llm4sbr::testing::expect_real_answers(llm4sbr::testing::answers_in(tmp_ / "test/responses.jsonl"));
  const std::string text = read_text(log);
  // The per-endpoint summary names both servers, and the bar reports the rates.
  EXPECT_NE(text.find(a->url() + "/v1"), std::string::npos) << text;
  EXPECT_NE(text.find(b->url() + "/v1"), std::string::npos) << text;
  EXPECT_NE(text.find("gen tok/s"), std::string::npos) << text;
  EXPECT_NE(text.find("p99"), std::string::npos) << text;

  // A second run finds everything done and sends nothing.
  ASSERT_EQ(run_logged(infer_command(a->url() + "," + b->url(), tmp_.path(), 200), log), 0) << read_text(log);
  EXPECT_EQ(read_jsonl(tmp_ / "test/responses.jsonl").size(), 400u);
}

TEST_F(HttpInfer, ServerKilledMidRunLosesNothingAndDoublesNothing) {
  auto a = start_server("a"), b = start_server("b");
  const auto responses = tmp_ / "test/responses.jsonl";
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", (infer_command(a->url() + "," + b->url(), tmp_.path(), 200) + " > '" +
                                  (tmp_ / "infer.log").string() + "' 2>&1").c_str(), nullptr);
    _exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  std::size_t seen = 0;
  while (std::chrono::steady_clock::now() < deadline && seen < 60) {
    seen = std::filesystem::exists(responses) ? read_jsonl(responses).size() : 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  b->stop();  // SIGKILL: the requests in flight on it die with it
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_GE(seen, 60u) << read_text(tmp_ / "infer.log");
  ASSERT_LT(seen, 400u) << "the run finished before a server could be killed; nothing was tested";
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << read_text(tmp_ / "infer.log");
  const auto records = records_by_key(responses);
  expect_all_samples(records, 200);
  EXPECT_EQ(read_jsonl(responses).size(), 400u);  // none doubled in the file either
  llm4sbr::testing::expect_real_answers(llm4sbr::testing::answers_in(responses));
  EXPECT_NE(read_text(tmp_ / "infer.log").find("out of rotation"), std::string::npos) << read_text(tmp_ / "infer.log");
}

TEST_F(HttpInfer, BadApiKeyAndUnreachableUrlFailClearly) {
  auto locked = start_server("locked", {"--api-key", "right-key-123"});
  const auto log = tmp_ / "infer.log";
  // The wrong key: refused at once, the message says why and never shows a key.
  const int rc = run_logged("OPENAI_API_KEY=wrong-key-456 " + infer_command(locked->url(), tmp_ / "bad", 4), log);
  EXPECT_NE(rc, 0);
  std::string text = read_text(log);
  EXPECT_NE(text.find("HTTP 401"), std::string::npos) << text;
  EXPECT_NE(text.find("OPENAI_API_KEY"), std::string::npos) << text;
  EXPECT_EQ(text.find("wrong-key-456"), std::string::npos) << text;

  // The right key, from a variable named in the config: works.
  EXPECT_EQ(run_logged("MY_KEY=right-key-123 " + infer_command(locked->url(), tmp_ / "good", 4, "--set llm.http.api_key_env=MY_KEY"), log),
            0)
      << read_text(log);
  EXPECT_EQ(read_jsonl(tmp_ / "good/test/responses.jsonl").size(), 8u);
  EXPECT_EQ(read_text(log).find("right-key-123"), std::string::npos);

  // Nothing listens on port 1: a clear message, fast.
  const auto start = std::chrono::steady_clock::now();
  EXPECT_NE(run_logged(infer_command("http://127.0.0.1:1", tmp_ / "none", 4), log), 0);
  text = read_text(log);
  EXPECT_NE(text.find("no endpoint could be reached: http://127.0.0.1:1/v1"), std::string::npos) << text;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));
}

TEST_F(HttpInfer, ShardsMergedEqualTheUnshardedRun) {
  auto a = start_server("a"), b = start_server("b");
  const std::string urls = a->url() + "," + b->url();
  const auto log = tmp_ / "log";
  const int n = 60;
  ASSERT_EQ(run_logged(infer_command(urls, tmp_ / "whole", n), log), 0) << read_text(log);
  ASSERT_EQ(run_logged(infer_command(urls, tmp_ / "s1", n, "--shard 1/2"), log), 0) << read_text(log);
  ASSERT_EQ(run_logged(infer_command(urls, tmp_ / "s2", n, "--shard 2/2"), log), 0) << read_text(log);
  const auto s1 = read_jsonl(tmp_ / "s1/test/responses.jsonl"), s2 = read_jsonl(tmp_ / "s2/test/responses.jsonl");
  // Another split into a shard's folder is refused, naming the file, before anything is generated.
  EXPECT_NE(run_logged(infer_command(urls, tmp_ / "s1", n, "--shard 1/3"), log), 0);
  const auto refused = read_text(log);
  EXPECT_NE(refused.find("s1/test/responses.jsonl"), std::string::npos) << refused;
  EXPECT_NE(refused.find("not in shard 1/3"), std::string::npos) << refused;
  EXPECT_EQ(read_jsonl(tmp_ / "s1/test/responses.jsonl").size(), s1.size());
  EXPECT_GT(s1.size(), 0u);
  EXPECT_GT(s2.size(), 0u);
  EXPECT_EQ(s1.size() + s2.size(), static_cast<std::size_t>(2 * n));

  const auto merge = [&](const std::string& shards, const std::string& out) {
    return run_logged(fmt::format("'{}' merge --data '{}' --split test --limit {} --out '{}' {}", LLM4SBR_CLI,
                                  llm4sbr::testing::prepared_beauty().string(), n, (tmp_ / out).string(), shards),
                      log);
  };
  ASSERT_EQ(merge(fmt::format("'{}' '{}'", (tmp_ / "s1").string(), (tmp_ / "s2").string()), "merged"), 0) << read_text(log);
  const auto merged = records_by_key(tmp_ / "merged/test/responses.jsonl");
  const auto whole = records_by_key(tmp_ / "whole/test/responses.jsonl");
  expect_all_samples(merged, n);
  llm4sbr::testing::expect_real_answers(llm4sbr::testing::answers_in(tmp_ / "merged/test/responses.jsonl"));
  ASSERT_EQ(merged.size(), whole.size());
  // Greedy decoding gives the same answer, except at a near-tie between two tokens: llama-server's numbers
  // depend on which prompts share a batch (other slots, other kernels; seen on AMD Zen 2: 1 answer of 120
  // differed). So nearly all answers must be equal, and the prompts exactly.
  std::size_t differ = 0;
  for (const auto& [key, r] : whole) {
    EXPECT_EQ(merged.at(key)["prompt_hash"], r["prompt_hash"]);
    differ += merged.at(key)["response"] != r["response"];
  }
  EXPECT_LE(differ, whole.size() / 20) << "greedy decoding: the same answers but for near-ties";

  // A shard missing, or one given twice: refused with what is wrong.
  EXPECT_NE(merge(fmt::format("'{}'", (tmp_ / "s1").string()), "bad1"), 0);
  EXPECT_NE(read_text(log).find("without a record"), std::string::npos) << read_text(log);
  EXPECT_NE(merge(fmt::format("'{}' '{}' '{}'", (tmp_ / "s1").string(), (tmp_ / "s2").string(), (tmp_ / "s1").string()), "bad2"), 0);
  EXPECT_NE(read_text(log).find("doubled records"), std::string::npos) << read_text(log);
  EXPECT_FALSE(std::filesystem::exists(tmp_ / "bad2/test/responses.jsonl"));
}
