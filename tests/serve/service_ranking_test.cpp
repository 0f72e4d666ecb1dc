// Serving's ranking against the model's own scores, without a server, for every backbone: one whose scorer is a
// table (SR-GNN, GCE-GNN, SASRec; GRU4Rec with its per-item bias) is ranked by the service's screened search,
// another (TAGNN, S²-DHCN) by its scores of every item. Either way the served items are the top k of forward's
// scores, with those scores, and exclude_seen leaves the session's items out. Passes side by side give the
// answers of passes one at a time.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "llm4sbr/models/batch.hpp"
#include "llm4sbr/models/recommender.hpp"
#include "llm4sbr/serve/service.hpp"

namespace llm4sbr::serve {
namespace {

constexpr std::int64_t kItems = 300;

// A backbone with weights drawn from U(-1, 1) (GRU4Rec's bias starts at zero, which would hide it) over a catalogue
// of raw ids "i1".."i300".
train::TrainedModel tiny_trained(const std::string& name) {
  auto ds = std::make_shared<data::PreparedDataset>();
  for (std::int64_t i = 1; i <= kItems; ++i) ds->items.push_back({i, "i" + std::to_string(i), "item " + std::to_string(i)});
  ds->sessions = {{"a", {1, 2, 3}, 0}, {"b", {2, 4, 5}, 0}};
  ds->train = {{0, 0, {1, 2}, 3}, {1, 1, {2, 4}, 5}};
  models::ModelContext ctx;
  ctx.n_items = kItems;
  ctx.hidden_size = 16;
  ctx.seed = 5;
  ctx.dataset = ds.get();
  auto model = std::make_shared<models::PlainRecommenderImpl>(models::make_encoder(name, ctx, Config()));
  {
    torch::NoGradGuard no_grad;
    torch::manual_seed(9);
    for (auto& p : model->parameters()) p.uniform_(-1, 1);
  }
  model->eval();
  train::TrainedModel trained;
  trained.model = model;
  trained.dataset = ds;
  return trained;
}

TEST(ServiceRanking, ServedItemsAreTheTopKOfTheModelsScores) {
  const std::vector<std::int64_t> clicks = {3, 7, 3, 12, 250};
  for (const auto& name : models::registered_encoders()) {
    auto trained = tiny_trained(name);
    const auto model = trained.model;
    const Service service(std::move(trained));
    torch::Tensor offline;
    {
      torch::NoGradGuard no_grad;
      offline = model->forward(models::make_batch({{0, 0, clicks, 1}})).scores[0];
    }
    for (const bool exclude_seen : {false, true}) {
      SCOPED_TRACE(name + (exclude_seen ? ", exclude_seen" : ""));
      RecommendRequest request;
      for (const auto id : clicks) request.items.push_back("i" + std::to_string(id));
      request.k = 25;
      request.exclude_seen = exclude_seen;
      const auto answer = service.recommend({request}).at(0);
      auto eligible = offline.clone();
      if (exclude_seen)
        for (const auto id : clicks) eligible[id - 1] = -std::numeric_limits<float>::infinity();
      const auto kth = std::get<0>(eligible.topk(request.k))[request.k - 1].item<float>();
      ASSERT_EQ(answer["items"].size(), 25u) << answer.dump();
      EXPECT_EQ(answer["flags"], nlohmann::json::array());
      float previous = std::numeric_limits<float>::infinity();
      for (const auto& item : answer["items"]) {
        const auto id = std::stoll(item["id"].get<std::string>().substr(1));
        const float score = item["score"].get<float>();
        const float want = offline[id - 1].item<float>();
        EXPECT_NEAR(score, want, 1e-4 * std::max(1.0f, std::abs(want))) << item.dump();
        EXPECT_GE(want, kth - 1e-4) << "outside the top 25: " << item.dump();
        EXPECT_LE(score, previous);
        previous = score;
        if (exclude_seen) EXPECT_EQ(std::count(clicks.begin(), clicks.end(), id), 0) << item.dump();
      }
    }
  }
}

// exclude_seen with k = the catalogue's size leaves out the session's distinct items, and says so.
TEST(ServiceRanking, AnAnswerShortOfKIsFlagged) {
  const std::vector<std::int64_t> clicks = {3, 7, 3, 12};
  for (const auto& name : {std::string("srgnn"), std::string("tagnn")}) {  // screened search; scores of every item
    SCOPED_TRACE(name);
    const Service service(tiny_trained(name));
    RecommendRequest request;
    for (const auto id : clicks) request.items.push_back("i" + std::to_string(id));
    request.k = kItems;
    request.exclude_seen = true;
    const auto answer = service.recommend({request}).at(0);
    EXPECT_EQ(answer["items"].size(), static_cast<std::size_t>(kItems - 3)) << answer["flags"];
    EXPECT_EQ(answer["flags"], nlohmann::json::array({"fewer_than_k"}));
  }
}

// Passes side by side (the workers') give the answers of passes one at a time, for every backbone.
TEST(ServiceRanking, ConcurrentPassesGiveTheSerialAnswers) {
  for (const auto& name : models::registered_encoders()) {
    SCOPED_TRACE(name);
    const Service service(tiny_trained(name));
    std::vector<RecommendRequest> requests(12);
    for (std::size_t r = 0; r < requests.size(); ++r) {
      for (std::size_t c = 0; c <= r % 4; ++c) requests[r].items.push_back("i" + std::to_string(1 + (7 * r + 13 * c) % kItems));
      requests[r].k = 10;
    }
    constexpr int kThreads = 4;
    std::vector<std::vector<std::string>> concurrent(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
      threads.emplace_back([&, t] {
        for (const auto& request : requests) concurrent[static_cast<std::size_t>(t)].push_back(service.recommend({request}).at(0)["items"].dump());
      });
    for (auto& thread : threads) thread.join();
    for (std::size_t r = 0; r < requests.size(); ++r) {
      const auto serial = service.recommend({requests[r]}).at(0)["items"].dump();
      for (int t = 0; t < kThreads; ++t) EXPECT_EQ(concurrent[static_cast<std::size_t>(t)][r], serial) << "request " << r;
    }
  }
}

// A model's first pass, held 100 ms, noting whether another pass began meanwhile.
class FirstPassProbe : public models::RecommenderImpl {
 public:
  explicit FirstPassProbe(models::Recommender inner) : inner_(register_module("inner", std::move(inner))) {}
  models::ForwardOutput forward(const models::SessionBatch& batch) override {
    return watched([&] { return inner_->forward(batch); });
  }
  models::ForwardOutput forward_unscored(const models::SessionBatch& batch) override {
    return watched([&] { return inner_->forward_unscored(batch); });
  }
  models::LinearScorer linear_scorer() const override { return inner_->linear_scorer(); }
  std::string label() const override { return inner_->label(); }
  bool first_pass_shared() const { return first_pass_shared_; }

 private:
  template <typename Pass>
  models::ForwardOutput watched(Pass pass) {
    if (passes_++ == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (passes_ > 1) first_pass_shared_ = true;  // another began before this one ended
    }
    return pass();
  }
  models::Recommender inner_;
  std::atomic<int> passes_{0};
  std::atomic<bool> first_pass_shared_{false};
};

// S²-DHCN builds state on its first evaluation pass (its convolved items and sparse layouts) and later passes
// read it, so that pass must not run beside others: the service runs it when it is made, before any request.
TEST(ServiceRanking, TheModelsFirstPassRunsAloneBeforeAnyRequest) {
  auto trained = tiny_trained("dhcn");
  const auto probe = std::make_shared<FirstPassProbe>(trained.model);
  trained.model = probe;
  const Service service(std::move(trained));
  RecommendRequest request;
  request.items = {"i3", "i4"};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) threads.emplace_back([&] { service.recommend({request}); });
  for (auto& thread : threads) thread.join();
  EXPECT_FALSE(probe->first_pass_shared());
}

}  // namespace
}  // namespace llm4sbr::serve
