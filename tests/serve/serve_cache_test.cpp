// The `cache` intent source (serve/service.hpp): a service over a run whose intents came from an LLM (the tiny
// random-weight GGUF chat model) answers a session the run asked the LLM about with that answer, keyed by the
// prompt's hash as responses.jsonl is, and the model's ranking is then exactly offline evaluation's on the
// stored intents; a session nobody asked about falls back to titles intents, and says so.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "llm4sbr/llm/response_store.hpp"
#include "llm4sbr/models/batch.hpp"
#include "llm4sbr/train/checkpoint.hpp"
#include "serve/serve_fixture.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

class ServeCache : public llm4sbr::testing::ServeFixture {
 protected:
  static void SetUpTestSuite() {
    start_server({}, {},
                 {"--set", "intent.source=llm", "--set",
                  "llm.model=llama:" + llm4sbr::testing::tiny_model("tiny-qwen2-chat.gguf").string(), "--set",
                  "llm.max_tokens=3", "--set", "prompt.max_items=3", "--set", "data.min_item_count=2"},
                 150);
  }
  static fs::path llm_checkpoint() { return *dir_ / "run" / "llm4sbr-sr-gnn" / "best.pt"; }
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
  auto trained = llm4sbr::train::load_trained(llm_checkpoint(), torch::kCPU, {.text = false});
  const auto& ds = *trained.dataset;
  // Three items no sample of the data has as a prefix in this order: the most recent first.
  const auto longest = *std::max_element(ds.test.begin(), ds.test.end(),
                                         [](const auto& a, const auto& b) { return a.prefix.size() < b.prefix.size(); });
  ASSERT_GE(longest.prefix.size(), 2u);
  json items = json::array();
  for (auto it = longest.prefix.rbegin(); it != longest.prefix.rend(); ++it)
    items.push_back(ds.items[static_cast<std::size_t>(*it - 1)].raw_id);
  items.push_back(ds.items[0].raw_id);
  const auto answer = post("/v1/recommend", json{{"items", items}, {"k", 5}}.dump(), 200);
  EXPECT_EQ(answer["intent"]["source"], "titles") << answer.dump();
  EXPECT_FALSE(answer["intent"]["views"]["long"]["text"].get<std::string>().empty());
}

}  // namespace
