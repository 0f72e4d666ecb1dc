// GRU4Rec: config and shapes, a step-by-step recomputation of the GRU, finite-difference gradients,
// padding invariance and dropout only in training.
#include "llm4sbr/models/gru4rec.hpp"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/models/batch.hpp"
#include "models/model_testing.hpp"

namespace llm4sbr::models {
namespace {

using namespace llm4sbr::testing;  // samples_of, the matrices and the checks every backbone passes

Gru4RecOptions tiny_options(std::int64_t n_items, std::int64_t d, std::int64_t layers = 1, double dropout_embed = 0.0,
                            double dropout_hidden = 0.0) {
  Gru4RecOptions o;
  o.n_items = n_items;
  o.hidden_size = d;
  o.layers = layers;
  o.dropout_embed = dropout_embed;
  o.dropout_hidden = dropout_hidden;
  return o;
}

TEST(Gru4Rec, ReadsConfigAndRegistersByName) {
  ModelContext ctx;
  ctx.n_items = 20;
  ctx.hidden_size = 8;
  auto enc = make_encoder("gru4rec", ctx,
                          Config::parse("layers: 2\ndropout_embed: 0.1\ndropout_hidden: 0.3\n"
                                        "padded_dropout_masks: true\n"));
  auto* m = dynamic_cast<Gru4RecImpl*>(enc.get());
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->name(), "gru4rec");
  EXPECT_EQ(m->hidden_size(), 8);
  EXPECT_EQ(m->n_items(), 20);
  EXPECT_EQ(m->options().layers, 2);
  EXPECT_DOUBLE_EQ(m->options().dropout_embed, 0.1);
  EXPECT_DOUBLE_EQ(m->options().dropout_hidden, 0.3);
  EXPECT_TRUE(m->options().padded_dropout_masks);
  EXPECT_EQ(m->embedding->weight.sizes(), (std::vector<std::int64_t>{21, 8}));
  EXPECT_THROW(make_encoder("gru4rec", ctx, Config::parse("layers: 0\n")), ConfigError);
  EXPECT_EQ(m->item_bias.sizes(), (std::vector<std::int64_t>{20}));
  EXPECT_THROW(make_encoder("gru4rec", ctx, Config::parse("dropout_embed: 1.0\n")), ConfigError);
  EXPECT_THROW(make_encoder("gru4rec", ctx, Config::parse("dropout_hidden: -0.5\n")), ConfigError);
  ctx.n_items = 0;
  EXPECT_THROW(make_encoder("gru4rec", ctx, Config()), ConfigError);
}

// The official code's init_parameter_matrix: σ = √(6 / (rows + cols)) for the item table and
// √(6 / (rows + cols/3)) for the stacked gate matrices, zero biases.
TEST(Gru4Rec, InitialisesLikeTheOfficialCodeFromTheSeed) {
  Gru4RecImpl a(tiny_options(20, 8, 2), 7), b(tiny_options(20, 8, 2), 7), c(tiny_options(20, 8, 2), 8);
  const auto pb = b.named_parameters(), pc = c.named_parameters();
  bool any_differs = false;
  for (const auto& item : a.named_parameters()) {
    const auto& p = item.value();
    EXPECT_TRUE(torch::equal(p, pb[item.key()])) << item.key();
    any_differs = any_differs || !torch::equal(p, pc[item.key()]);
    if (p.dim() == 1) {
      EXPECT_TRUE(torch::equal(p, torch::zeros_like(p))) << item.key();
      continue;
    }
    const double cols = static_cast<double>(p.size(1)) / (item.key().starts_with("gru.") ? 3.0 : 1.0);
    const double sigma = std::sqrt(6.0 / (static_cast<double>(p.size(0)) + cols));
    EXPECT_LE(p.abs().max().item<double>(), sigma) << item.key();
    EXPECT_GT(p.abs().max().item<double>(), 0.5 * sigma) << item.key();
  }
  EXPECT_TRUE(any_differs);
  EXPECT_EQ(a.named_parameters().size(), 12u);  // embedding, 2 x 4 GRU tensors, item bias, W3 and b3
}

TEST(Gru4Rec, OutputShapes) {
  const std::int64_t n = 20, d = 8;
  Gru4RecImpl model(tiny_options(n, d, 2, 0.2, 0.3), 1);
  const auto batch = models::make_batch(samples_of({{3, 4, 3, 9}, {1}, {20, 7}}, {5, 2, 20}));
  expect_representation_shapes(model, batch);
  EXPECT_FALSE(model.encode(batch).aux_loss.defined());
}

TEST(Gru4Rec, HybridReadoutFusesBothAnchors) {
  auto own = tiny_options(20, 8);
  own.nonhybrid = true;
  Gru4RecImpl hybrid(tiny_options(20, 8), 1), nonhybrid(own, 1);
  expect_hybrid_readout(hybrid, hybrid.linear_transform, nonhybrid, false,
                        models::make_batch(samples_of({{3, 4, 3, 9}, {1}, {20, 7}}, {5, 2, 20})));
}

// h' = (1 − z) ñ + z h with r, z, ñ from PyTorch's GRU equations, click by click.
TEST(Gru4Rec, MatchesStepByStepRecomputation) {
  const std::int64_t n_items = 9, d = 4;
  auto own = tiny_options(n_items, d);
  own.nonhybrid = true;  // the official code's readout, the last state
  Gru4RecImpl model(own, 3);
  model.to(torch::kFloat64);
  model.eval();
  torch::NoGradGuard no_grad;
  for (auto& p : model.parameters())
    if (p.dim() == 1) p.uniform_(-0.5, 0.5);  // non-zero biases, so that they are exercised too
  auto params = model.gru->named_parameters();
  const auto w_ih = params["weight_ih_l0"], w_hh = params["weight_hh_l0"];
  const auto b_ih = params["bias_ih_l0"], b_hh = params["bias_hh_l0"];
  const auto& e = model.embedding->weight;

  const std::vector<std::int64_t> session = {5, 3, 5, 7};
  auto h = torch::zeros({d}, torch::kFloat64);
  auto sum = torch::zeros({d}, torch::kFloat64);
  for (auto item : session) {
    const auto gi = torch::mv(w_ih, e[item]) + b_ih;
    const auto gh = torch::mv(w_hh, h) + b_hh;
    const auto r = torch::sigmoid(gi.slice(0, 0, d) + gh.slice(0, 0, d));
    const auto z = torch::sigmoid(gi.slice(0, d, 2 * d) + gh.slice(0, d, 2 * d));
    const auto cand = torch::tanh(gi.slice(0, 2 * d) + r * gh.slice(0, 2 * d));
    h = (1 - z) * cand + z * h;
    sum = sum + h;
  }
  // Beside a longer session, so that this row is padded.
  const auto batch = models::make_batch(samples_of({session, {1, 2, 3, 4, 5, 6}}, {1, 2}));
  const SessionRepresentation rep = model.encode(batch);
  EXPECT_TRUE(torch::allclose(rep.local[0], h, 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(rep.global[0], sum / 4.0, 1e-12, 1e-12));
  const auto scores = model.score(model.readout(rep), rep);
  EXPECT_TRUE(torch::allclose(scores[0], torch::mv(e.slice(0, 1), h) + model.item_bias, 1e-12, 1e-12));
}

TEST(Gru4Rec, GradientsMatchFiniteDifferences) {
  Gru4RecImpl model(tiny_options(7, 4, 2), 11);  // two layers, dropout off
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model.parameters())
      if (p.dim() == 1) p.uniform_(-0.5, 0.5);  // non-zero biases
  }
  model.to(torch::kFloat64);
  const auto batch = models::make_batch(samples_of({{5, 3, 5, 7}, {2, 2, 6}, {4}}, {3, 7, 1}));
  expect_gradients_match(model, cross_entropy_of(model, batch));
}

// The packed encode against the padded computation it replaced (torch::nn::GRU on the padded, dropped-out
// embeddings, dropout on the padded outputs, masked mean and gathers), in training with both dropouts on and
// two layers: with padded_dropout_masks and the same seed, the same masks, so the same states to float
// rounding. By default the masks are drawn for the real clicks only: other values from the same seed.
TEST(Gru4Rec, PackedEncodeEqualsThePaddedComputation) {
  auto options = tiny_options(20, 8, 2, 0.3, 0.4);
  options.padded_dropout_masks = true;  // the masks the padded computation drew
  Gru4RecImpl model(options, 5);
  model.train();
  const auto samples = samples_of({{5, 3, 5, 7}, {2}, {1, 2, 3, 4, 5, 6}, {9, 9}}, {1, 2, 3, 4});
  const std::vector<std::int64_t> all = {0, 1, 2, 3};
  const auto batch = models::make_batch(samples, all, torch::kCPU, 9);  // 3 padding slots beyond the longest
  torch::manual_seed(17);
  const auto rep = model.encode(batch);

  torch::manual_seed(17);
  namespace F = torch::nn::functional;
  namespace rnn = torch::nn::utils::rnn;
  const auto input = F::dropout(model.embedding(batch.items), F::DropoutFuncOptions().p(0.3).training(true));
  const auto packed = rnn::pack_padded_sequence(input, batch.lengths_on_cpu(), true, false);
  const auto outputs = std::get<0>(rnn::pad_packed_sequence(std::get<0>(model.gru->forward_with_packed_input(packed)),
                                                            true, 0.0, batch.items.size(1)));
  const auto states = F::dropout(outputs, F::DropoutFuncOptions().p(0.4).training(true));
  const auto real = batch.mask.unsqueeze(-1).to(torch::kFloat32);
  const auto lengths = batch.lengths;
  const auto local = states.index({torch::arange(4), lengths - 1});
  const auto global = (states * real).sum(1) / lengths.to(torch::kFloat32).unsqueeze(1);
  const auto clicks = states.index({batch.mask});

  EXPECT_TRUE(torch::allclose(rep.local, local, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(rep.global, global, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(rep.clicks, clicks, 1e-5, 1e-6));
  EXPECT_TRUE(torch::equal(rep.click_sessions, torch::tensor({0, 0, 0, 0, 1, 2, 2, 2, 2, 2, 2, 3, 3}, torch::kLong)));
  EXPECT_GT((rep.clicks == 0).sum().item<std::int64_t>(), 0);  // dropout dropped something: the masks were compared

  options.padded_dropout_masks = false;
  Gru4RecImpl own_masks(options, 5);
  own_masks.train();
  torch::manual_seed(17);
  EXPECT_FALSE(torch::allclose(own_masks.encode(batch).clicks, clicks, 1e-5, 1e-6));
}

TEST(Gru4Rec, ScoresDoNotDependOnPadding) {
  Gru4RecImpl model(tiny_options(20, 8, 2, 0.25, 0.4), 5);
  model.eval();
  expect_scores_independent_of_batch(model, samples_of({{5, 3, 5, 7}, {1, 2, 3, 4, 5, 6, 6, 9}, {11}}, {1, 2, 3}));
}

TEST(Gru4Rec, DropoutOnlyInTraining) {
  Gru4RecImpl model(tiny_options(20, 8, 1, 0.5, 0.5), 5);
  torch::NoGradGuard no_grad;
  const auto batch = models::make_batch(samples_of({{5, 3, 5, 7}, {2}}, {1, 2}));
  EXPECT_FALSE(torch::equal(model.forward(batch), model.forward(batch)));
  model.eval();
  EXPECT_TRUE(torch::equal(model.forward(batch), model.forward(batch)));
}

}  // namespace
}  // namespace llm4sbr::models
