// SASRec: config and shapes, initialisation, a position-by-position recomputation of one block,
// truncation to max_length, finite-difference gradients, and padding invariance.
#include "llm4sbr/models/sasrec.hpp"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/models/batch.hpp"
#include "llm4sbr/train/experiment.hpp"
#include "models/model_testing.hpp"

namespace llm4sbr::models {
namespace {

using namespace llm4sbr::testing;  // samples_of, the matrices and the checks every backbone passes

SasRecOptions tiny_options(std::int64_t n_items, std::int64_t d, std::int64_t blocks = 2, std::int64_t heads = 1,
                           double dropout = 0.0, std::int64_t max_length = 6) {
  SasRecOptions o;
  o.n_items = n_items;
  o.hidden_size = d;
  o.blocks = blocks;
  o.heads = heads;
  o.dropout = dropout;
  o.max_length = max_length;
  return o;
}

TEST(SasRec, ReadsConfigAndRegistersByName) {
  ModelContext ctx;
  ctx.n_items = 20;
  ctx.hidden_size = 8;
  auto enc = make_encoder("sasrec", ctx,
                          Config::parse("max_length: 10\nblocks: 3\nheads: 2\ndropout: 0.2\n"
                                        "padded_dropout_masks: true\n"));
  auto* m = dynamic_cast<SasRecImpl*>(enc.get());
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->name(), "sasrec");
  EXPECT_EQ(m->hidden_size(), 8);
  EXPECT_EQ(m->n_items(), 20);
  EXPECT_EQ(m->options().max_length, 10);
  EXPECT_EQ(m->options().blocks, 3);
  EXPECT_EQ(m->blocks->size(), 3u);
  EXPECT_EQ(m->options().heads, 2);
  EXPECT_DOUBLE_EQ(m->options().dropout, 0.2);
  EXPECT_TRUE(m->options().padded_dropout_masks);
  EXPECT_EQ(m->embedding->weight.sizes(), (std::vector<std::int64_t>{21, 8}));
  EXPECT_EQ(m->pos_embedding->weight.sizes(), (std::vector<std::int64_t>{10, 8}));
  EXPECT_THROW(make_encoder("sasrec", ctx, Config::parse("heads: 3\n")), ConfigError);  // 8 % 3 != 0
  EXPECT_THROW(make_encoder("sasrec", ctx, Config::parse("max_length: 0\n")), ConfigError);
  EXPECT_THROW(make_encoder("sasrec", ctx, Config::parse("dropout: -0.1\n")), ConfigError);
  ctx.n_items = 0;
  EXPECT_THROW(make_encoder("sasrec", ctx, Config()), ConfigError);
}

TEST(SasRec, InitialisesLikeTheAuthorsCodeFromTheSeed) {
  SasRecImpl a(tiny_options(20, 8), 7), b(tiny_options(20, 8), 7);
  const auto pa = a.named_parameters(), pb = b.named_parameters();
  for (const auto& item : pa) {
    const auto& p = item.value();
    EXPECT_TRUE(torch::equal(p, pb[item.key()])) << item.key();
    if (p.dim() == 2) {
      EXPECT_LE(p.abs().max().item<double>(), std::sqrt(6.0 / static_cast<double>(p.size(0) + p.size(1))));
      EXPECT_GT(p.abs().max().item<double>(), 0.0);
    } else if (item.key().find("norm") != std::string::npos && item.key().ends_with("weight")) {
      EXPECT_TRUE(torch::equal(p, torch::ones_like(p))) << item.key();
    } else {
      EXPECT_TRUE(torch::equal(p, torch::zeros_like(p))) << item.key();
    }
  }
  SasRecImpl c(tiny_options(20, 8), 8);
  EXPECT_FALSE(torch::equal(a.embedding->weight, c.embedding->weight));
}

// configs/ml-1m.yaml carries the authors' ML-1M settings over configs/models/sasrec.yaml; Beauty keeps the
// sparse-data defaults.
TEST(SasRec, DatasetConfigsOverrideTheModelDefaults) {
  const auto settings = [](const char* dataset) {
    Config cfg = Config::load(std::filesystem::path(LLM4SBR_SOURCE_DIR) / "configs" / dataset);
    cfg.set("paths.configs", std::string(LLM4SBR_SOURCE_DIR) + "/configs");
    cfg.set("model", "sasrec");
    return train::model_settings(cfg);
  };
  const Config ml1m = settings("ml-1m.yaml"), beauty = settings("beauty.yaml");
  EXPECT_DOUBLE_EQ(ml1m.get<double>("dropout", 0), 0.2);
  EXPECT_EQ(ml1m.get<std::int64_t>("max_length", 0), 200);
  EXPECT_EQ(ml1m.get<std::int64_t>("blocks", 0), 2);  // from configs/models/sasrec.yaml
  EXPECT_DOUBLE_EQ(beauty.get<double>("dropout", 0), 0.5);
  EXPECT_EQ(beauty.get<std::int64_t>("max_length", 0), 50);
}

TEST(SasRec, OutputShapes) {
  const std::int64_t n = 20, d = 8;
  SasRecImpl model(tiny_options(n, d, 2, 2, 0.2), 1);
  const auto batch = models::make_batch(samples_of({{3, 4, 3, 9}, {1}, {20, 7}}, {5, 2, 20}));
  expect_representation_shapes(model, batch);
  EXPECT_FALSE(model.encode(batch).aux_loss.defined());
}

TEST(SasRec, HybridReadoutFusesBothAnchors) {
  auto own = tiny_options(20, 8);
  own.nonhybrid = true;
  SasRecImpl hybrid(tiny_options(20, 8), 1), nonhybrid(own, 1);
  expect_hybrid_readout(hybrid, hybrid.linear_transform, nonhybrid, false,
                        models::make_batch(samples_of({{3, 4, 3, 9}, {1}, {20, 7}}, {5, 2, 20})));
}

// One block, two heads, recomputed position by position for a 3-click session with max_length 6:
// the positions are 3, 4, 5 (right-aligned as in the authors' left-padded window).
TEST(SasRec, MatchesPositionByPositionRecomputation) {
  const std::int64_t n_items = 9, d = 4, heads = 2, dh = 2, max_length = 6;
  auto own = tiny_options(n_items, d, 1, heads, 0.0, max_length);
  own.nonhybrid = true;  // the paper's readout, the last position's output
  SasRecImpl model(own, 3);
  model.to(torch::kFloat64);
  model.eval();
  torch::NoGradGuard no_grad;
  // Non-trivial norms and biases, so that they are exercised too.
  for (const auto& item : model.named_parameters())
    if (item.value().dim() == 1) item.value().uniform_(-0.5, 1.5);

  const std::vector<std::int64_t> session = {5, 3, 7};
  const auto n = static_cast<std::int64_t>(session.size());
  auto ln = [](const torch::nn::LayerNorm& norm, const torch::Tensor& v) {
    const auto mu = v.mean();
    const auto var = (v - mu).pow(2).mean();
    return (v - mu) / torch::sqrt(var + 1e-8) * norm->weight + norm->bias;
  };
  auto lin = [](const torch::nn::Linear& l, const torch::Tensor& v) { return torch::mv(l->weight, v) + l->bias; };
  auto& block = *model.blocks->ptr<SasRecBlockImpl>(0);

  std::vector<torch::Tensor> x;
  for (std::int64_t t = 0; t < n; ++t)
    x.push_back(model.embedding->weight[session[static_cast<std::size_t>(t)]] * 2.0 +  // √d = 2
                model.pos_embedding->weight[max_length - n + t]);
  std::vector<torch::Tensor> out;
  for (std::int64_t t = 0; t < n; ++t) {
    const auto q_in = ln(block.attention_norm, x[static_cast<std::size_t>(t)]);
    const auto q = lin(block.query, q_in);
    auto attended = torch::zeros({d}, torch::kFloat64);
    for (std::int64_t h = 0; h < heads; ++h) {
      const auto qh = q.slice(0, h * dh, (h + 1) * dh);
      std::vector<double> logits;
      for (std::int64_t s = 0; s <= t; ++s)
        logits.push_back(torch::dot(qh, lin(block.key, x[static_cast<std::size_t>(s)]).slice(0, h * dh, (h + 1) * dh))
                             .item<double>() /
                         std::sqrt(static_cast<double>(dh)));
      double z = 0;
      for (double l : logits) z += std::exp(l);
      for (std::int64_t s = 0; s <= t; ++s) {
        const auto vh = lin(block.value, x[static_cast<std::size_t>(s)]).slice(0, h * dh, (h + 1) * dh);
        attended.slice(0, h * dh, (h + 1) * dh).add_(std::exp(logits[static_cast<std::size_t>(s)]) / z * vh);
      }
    }
    const auto hdn = ln(block.ffn_norm, q_in + attended);
    const auto y = hdn + lin(block.ffn_out, torch::relu(lin(block.ffn_in, hdn)));
    out.push_back(ln(model.final_norm, y));
  }

  // Beside a longer session, so that this row is padded.
  const auto batch = models::make_batch(samples_of({session, {1, 2, 3, 4, 5}}, {1, 2}));
  const SessionRepresentation rep = model.encode(batch);
  EXPECT_TRUE(torch::allclose(rep.local[0], out[2], 1e-12, 1e-12)) << rep.local[0] << "\n" << out[2];
  EXPECT_TRUE(torch::allclose(rep.global[0], (out[0] + out[1] + out[2]) / 3.0, 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(rep.clicks[1], out[1], 1e-12, 1e-12));
  const auto scores = model.score(model.readout(rep), rep);
  EXPECT_TRUE(torch::allclose(scores[0], torch::mv(model.embedding->weight.slice(0, 1), out[2]), 1e-12, 1e-12));
}

TEST(SasRec, KeepsTheLastMaxLengthClicks) {
  SasRecImpl model(tiny_options(20, 8, 2, 1, 0.0, 4), 5);
  model.eval();
  torch::NoGradGuard no_grad;
  const auto samples = samples_of({{1, 2, 3, 4, 5, 6, 7}, {4, 5, 6, 7}, {9, 9, 9, 5, 6, 7}}, {1, 1, 1});
  const std::vector<std::int64_t> all = {0, 1, 2};
  const SessionRepresentation rep = model.encode(models::make_batch(samples, all));
  EXPECT_TRUE(torch::allclose(rep.local[0], rep.local[1], 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(rep.global[0], rep.global[1], 1e-5, 1e-6));
  EXPECT_FALSE(torch::allclose(rep.local[1], rep.local[2], 1e-5, 1e-6));  // 9 is kept there
  EXPECT_EQ(rep.clicks.size(0), 12);                                      // 4 kept clicks per session
}

TEST(SasRec, GradientsMatchFiniteDifferences) {
  SasRecImpl model(tiny_options(7, 4, 2, 2, 0.0, 4), 11);  // dropout off; a 5-click prefix is cut to 4
  model.to(torch::kFloat64);
  const auto batch = models::make_batch(samples_of({{5, 3, 5, 7}, {2, 2, 6}, {4}, {1, 2, 3, 4, 5}}, {3, 7, 1, 6}));
  // A key bias adds q·b_K to every logit of a query alike, which the softmax cancels: its gradient is
  // exactly zero (in the authors' code too).
  GradCheck check;
  check.skip = [](const std::string& name) { return name.ends_with("key.bias"); };
  expect_gradients_match(model, cross_entropy_of(model, batch), check);
  for (const auto& item : model.named_parameters())
    if (check.skip(item.key())) EXPECT_LT(item.value().grad().abs().max().item<double>(), 1e-12) << item.key();
}

TEST(SasRec, ScoresDoNotDependOnPadding) {
  SasRecImpl model(tiny_options(20, 8, 2, 2, 0.2, 50), 5);
  model.eval();
  expect_scores_independent_of_batch(model, samples_of({{5, 3, 5, 7}, {1, 2, 3, 4, 5, 6, 6, 9}, {11}}, {1, 2, 3}));
}

TEST(SasRec, DropoutOnlyInTraining) {
  SasRecImpl model(tiny_options(20, 8, 2, 1, 0.5), 5);
  torch::NoGradGuard no_grad;
  const auto batch = models::make_batch(samples_of({{5, 3, 5, 7}, {2}}, {1, 2}));
  EXPECT_FALSE(torch::equal(model.forward(batch), model.forward(batch)));
  model.eval();
  EXPECT_TRUE(torch::equal(model.forward(batch), model.forward(batch)));
}

}  // namespace
}  // namespace llm4sbr::models
