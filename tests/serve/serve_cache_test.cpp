// The `cache` intent source (serve/service.hpp): a service over a run whose intents came from an LLM (the tiny
// random-weight GGUF chat model) answers a session the run asked the LLM about with that answer, keyed by the
// prompt's hash as responses.jsonl is, and the model's ranking is then exactly offline evaluation's on the
// stored intents; a session nobody asked about falls back to titles intents, and says so. With --llm (a real
// llama-server on the tiny model), such a session's prompts are asked at request time: the answer is the `llm`
// source, then the `cache`, kept in a responses.jsonl; killing the LLM server changes only the source.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <thread>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "llm/llama_server.hpp"
#include "llm4sbr/llm/response_store.hpp"
#include "llm4sbr/models/batch.hpp"
#include "llm4sbr/train/checkpoint.hpp"
#include "serve/serve_fixture.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// A run whose intents came from the tiny chat model on 150 Beauty sessions.
const std::vector<std::string> kLlmRun{
    "--set", "intent.source=llm", "--set", "llm.model=llama:" + llm4sbr::testing::tiny_model("tiny-qwen2-chat.gguf").string(),
    "--set", "llm.max_tokens=3", "--set", "prompt.max_items=3", "--set", "data.min_item_count=2"};

class ServeCache : public llm4sbr::testing::ServeFixture {
 protected:
  static void SetUpTestSuite() { start_server({}, {}, kLlmRun, 150); }
  static fs::path llm_checkpoint() { return *dir_ / "run" / "llm4sbr-sr-gnn" / "best.pt"; }
  // A session no sample of the data has: the longest test prefix backwards, then the first catalogue item.
  static json new_session(std::size_t extra = 0) {
    auto trained = llm4sbr::train::load_trained(llm_checkpoint(), torch::kCPU, {.text = false});
    const auto& ds = *trained.dataset;
    const auto longest = *std::max_element(ds.test.begin(), ds.test.end(),
                                           [](const auto& a, const auto& b) { return a.prefix.size() < b.prefix.size(); });
    json items = json::array();
    for (auto it = longest.prefix.rbegin(); it != longest.prefix.rend(); ++it)
      items.push_back(ds.items[static_cast<std::size_t>(*it - 1)].raw_id);
    items.push_back(ds.items[extra % ds.items.size()].raw_id);
    return items;
  }
};

TEST_F(ServeCache, ASessionTheRunAskedAboutGetsItsLlmAnswerAndTheOfflineRanking) {
  auto trained = llm4sbr::train::load_trained(llm_checkpoint(), torch::kCPU, {.text = false});
  ASSERT_FALSE(trained.responses_dir.empty()) << "checkpoint.yaml records the answers behind the intents";
  std::map<std::pair<std::int64_t, std::string>, std::string> stored;
  for (const auto& [line, r] : llm4sbr::llm::read_response_file(trained.responses_dir / "test" / "responses.jsonl"))
    stored[{r.sample, r.view}] = r.response;
  const auto& ds = *trained.dataset;
  const std::size_t n = std::min<std::size_t>(20, ds.test.size());
  const std::vector<llm4sbr::data::Sample> samples(ds.test.begin(), ds.test.begin() + static_cast<std::ptrdiff_t>(n));
  auto batch = llm4sbr::models::make_batch(samples);
  batch.intents = trained.intents("test").index_select(0, batch.sample_ids);
  torch::NoGradGuard no_grad;
  const auto offline = trained.model->forward(batch).scores;
  for (std::size_t i = 0; i < n; ++i) {
    json items = json::array();
    for (const auto id : samples[i].prefix) items.push_back(ds.items[static_cast<std::size_t>(id - 1)].raw_id);
    const auto answer = post("/v1/recommend", json{{"items", items}, {"k", 10}}.dump(), 200);
    ASSERT_EQ(answer["intent"]["source"], "cache") << answer.dump();
    for (const auto* view : {"long", "short"})
      EXPECT_EQ(answer["intent"]["views"][view]["text"], stored.at({samples[i].id, view})) << view;
    const auto top = std::get<0>(offline[static_cast<std::int64_t>(i)].topk(10));
    for (std::int64_t j = 0; j < 10; ++j)
      EXPECT_NEAR(answer["items"][static_cast<std::size_t>(j)]["score"].get<float>(), top[j].item<float>(), 1e-4) << i;
  }
  EXPECT_NE(client().Get("/metrics")->body.find(R"(llm4sbr_intent_source_total{source="cache"})"), std::string::npos);
}

TEST_F(ServeCache, ASessionNobodyAskedAboutFallsBackToTitles) {
  const auto answer = post("/v1/recommend", json{{"items", new_session()}, {"k", 5}}.dump(), 200);
  EXPECT_EQ(answer["intent"]["source"], "titles") << answer.dump();
  EXPECT_FALSE(answer["intent"]["views"]["long"]["text"].get<std::string>().empty());
}

class ServeLlm : public ServeCache {
 protected:
  static void SetUpTestSuite() {
    llama_dir_ = new llm4sbr::testing::TempDir;
    llama_ = new llm4sbr::testing::LlamaServer(llm4sbr::testing::tiny_model("tiny-qwen2-chat.gguf"),
                                               llm4sbr::testing::tiny_chat_server_args(), *llama_dir_ / "llama.log");
    start_server({"--llm", "openai:" + llama_->url(), "--intent-wait-ms", "8000", "--set", "llm.max_tokens=3"}, {},
                 kLlmRun, 150);
  }
  static void TearDownTestSuite() {
    ServeCache::TearDownTestSuite();
    delete llama_;
    delete llama_dir_;
  }
  inline static llm4sbr::testing::TempDir* llama_dir_ = nullptr;
  inline static llm4sbr::testing::LlamaServer* llama_ = nullptr;
};

TEST_F(ServeLlm, ANewSessionIsAskedThenCachedAndALostServerOnlyChangesTheSource) {
  const auto body = json{{"items", new_session()}, {"k", 5}}.dump();
  const auto first = post("/v1/recommend", body, 200);
  ASSERT_EQ(first["intent"]["source"], "llm") << first.dump() << llm4sbr::testing::read_text(*dir_ / "server.log");
  const auto again = post("/v1/recommend", body, 200);
  EXPECT_EQ(again["intent"]["source"], "cache");
  for (const auto* view : {"long", "short"})
    EXPECT_EQ(again["intent"]["views"][view]["text"], first["intent"]["views"][view]["text"]);
  const auto store = llm_checkpoint().parent_path() / "serve-responses.jsonl";
  EXPECT_EQ(llm4sbr::llm::read_response_file(store).size(), 2u) << "one answer per view, kept";
  const auto metrics = client().Get("/metrics")->body;
  EXPECT_NE(metrics.find("llm4sbr_llm_answers_held 2\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("llm4sbr_llm_queued 0\n"), std::string::npos) << metrics;

  // The LLM server dies while 4 clients send new sessions: every request is answered, with titles intents.
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < 4; ++c)
    clients.emplace_back([&, c] {
      auto cl = client();
      for (std::size_t i = 1 + static_cast<std::size_t>(c); !stop; i += 4) {
        auto res = cl.Post("/v1/recommend", json{{"items", new_session(i)}, {"k", 5}}.dump(), "application/json");
        (res && res->status == 200 ? ok : failed)++;
      }
    });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  llama_->stop();
  const auto after = post("/v1/recommend", json{{"items", new_session(999)}, {"k", 5}}.dump(), 200);
  EXPECT_EQ(after["intent"]["source"], "titles") << after.dump();
  stop = true;
  for (auto& t : clients) t.join();
  EXPECT_EQ(failed, 0);
  EXPECT_GT(ok, 0);
}

// A hung LLM server (stopped: it accepts connections and never answers) costs a request its --intent-wait-ms,
// and SIGTERM still stops the service at once, leaving the batch in flight behind.
TEST_F(ServeLlm, AHungLlmDoesNotHoldUpAStop) {
  // The test above kills the suite's LLM server; ctest runs each test in a process of its own, but a run of
  // both in one process (--gtest_filter) finds no server here, and kill(-1, SIGSTOP) would stop every process
  // of the user.
  if (llama_->pid() <= 0) GTEST_SKIP() << "the LLM server was stopped by an earlier test of this process";
  ASSERT_EQ(::kill(llama_->pid(), SIGSTOP), 0);
  const auto t0 = std::chrono::steady_clock::now();
  const auto answer = post("/v1/recommend", json{{"items", new_session(7)}, {"k", 5}}.dump(), 200);
  EXPECT_EQ(answer["intent"]["source"], "titles") << answer.dump();
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 15);
  const auto stop = std::chrono::steady_clock::now();
  ASSERT_EQ(::kill(server_->pid, SIGTERM), 0);
  const auto finished = llm4sbr::testing::wait_process(*server_);
  delete server_;
  server_ = nullptr;
  EXPECT_EQ(finished.result.exit_code, 0) << finished.result.output;
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - stop).count(), 10) << "the stop waited";
  EXPECT_NE(finished.result.output.find("not waiting for it"), std::string::npos) << finished.result.output;
}

}  // namespace
