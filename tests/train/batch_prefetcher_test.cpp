// Batches made ahead of their step (issue 13): in order, no further ahead than asked, a failure at its own
// batch, and training and evaluation that do not depend on it.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/core/error.hpp"
#include "llm4sbr/models/recommender.hpp"
#include "llm4sbr/train/batch_prefetcher.hpp"
#include "llm4sbr/train/trainer.hpp"

using namespace llm4sbr;

namespace {

// A batch that says which it is: items [[i]].
models::SessionBatch numbered(std::size_t i) {
  models::SessionBatch batch;
  batch.items = torch::full({1, 1}, static_cast<std::int64_t>(i), torch::kInt64);
  return batch;
}

// 150 sessions of 3-7 clicks over 30 items, every prefix a sample; the last 30 sessions are the test split.
data::PreparedDataset tiny_dataset() {
  data::PreparedDataset ds;
  ds.name = "tiny";
  for (std::int64_t i = 1; i <= 30; ++i) ds.items.push_back({i, fmt::format("i{}", i), fmt::format("item {}", i)});
  for (int s = 0; s < 150; ++s) {
    data::Session session{fmt::format("s{}", s), {}, 0};
    std::int64_t item = 1 + (s * 7) % 30;
    for (int k = 0; k < 3 + s % 5; ++k) {
      session.items.push_back(item);
      item = 1 + (item * 11 + 5) % 30;
    }
    auto& split = s < 120 ? ds.train : ds.test;
    for (std::size_t t = 1; t < session.items.size(); ++t)
      split.push_back({static_cast<std::int64_t>(split.size()), s,
                       {session.items.begin(), session.items.begin() + static_cast<std::ptrdiff_t>(t)}, session.items[t]});
    ds.sessions.push_back(std::move(session));
  }
  return ds;
}

// One epoch of `model_name` on the tiny dataset with `prefetch` batches made ahead; the trained parameters.
std::vector<torch::Tensor> trained_parameters(const std::string& model_name, std::int64_t prefetch,
                                              const data::PreparedDataset& ds) {
  torch::manual_seed(7);  // the dropout masks drawn during the pass
  models::ModelContext ctx{ds.n_items(), 16, 3, &ds};
  auto model = std::make_shared<models::PlainRecommenderImpl>(models::make_encoder(model_name, ctx, Config::parse("{}")));
  train::TrainOptions opt;
  opt.epochs = 1;
  opt.batch_size = 32;
  opt.prefetch_batches = prefetch;
  train::fit(*model, ds, opt);
  std::vector<torch::Tensor> out;
  for (const auto& p : model->parameters()) out.push_back(p.detach().clone());
  return out;
}

}  // namespace

TEST(BatchPrefetcher, HandsOutEveryBatchInOrderAtAnyDepth) {
  for (const std::size_t depth : {0, 1, 3}) {
    train::BatchPrefetcher prefetcher(10, depth, numbered);
    for (std::int64_t i = 0; i < 10; ++i) EXPECT_EQ(prefetcher.next().items.item<std::int64_t>(), i) << "depth " << depth;
    EXPECT_THROW(prefetcher.next(), std::out_of_range) << "depth " << depth;
  }
}

TEST(BatchPrefetcher, BuildsNoFurtherAheadThanItsDepth) {
  std::atomic<std::size_t> built{0};
  train::BatchPrefetcher prefetcher(100, 2, [&](std::size_t i) {
    ++built;
    return numbered(i);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // time enough to build all 100 if it were unbounded
  EXPECT_LE(built.load(), 2u);
  prefetcher.next();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_LE(built.load(), 3u);
  EXPECT_GE(built.load(), 1u);
}

TEST(BatchPrefetcher, AFailedBuildIsThrownAtItsOwnBatchAndNotBefore) {
  for (const std::size_t depth : {0, 2}) {
    train::BatchPrefetcher prefetcher(10, depth, [](std::size_t i) {
      if (i == 3) throw InputError("sample 7", 0, "prefix", "empty session prefix");
      return numbered(i);
    });
    for (std::int64_t i = 0; i < 3; ++i) EXPECT_EQ(prefetcher.next().items.item<std::int64_t>(), i);
    try {
      prefetcher.next();
      FAIL() << "batch 3 was handed out, depth " << depth;
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("empty session prefix"), std::string::npos) << e.what();
    }
  }
}

// An epoch left early (an exception, a kill point) stops the building at once: the destructor does not build
// the remaining batches.
TEST(BatchPrefetcher, LeavingEarlyBuildsNoMoreBatches) {
  std::atomic<std::size_t> built{0};
  {
    train::BatchPrefetcher prefetcher(1000, 2, [&](std::size_t i) {
      ++built;
      return numbered(i);
    });
    prefetcher.next();
  }
  EXPECT_LE(built.load(), 4u);
}

// Training and evaluation with batches (and every model's prepared inputs: session graphs, packed clicks, the
// line graph) made on the prefetching thread give the same model and ranks as without it: the same batches in
// the same order, the same arithmetic.
TEST(BatchPrefetcher, TrainingAndEvaluationDoNotDependOnIt) {
  const auto ds = tiny_dataset();
  for (const auto& model : models::registered_encoders()) {
    const auto plain = trained_parameters(model, 0, ds);
    const auto ahead = trained_parameters(model, 3, ds);
    ASSERT_EQ(plain.size(), ahead.size());
    for (std::size_t i = 0; i < plain.size(); ++i)
      EXPECT_TRUE(torch::allclose(plain[i], ahead[i], /*rtol=*/0, /*atol=*/1e-7)) << model << " parameter " << i;
  }
  models::ModelContext ctx{ds.n_items(), 16, 3, &ds};
  for (const auto& name : models::registered_encoders()) {
    models::PlainRecommenderImpl model(models::make_encoder(name, ctx, Config::parse("{}")));
    EXPECT_EQ(train::rank_targets(model, ds.test, 16, {}, 0), train::rank_targets(model, ds.test, 16, {}, 2)) << name;
  }
}

TEST(TrainOptions, PrefetchBatchesIsReadAndDefaultsByDevice) {
  auto opt = train::train_options_from_config(Config::parse("train: {prefetch_batches: 4}"));
  EXPECT_EQ(opt.prefetch_depth(), 4u);
  opt = train::train_options_from_config(Config::parse("{}"));
  EXPECT_FALSE(opt.prefetch_batches.has_value());
  EXPECT_EQ(opt.prefetch_depth(), 0u);  // a CPU
  opt.device = torch::Device(torch::kCUDA, 0);
  EXPECT_EQ(opt.prefetch_depth(), 2u);
  try {
    train::train_options_from_config(Config::parse("train: {prefetch_batches: -1}"));
    FAIL() << "a negative depth was taken";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("train.prefetch_batches = -1"), std::string::npos) << e.what();
  }
}
