// TAGNN: config and shapes, the attention masks in both padding modes, a brute-force
// [B, N, d] recomputation of the reference's compute_scores, finite-difference gradients and padding
// invariance.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/models/batch.hpp"
#include "llm4sbr/models/tagnn.hpp"
#include "models/model_testing.hpp"

namespace llm4sbr::models {
namespace {

using namespace llm4sbr::testing;  // samples_of, the matrices and the checks every backbone passes

namespace F = torch::nn::functional;

TagnnOptions tiny_options(std::int64_t n_items, std::int64_t d, std::int64_t step = 1, bool faithful = false,
                          std::int64_t pad_length = 0) {
  TagnnOptions o;
  o.base.n_items = n_items;
  o.base.hidden_size = d;
  o.base.step = step;
  o.faithful_padding = faithful;
  o.pad_length = o.train_pad_length = o.eval_pad_length = pad_length;
  return o;
}

// ---------------------------------------------------------------------------------------------------
// Construction, config and shapes.

TEST(Tagnn, ReadsConfigAndRegistersByName) {
  ModelContext ctx;
  ctx.n_items = 20;
  ctx.hidden_size = 8;
  auto enc = make_encoder("tagnn", ctx, Config::parse("step: 2\n"));
  auto* m = dynamic_cast<TagnnImpl*>(enc.get());
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->name(), "tagnn");
  EXPECT_EQ(m->hidden_size(), 8);
  EXPECT_EQ(m->options().step, 2);
  EXPECT_FALSE(m->tagnn_options().faithful_padding);
  EXPECT_EQ(m->current_pad_length(), 0);
  EXPECT_EQ(m->linear_t->weight.sizes(), (std::vector<std::int64_t>{8, 8}));
  EXPECT_FALSE(m->linear_t->bias.defined());

  // faithful_padding needs a length: from the key, or from the dataset (train vs valid/test maxima).
  EXPECT_THROW(make_encoder("tagnn", ctx, Config::parse("faithful_padding: true\n")), ConfigError);
  EXPECT_THROW(make_encoder("tagnn", ctx, Config::parse("pad_length: -1\n")), ConfigError);
  auto fixed = make_encoder("tagnn", ctx, Config::parse("faithful_padding: true\npad_length: 9\n"));
  EXPECT_EQ(dynamic_cast<TagnnImpl*>(fixed.get())->current_pad_length(), 9);

  data::PreparedDataset ds;
  ds.train = samples_of({{1, 2, 3, 4, 5}, {1}}, {6, 2});
  ds.test = samples_of({{1, 2, 3}}, {4});
  ctx.dataset = &ds;
  auto derived = make_encoder("tagnn", ctx, Config::parse("faithful_padding: true\n"));
  auto* t = dynamic_cast<TagnnImpl*>(derived.get());
  EXPECT_EQ(t->tagnn_options().train_pad_length, 5);
  EXPECT_EQ(t->tagnn_options().eval_pad_length, 3);
  t->train();
  EXPECT_EQ(t->current_pad_length(), 5);
  t->eval();
  EXPECT_EQ(t->current_pad_length(), 3);
  // A session longer than the padded length is an error, not a silent truncation.
  torch::NoGradGuard no_grad;
  EXPECT_THROW(t->forward(models::make_batch(samples_of({{1, 2, 3, 4}}, {5}))), Error);
}

TEST(Tagnn, OutputShapes) {
  const std::int64_t n = 20, d = 8;
  const auto batch = models::make_batch(samples_of({{3, 4, 3, 9}, {1}, {20, 7}}, {5, 2, 20}));
  for (bool faithful : {false, true}) {
    TagnnImpl model(tiny_options(n, d, 1, faithful, 6), 1);
    expect_representation_shapes(model, batch);
  }
}

TEST(Tagnn, HybridReadoutFusesBothAnchors) {
  auto own = tiny_options(20, 8);
  own.base.nonhybrid = true;
  TagnnImpl hybrid(tiny_options(20, 8), 1), nonhybrid(own, 1);
  expect_hybrid_readout(hybrid, hybrid.linear_transform, nonhybrid, true,
                        models::make_batch(samples_of({{3, 4, 3, 9}, {1}, {20, 7}}, {5, 2, 20})));
}

// ---------------------------------------------------------------------------------------------------
// The attention masks. A session that clicks one item n times has one state v for every click, so
// s_g = (Σ_t α_t) v and the target term of item i is (Σ_t β_{i,t}) e_iᵀ v: the weights' sums are visible.

struct AttentionSums {
  torch::Tensor alpha;  // [d] s_g / v_n, every entry = Σ α
  torch::Tensor beta;   // [N] Σ_t β_{i,t}
  torch::Tensor beta_logit;  // [N] e_iᵀ W_t v
};

AttentionSums attention_sums(TagnnImpl& model, std::int64_t repeats) {
  torch::NoGradGuard no_grad;
  const auto batch = models::make_batch(samples_of({std::vector<std::int64_t>(static_cast<std::size_t>(repeats), 4)}, {1}));
  const auto rep = model.encode(batch);
  const auto s = model.readout(rep);
  const auto candidates = model.embedding->weight.slice(0, 1);
  const auto v = rep.local[0];
  const auto target_term = model.score(s, rep)[0] - torch::mv(candidates, s[0]);
  return {rep.global[0] / v, target_term / torch::mv(candidates, v), torch::mv(candidates, model.linear_t(v))};
}

TEST(Tagnn, MaskedAttentionWeightsSumToOne) {
  TagnnImpl model(tiny_options(9, 4), 2);
  model.to(torch::kFloat64);
  const auto sums = attention_sums(model, 3);
  EXPECT_TRUE(torch::allclose(sums.alpha, torch::ones_like(sums.alpha), 1e-12, 1e-12)) << sums.alpha;
  EXPECT_TRUE(torch::allclose(sums.beta, torch::ones_like(sums.beta), 1e-12, 1e-12)) << sums.beta;
}

TEST(Tagnn, FaithfulPaddingWeightsSumBelowOneAndDependOnPadLength) {
  const std::int64_t n = 3;
  TagnnImpl short_pad(tiny_options(9, 4, 1, true, 5), 2), long_pad(tiny_options(9, 4, 1, true, 12), 2);
  short_pad.to(torch::kFloat64);
  long_pad.to(torch::kFloat64);
  const auto a = attention_sums(short_pad, n), b = attention_sums(long_pad, n);
  const double alpha_short = a.alpha[0].item<double>(), alpha_long = b.alpha[0].item<double>();
  EXPECT_TRUE(torch::allclose(a.alpha, torch::full_like(a.alpha, alpha_short), 1e-10, 1e-12));
  EXPECT_LT(alpha_short, 1.0);
  EXPECT_GT(alpha_short, alpha_long);  // more padded positions, less weight on the real ones
  // β over the clicks: n e^x / (n e^x + (L − n) e^0), exactly, since padded h~ = 0 has logit 0.
  for (auto [sums, pad] : {std::pair{a, 5L}, std::pair{b, 12L}}) {
    const auto ex = torch::exp(sums.beta_logit);
    const auto want = n * ex / (n * ex + static_cast<double>(pad - n));
    EXPECT_TRUE(torch::allclose(sums.beta, want, 1e-10, 1e-12)) << sums.beta << "\n" << want;
  }
  // A session that fills the padded length has nothing padded: the weights sum to 1 again.
  TagnnImpl full(tiny_options(9, 4, 1, true, n), 2);
  full.to(torch::kFloat64);
  const auto f = attention_sums(full, n);
  EXPECT_TRUE(torch::allclose(f.alpha, torch::ones_like(f.alpha), 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(f.beta, torch::ones_like(f.beta), 1e-12, 1e-12));
}

// ---------------------------------------------------------------------------------------------------
// The reference's compute_scores on padded [B, L, d] tensors, forming the [B, N, L] and [B, N, d] tensors
// the port avoids: padded positions hold the state of the edgeless node "item 0"; faithful mode softmaxes
// over all L positions, the default masks them with −inf.

torch::Tensor brute_force_scores(TagnnImpl& model, const SessionBatch& batch, std::int64_t pad, bool faithful) {
  torch::NoGradGuard no_grad;
  const auto rep = model.encode(batch);
  const std::int64_t b = batch.size(), d = model.hidden_size();
  const auto& g = *model.gnn;
  // The padding node: a GRU step from E[0] with the aggregation biases only (no edges), `step` times.
  auto h0 = model.embedding->weight[0].clone();
  for (std::int64_t s = 0; s < g.step(); ++s) {
    const auto gi = torch::mv(g.w_ih, torch::cat({g.b_iah, g.b_oah})) + g.b_ih;
    const auto gh = torch::mv(g.w_hh, h0) + g.b_hh;
    const auto r = torch::sigmoid(gi.slice(0, 0, d) + gh.slice(0, 0, d));
    const auto z = torch::sigmoid(gi.slice(0, d, 2 * d) + gh.slice(0, d, 2 * d));
    const auto c = torch::tanh(gi.slice(0, 2 * d) + r * gh.slice(0, 2 * d));
    h0 = (1 - z) * c + z * h0;
  }
  auto hidden = h0.expand({b, pad, d}).clone();
  auto mask = torch::zeros({b, pad}, torch::kFloat64);
  const auto lengths = batch.lengths;
  std::int64_t p = 0;
  for (std::int64_t i = 0; i < b; ++i)
    for (std::int64_t t = 0; t < lengths[i].item<std::int64_t>(); ++t, ++p) {
      hidden[i][t] = rep.clicks[p];
      mask[i][t] = 1;
    }
  const auto masked_fill = [&](const torch::Tensor& logits, const torch::Tensor& m) {
    return faithful ? logits : logits.masked_fill(m.eq(0), -INFINITY);
  };
  const auto ht = rep.local;
  const auto q = model.linear_three(torch::sigmoid(model.linear_one(ht).unsqueeze(1) + model.linear_two(hidden)));  // [B, L, 1]
  const auto alpha = torch::softmax(masked_fill(q.squeeze(-1), mask), 1).unsqueeze(-1);
  const auto s_g = (alpha * hidden * mask.unsqueeze(-1)).sum(1);
  const auto s_h = model.linear_transform(torch::cat({s_g, ht}, 1));  // [B, d]
  const auto e = model.embedding->weight.slice(0, 1);                  // [N, d]
  const auto h_masked = hidden * mask.unsqueeze(-1);
  const auto qt = model.linear_t(h_masked);                                           // [B, L, d]
  const auto logits = torch::matmul(e.unsqueeze(0), qt.transpose(1, 2));              // [B, N, L]
  const auto beta = torch::softmax(masked_fill(logits, mask.unsqueeze(1)), -1);
  const auto target = torch::matmul(beta, h_masked);                                   // [B, N, d]
  return ((s_h.unsqueeze(1) + target) * e.unsqueeze(0)).sum(-1);                      // [B, N]
}

TEST(Tagnn, ScoresMatchBruteForceReferenceComputation) {
  const auto samples = samples_of({{5, 3, 5, 7}, {2, 2, 6}, {4}, {1, 8, 1, 8, 9, 9}}, {1, 2, 3, 4});
  const auto batch = models::make_batch(samples);
  for (bool faithful : {false, true}) {
    const std::int64_t pad = 9;
    TagnnImpl model(tiny_options(9, 4, 2, faithful, pad), 3);
    model.to(torch::kFloat64);
    torch::NoGradGuard no_grad;
    const auto got = model.forward(batch);
    const auto want = brute_force_scores(model, batch, pad, faithful);
    EXPECT_TRUE(torch::allclose(got, want, 1e-10, 1e-12)) << (faithful ? "faithful" : "masked") << "\n"
                                                          << (got - want).abs().max();
  }
}

// ---------------------------------------------------------------------------------------------------
// Finite-difference gradients of the whole model, in double precision.

void check_gradients(bool faithful) {
  TagnnImpl model(tiny_options(7, 4, 2, faithful, 6), 11);
  model.to(torch::kFloat64);
  const auto batch = models::make_batch(samples_of({{5, 3, 5, 7}, {2, 2, 6}, {4}}, {3, 7, 1}));
  GradCheck check;
  check.tolerance = 1e-4;
  check.label = faithful ? "(faithful)" : "";
  expect_gradients_match(model, cross_entropy_of(model, batch), check);
  // Only faithful padding reads E[0] (the padding node's state); otherwise row 0 gets no gradient.
  const double row0 = model.embedding->weight.grad()[0].abs().sum().item<double>();
  if (faithful) EXPECT_GT(row0, 0.0); else EXPECT_EQ(row0, 0.0);
}

TEST(Tagnn, GradientsMatchFiniteDifferences) { check_gradients(false); }
TEST(Tagnn, GradientsMatchFiniteDifferencesFaithfulPadding) { check_gradients(true); }

// ---------------------------------------------------------------------------------------------------
// Padding invariance: by default a session's scores depend neither on its batch nor on any padding;
// with faithful_padding they depend on the padded length but still not on the batch.

TEST(Tagnn, ScoresDoNotDependOnPaddingByDefault) {
  const auto samples = samples_of({{5, 3, 5, 7}, {1, 2, 3, 4, 5, 6, 6, 9}, {11}}, {1, 2, 3});
  TagnnImpl model(tiny_options(20, 8, 2), 5);
  expect_scores_independent_of_batch(model, samples);

  TagnnImpl short_pad(tiny_options(20, 8, 2, true, 10), 5), long_pad(tiny_options(20, 8, 2, true, 30), 5);
  torch::NoGradGuard no_grad;
  const std::vector<std::int64_t> alone = {0}, together = {1, 0, 2};
  const auto a = short_pad.forward(models::make_batch(samples, alone));
  const auto b = short_pad.forward(models::make_batch(samples, together));
  EXPECT_TRUE(torch::allclose(a[0], b[1], 1e-5, 1e-6)) << (a[0] - b[1]).abs().max();
  const auto c = long_pad.forward(models::make_batch(samples, alone));
  EXPECT_FALSE(torch::allclose(a[0], c[0], 1e-5, 1e-6));
}

// ---------------------------------------------------------------------------------------------------
// Checkpoints: save, load into a differently initialised model, same scores (linear_t included).

TEST(Tagnn, SaveAndLoadGiveIdenticalScores) {
  const auto batch = models::make_batch(samples_of({{5, 3, 5, 7}, {2, 2, 6}, {4}}, {3, 7, 1}));
  expect_checkpoint_round_trip(std::make_shared<TagnnImpl>(tiny_options(20, 8), 1),
                               std::make_shared<TagnnImpl>(tiny_options(20, 8), 2), batch);
}

}  // namespace
}  // namespace llm4sbr::models
