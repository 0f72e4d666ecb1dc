// Serving's ranking against the model's own scores, without a server: a backbone whose scorer is a table
// (SR-GNN; GRU4Rec with its per-item bias) is ranked by the service's screened search, another (TAGNN) by its
// scores of every item. Either way the served items are the top k of forward's scores, with those scores, and
// exclude_seen leaves the session's items out.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <memory>
#include <string>
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
  for (const std::string name : {"srgnn", "gru4rec", "tagnn"}) {
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

}  // namespace
}  // namespace llm4sbr::serve
