// The LLM4SBR head: DirectAU terms on hand-computed batches, the batch-of-one guard, exact equality with
// the plain backbone when no view is on, batch independence of test scores, and what each switch does.
#include <gtest/gtest.h>

#include <cmath>

#include "llm4sbr/core/error.hpp"
#include "llm4sbr/models/batch.hpp"
#include "llm4sbr/enhance/llm4sbr_head.hpp"
#include "llm4sbr/models/srgnn.hpp"
#include "llm4sbr/train/metrics.hpp"
#include "llm4sbr/models/recommender.hpp"

using namespace llm4sbr;

namespace {

constexpr std::int64_t kItems = 30;
constexpr std::int64_t kHidden = 8;
constexpr std::int64_t kTextDim = 6;

models::SessionEncoder tiny_srgnn(std::uint64_t seed = 7) {
  models::SrGnnOptions o;
  o.hidden_size = kHidden;
  o.n_items = kItems;
  return std::make_shared<models::SrGnnImpl>(o, seed);
}

std::vector<data::Sample> samples() {
  return {{0, 0, {1, 2, 3}, 4}, {1, 1, {5}, 6}, {2, 2, {7, 8, 7, 9}, 10}, {3, 3, {11, 12}, 13}};
}

// A batch of the given samples with intents [B, V, d_text] drawn from a fixed generator, row = sample id.
models::SessionBatch batch_of(const std::vector<data::Sample>& all, std::vector<std::int64_t> rows, std::int64_t views) {
  auto batch = models::make_batch(all, rows);
  torch::manual_seed(11);
  const auto table = torch::randn({static_cast<std::int64_t>(all.size()), views, kTextDim});
  batch.intents = table.index_select(0, batch.sample_ids);
  return batch;
}

enhance::HeadOptions options(std::vector<std::string> views) {
  enhance::HeadOptions o;
  o.views = std::move(views);
  o.text_dim = kTextDim;
  return o;
}

}  // namespace

TEST(DirectAU, AlignmentOfHandComputedPairs) {
  // Pair 1 identical directions (0), pair 2 orthogonal unit vectors (‖(1,0)-(0,1)‖² = 2): mean 1.
  const auto x = torch::tensor({{3.0, 0.0}, {0.0, 5.0}}, torch::kDouble);
  const auto y = torch::tensor({{1.0, 0.0}, {2.0, 0.0}}, torch::kDouble);
  EXPECT_NEAR(enhance::alignment_loss(x, y).item<double>(), 1.0, 1e-12);
}

TEST(DirectAU, UniformityOfHandComputedBatch) {
  // Unit vectors (1,0), (0,1), (-1,0): squared distances 2, 4, 2 -> log((2 e^-4 + e^-8) / 3).
  const auto x = torch::tensor({{2.0, 0.0}, {0.0, 1.0}, {-7.0, 0.0}}, torch::kDouble);
  const double want = std::log((2 * std::exp(-4.0) + std::exp(-8.0)) / 3.0);
  EXPECT_NEAR(enhance::uniformity_loss(x).item<double>(), want, 1e-12);
  // Two identical directions: distance 0, the worst uniformity log(1) = 0.
  EXPECT_NEAR(enhance::uniformity_loss(torch::tensor({{1.0, 1.0}, {2.0, 2.0}}, torch::kDouble)).item<double>(), 0.0, 1e-12);
}

// The pairs' distances from the Gram matrix, against torch::pdist's: the same loss and gradient (a zero row,
// whose normalized vector is 0, included).
TEST(DirectAU, UniformityEqualsThePdistFormulation) {
  torch::manual_seed(8);
  auto x = torch::randn({37, 6}, torch::kDouble);
  x[5].zero_();
  x[9] = x[3] * 2;  // the same direction twice: distance 0
  auto mine = x.clone().requires_grad_(), theirs = x.clone().requires_grad_();
  const auto u = enhance::uniformity_loss(mine);
  const auto xn = torch::nn::functional::normalize(theirs, torch::nn::functional::NormalizeFuncOptions().dim(-1));
  const auto sq = torch::pdist(xn, 2).pow(2);
  const auto want = torch::logsumexp(-2.0 * sq, 0) - std::log(static_cast<double>(sq.size(0)));
  EXPECT_NEAR(u.item<double>(), want.item<double>(), 1e-12);
  u.backward();
  want.backward();
  EXPECT_TRUE(torch::allclose(mine.grad(), theirs.grad(), 1e-9, 1e-12)) << (mine.grad() - theirs.grad()).abs().max();
}

// [V, B, d] stacks (the head's views at once) give each slice's own loss.
TEST(DirectAU, StackedBatchesGiveEachBatchsLoss) {
  torch::manual_seed(2);
  const auto x = torch::randn({3, 11, 5}, torch::kDouble), y = torch::randn({3, 11, 5}, torch::kDouble);
  const auto align = enhance::alignment_loss(x, y), unif = enhance::uniformity_loss(x);
  ASSERT_EQ(align.sizes(), torch::IntArrayRef({3}));
  ASSERT_EQ(unif.sizes(), torch::IntArrayRef({3}));
  for (std::int64_t v = 0; v < 3; ++v) {
    EXPECT_NEAR(align[v].item<double>(), enhance::alignment_loss(x[v], y[v]).item<double>(), 1e-12);
    EXPECT_NEAR(unif[v].item<double>(), enhance::uniformity_loss(x[v]).item<double>(), 1e-12);
  }
  EXPECT_TRUE(torch::equal(enhance::uniformity_loss(x.narrow(1, 0, 1)), torch::zeros({3}, torch::kDouble)));
}

TEST(DirectAU, BatchOfOneHasNoNaN) {
  const auto x = torch::randn({1, 4}, torch::requires_grad());
  const auto u = enhance::uniformity_loss(x);
  EXPECT_EQ(u.item<double>(), 0.0);
  EXPECT_TRUE(std::isfinite(enhance::alignment_loss(x, torch::randn({1, 4})).item<double>()));

  enhance::Llm4sbrHeadImpl head(tiny_srgnn(), options({"long", "short"}), 3);
  head.train();
  const auto all = samples();
  auto out = head.forward(batch_of(all, {2}, 2));
  ASSERT_TRUE(out.aux_loss.defined());
  EXPECT_TRUE(std::isfinite(out.aux_loss.item<double>()));
  EXPECT_TRUE(torch::isfinite(out.scores).all().item<bool>());
}

TEST(Llm4sbrHead, NoViewsIsExactlyThePlainBackbone) {
  auto encoder = tiny_srgnn();
  models::PlainRecommenderImpl plain(encoder);
  enhance::Llm4sbrHeadImpl head(encoder, options({}), 3);
  EXPECT_EQ(head.parameters().size(), plain.parameters().size());  // no head parameters at all
  const auto all = samples();
  auto batch = models::make_batch(all, std::vector<std::int64_t>{0, 1, 2, 3});
  plain.train();
  head.train();
  EXPECT_TRUE(torch::equal(head.forward(batch).scores, plain.forward(batch).scores));
}

TEST(Llm4sbrHead, TestScoresDoNotDependOnTheRestOfTheBatch) {
  enhance::Llm4sbrHeadImpl head(tiny_srgnn(), options({"long", "short"}), 3);
  head.eval();
  torch::NoGradGuard no_grad;
  const auto all = samples();
  const auto together = head.forward(batch_of(all, {0, 1, 2, 3}, 2)).scores;
  for (std::int64_t i = 0; i < 4; ++i) {
    const auto alone = head.forward(batch_of(all, {i}, 2)).scores;
    EXPECT_TRUE(torch::allclose(alone[0], together[i], 1e-5, 1e-6)) << "sample " << i;
  }
  EXPECT_FALSE(head.forward(batch_of(all, {0, 1}, 2)).aux_loss.defined());  // eval: no auxiliary loss
}

TEST(Llm4sbrHead, IntentsChangeTheScoresAndTheLossTrainsEveryPart) {
  enhance::Llm4sbrHeadImpl head(tiny_srgnn(), options({"long", "short"}), 3);
  head.train();
  const auto all = samples();
  auto batch = batch_of(all, {0, 1, 2, 3}, 2);
  auto out = head.forward(batch);
  auto other = batch;
  other.intents = batch.intents.flip(0);
  EXPECT_FALSE(torch::allclose(head.forward(other).scores, out.scores));

  auto loss = torch::nn::functional::cross_entropy(out.scores, batch.targets - 1) + out.aux_loss;
  loss.backward();
  for (const auto& p : head.named_parameters()) {
    if (p.key().find("embedding") != std::string::npos) continue;  // rows of unseen items get no gradient
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_GT(p.value().grad().abs().sum().item<double>(), 0.0) << p.key();
  }
}

TEST(Llm4sbrHead, TauAndWithoutAuSwitchOffTheAuxiliaryLoss) {
  const auto all = samples();
  auto o = options({"long", "short"});
  o.align_uniform = false;
  enhance::Llm4sbrHeadImpl no_au(tiny_srgnn(), o, 3);
  no_au.train();
  EXPECT_FALSE(no_au.forward(batch_of(all, {0, 1, 2}, 2)).aux_loss.defined());

  // The auxiliary loss is τ Σ_v (L_a + L_u); doubling τ doubles it.
  auto o1 = options({"long", "short"});
  auto o2 = o1;
  o2.tau = 0.2;
  enhance::Llm4sbrHeadImpl h1(tiny_srgnn(), o1, 3), h2(tiny_srgnn(), o2, 3);
  h1.train();
  h2.train();
  const auto a1 = h1.forward(batch_of(all, {0, 1, 2}, 2)).aux_loss.item<double>();
  const auto a2 = h2.forward(batch_of(all, {0, 1, 2}, 2)).aux_loss.item<double>();
  EXPECT_NEAR(a2, 2 * a1, 1e-5);
}

// Serving ranks forward_unscored's session vectors against linear_scorer's table itself: for every variant of
// the head, that product is forward's scores, and the gates come out as they do from forward.
TEST(Llm4sbrHead, UnscoredSessionVectorsTimesTheScorerTableAreTheScores) {
  for (const bool without_sbr : {false, true}) {
    for (const std::vector<std::string>& views : {std::vector<std::string>{}, std::vector<std::string>{"long", "short"}}) {
      if (without_sbr && views.empty()) continue;
      auto o = options(views);
      o.without_sbr = without_sbr;
      enhance::Llm4sbrHeadImpl head(tiny_srgnn(), o, 3);
      head.eval();
      torch::NoGradGuard no_grad;
      const auto batch = batch_of(samples(), {0, 1, 2, 3}, static_cast<std::int64_t>(views.size()));
      const auto scored = head.forward(batch);
      const auto unscored = head.forward_unscored(batch);
      EXPECT_FALSE(unscored.scores.defined());
      const auto scorer = head.linear_scorer();
      ASSERT_TRUE(scorer.defined());
      EXPECT_EQ(scorer.weight.sizes(), (std::vector<std::int64_t>{kItems, kHidden}));
      EXPECT_TRUE(torch::allclose(unscored.session.mm(scorer.weight.t()), scored.scores, 1e-5, 1e-6))
          << "views " << views.size() << ", without_sbr " << without_sbr;
      EXPECT_EQ(unscored.gates.defined(), scored.gates.defined());
      if (scored.gates.defined()) EXPECT_TRUE(torch::equal(unscored.gates, scored.gates));
    }
  }
}

TEST(Llm4sbrHead, WithoutSbrScoresFromTheIntentsAlone) {
  auto o = options({"long", "short"});
  o.without_sbr = true;
  enhance::Llm4sbrHeadImpl head(tiny_srgnn(), o, 3);
  EXPECT_EQ(head.label(), "LLM-Infer");
  head.eval();
  const auto all = samples();
  auto a = batch_of(all, {0, 1}, 2);
  auto b = models::make_batch(all, std::vector<std::int64_t>{2, 3});  // other sessions, same intents
  b.intents = a.intents;
  EXPECT_TRUE(torch::allclose(head.forward(a).scores, head.forward(b).scores));
}

TEST(Llm4sbrHead, BadViewsAndMissingIntentsAreClearErrors) {
  Config cfg;
  EXPECT_THROW(enhance::HeadOptions::from_config(cfg, {"long", "normal"}, kTextDim), ConfigError);
  EXPECT_THROW(enhance::HeadOptions::from_config(cfg, {"medium"}, kTextDim), ConfigError);
  cfg.set("enhance.tau", "-1");
  EXPECT_THROW(enhance::HeadOptions::from_config(cfg, {"long"}, kTextDim), ConfigError);

  enhance::Llm4sbrHeadImpl head(tiny_srgnn(), options({"long", "short"}), 3);
  const auto all = samples();
  auto batch = models::make_batch(all, std::vector<std::int64_t>{0, 1});
  EXPECT_THROW(head.forward(batch), Error);                     // no intents
  batch.intents = torch::zeros({2, 1, kTextDim});
  EXPECT_THROW(head.forward(batch), Error);                     // one view instead of two
  EXPECT_EQ(head.label(), "LLM4SBR(SR-GNN)");
}

TEST(Llm4sbrHead, NaNScoresAreAnErrorNotPerfectRanks) {
  // A NaN compares false with everything: counted naively, every target would rank first.
  const auto scores = torch::full({2, 5}, std::nan(""));
  EXPECT_THROW(train::target_ranks(scores, torch::tensor({1, 3}, torch::kInt64)), std::domain_error);
}
