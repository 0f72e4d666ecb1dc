// SR-GNN and its session graph: the graph entry by entry, shapes, an independent recomputation of one
// forward pass, finite-difference gradients, padding invariance and checkpoint round-trips.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/core/error.hpp"
#include "llm4sbr/models/batch.hpp"
#include "llm4sbr/models/session_graph.hpp"
#include "llm4sbr/models/srgnn.hpp"
#include "models/model_testing.hpp"

namespace llm4sbr::models {
namespace {

using namespace llm4sbr::testing;  // samples_of, the matrices and the checks every backbone passes

SrGnnOptions tiny_options(std::int64_t n_items, std::int64_t d, std::int64_t step = 1, bool nonhybrid = false) {
  SrGnnOptions o;
  o.n_items = n_items;
  o.hidden_size = d;
  o.step = step;
  o.nonhybrid = nonhybrid;
  return o;
}

// ---------------------------------------------------------------------------------------------------
// (a) The session graph, checked entry by entry against a hand computation.

TEST(SessionGraph, MatchesHandComputedGraphs) {
  // Row 0: 5 -> 3 -> 5 -> 7 (a repeated item, no padding). Row 1: 2 -> 2 -> 6 (a self loop, padded).
  // Row 2: a single click. Row 3: 1 -> 2 -> 1 -> 2 (a repeated transition).
  const auto items = int_matrix({{5, 3, 5, 7}, {2, 2, 6, 0}, {9, 0, 0, 0}, {1, 2, 1, 2}});
  const SessionGraph g = build_session_graph(items);

  // Nodes: each session's distinct items in ascending order, packed; no padding node.
  EXPECT_TRUE(torch::equal(g.node_items, torch::tensor({3L, 5L, 7L, 2L, 6L, 9L, 1L, 2L})));
  EXPECT_TRUE(torch::equal(g.node_offsets, torch::tensor({0L, 3L, 5L, 6L, 8L})));
  EXPECT_TRUE(torch::equal(g.click_nodes, torch::tensor({1L, 0L, 1L, 2L, 3L, 3L, 4L, 5L, 6L, 7L, 6L, 7L})));
  EXPECT_TRUE(torch::equal(g.click_sessions, torch::tensor({0L, 0L, 0L, 0L, 1L, 1L, 1L, 2L, 3L, 3L, 3L, 3L})));
  EXPECT_TRUE(torch::equal(g.last_clicks, torch::tensor({3L, 6L, 7L, 11L})));
  ASSERT_EQ(g.in_weight.scalar_type(), torch::kFloat32);

  // Row 0, nodes (3, 5, 7): edges 5->3, 3->5, 5->7. outdeg(5) = 2; every in-degree is 1.
  const auto in0 = real_matrix({{0, 1, 0}, {1, 0, 0}, {0, 1, 0}});
  const auto out0 = real_matrix({{0, 1, 0}, {0.5, 0, 0.5}, {0, 0, 0}});
  // Row 1, nodes (2, 6): edges 2->2, 2->6; the clicks end at the first 0 (no 6->0 edge).
  const auto in1 = real_matrix({{1, 0}, {1, 0}});
  const auto out1 = real_matrix({{0.5, 0.5}, {0, 0}});
  // Row 2: no edges at all.
  const auto zero = torch::zeros({1, 1}, torch::kFloat64);
  // Row 3, nodes (1, 2): edges 1->2 (twice, counted once) and 2->1.
  const auto in3 = real_matrix({{0, 1}, {1, 0}});
  const auto out3 = real_matrix({{0, 1}, {1, 0}});

  const std::vector<torch::Tensor> want_in = {in0, in1, zero, in3};
  const std::vector<torch::Tensor> want_out = {out0, out1, zero, out3};
  for (std::int64_t b = 0; b < 4; ++b) {
    EXPECT_TRUE(torch::equal(g.dense_in(b).to(torch::kFloat64), want_in[static_cast<std::size_t>(b)])) << "A_in row " << b;
    EXPECT_TRUE(torch::equal(g.dense_out(b).to(torch::kFloat64), want_out[static_cast<std::size_t>(b)])) << "A_out row " << b;
  }

  // aggregate_in/out equal the reference's dense products, session by session.
  const auto x = torch::randn({8, 3}, torch::kFloat32);
  const auto agg_in = g.aggregate_in(x), agg_out = g.aggregate_out(x);
  for (std::int64_t b = 0; b < 4; ++b) {
    const auto lo = g.node_offsets[b].item<std::int64_t>(), hi = g.node_offsets[b + 1].item<std::int64_t>();
    EXPECT_TRUE(torch::allclose(agg_in.slice(0, lo, hi), torch::mm(g.dense_in(b), x.slice(0, lo, hi))));
    EXPECT_TRUE(torch::allclose(agg_out.slice(0, lo, hi), torch::mm(g.dense_out(b), x.slice(0, lo, hi))));
  }
}

// aggregate_both (its own loops on a CPU) equals the two composed aggregations side by side, values and gradients.
TEST(SessionGraph, AggregateBothEqualsBothAggregationsWithGradients) {
  const SessionGraph g = build_session_graph(int_matrix({{5, 3, 5, 7}, {2, 2, 6, 0}, {9, 0, 0, 0}, {1, 2, 1, 2}}),
                                             torch::kFloat64);
  torch::manual_seed(3);
  const auto x = torch::randn({8, 6}, torch::kFloat64), weights = torch::randn({8, 6}, torch::kFloat64);
  auto fused_x = x.clone().requires_grad_(), composed_x = x.clone().requires_grad_();
  const auto fused = g.aggregate_both(fused_x);
  const auto composed = torch::cat({g.aggregate_in(composed_x.narrow(1, 0, 3)), g.aggregate_out(composed_x.narrow(1, 3, 3))}, 1);
  EXPECT_TRUE(torch::allclose(fused, composed, 1e-12, 1e-12));
  (fused * weights).sum().backward();
  (composed * weights).sum().backward();
  EXPECT_TRUE(torch::allclose(fused_x.grad(), composed_x.grad(), 1e-12, 1e-12));
  EXPECT_GT(fused_x.grad().abs().sum().item<double>(), 0);
  EXPECT_THROW(g.aggregate_both(torch::randn({8, 5}, torch::kFloat64)), Error);  // odd width
  EXPECT_THROW(g.aggregate_both(torch::randn({7, 6}, torch::kFloat64)), Error);  // not the graph's 8 nodes
}

TEST(SessionGraph, WeightsFollowRequestedDtype) {
  const auto items = int_matrix({{5, 3, 5, 7}});
  const SessionGraph g = build_session_graph(items, torch::kFloat64);
  EXPECT_EQ(g.in_weight.scalar_type(), torch::kFloat64);
  EXPECT_EQ(g.out_weight.scalar_type(), torch::kFloat64);
  EXPECT_DOUBLE_EQ(g.dense_out(0)[1][0].item<double>(), 0.5);
}

TEST(SessionGraph, RejectsBadInput) {
  EXPECT_THROW(build_session_graph(torch::zeros({2, 3}, torch::kFloat32)), Error);
  EXPECT_THROW(build_session_graph(torch::zeros({3}, torch::kInt64)), Error);
  EXPECT_THROW(build_session_graph(int_matrix({{1, -2}})), Error);
  EXPECT_THROW(build_session_graph(int_matrix({{1, 2}}), torch::kInt64), Error);
  EXPECT_THROW(build_session_graph(int_matrix({{1, 2}, {0, 0}})), Error);  // a row without clicks
}

// ---------------------------------------------------------------------------------------------------
// (b) Construction, config and shapes.

TEST(SrGnn, ReadsConfigAndRegistersByName) {
  ModelContext ctx;
  ctx.n_items = 20;
  ctx.hidden_size = 8;
  auto enc = make_encoder("srgnn", ctx, Config::parse("step: 2\nnonhybrid: true\n"));
  auto* m = dynamic_cast<SrGnnImpl*>(enc.get());
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->name(), "srgnn");
  EXPECT_EQ(m->hidden_size(), 8);  // from the context: the key is absent
  EXPECT_EQ(m->n_items(), 20);
  EXPECT_EQ(m->options().step, 2);
  EXPECT_TRUE(m->options().nonhybrid);
  EXPECT_EQ(m->embedding->weight.sizes(), (std::vector<std::int64_t>{21, 8}));

  auto wide = make_encoder("srgnn", ctx, Config::parse("hidden_size: 12\n"));
  EXPECT_EQ(wide->hidden_size(), 12);
  EXPECT_THROW(make_encoder("srgnn", ctx, Config::parse("step: -1\n")), ConfigError);
  EXPECT_THROW(make_encoder("srgnn", ctx, Config::parse("step: two\n")), ConfigError);
  ctx.n_items = 0;
  EXPECT_THROW(make_encoder("srgnn", ctx, Config()), ConfigError);
}

TEST(SrGnn, InitialisesUniformlyFromTheSeed) {
  SrGnnImpl a(tiny_options(20, 8), 7), b(tiny_options(20, 8), 7), c(tiny_options(20, 8), 8);
  const double bound = 1.0 / std::sqrt(8.0);
  const auto pa = a.parameters(), pb = b.parameters(), pc = c.parameters();
  ASSERT_EQ(pa.size(), pb.size());
  bool any_differs = false;
  for (std::size_t i = 0; i < pa.size(); ++i) {
    EXPECT_TRUE(torch::equal(pa[i], pb[i]));
    EXPECT_LE(pa[i].abs().max().item<double>(), bound);
    any_differs = any_differs || !torch::equal(pa[i], pc[i]);
  }
  EXPECT_TRUE(any_differs);
}

TEST(SrGnn, OutputShapes) {
  const std::int64_t n = 20, d = 8;
  const auto samples = samples_of({{3, 4, 3, 9}, {1}, {20, 7}}, {5, 2, 20});
  const auto batch = models::make_batch(samples);
  for (bool nonhybrid : {false, true}) {
    SrGnnImpl model(tiny_options(n, d, 1, nonhybrid), 1);
    expect_representation_shapes(model, batch);
    EXPECT_FALSE(model.encode(batch).aux_loss.defined());
  }
}

TEST(SrGnn, HybridReadoutFusesBothAnchors) {
  SrGnnImpl hybrid(tiny_options(20, 8), 1), nonhybrid(tiny_options(20, 8, 1, true), 1);
  expect_hybrid_readout(hybrid, hybrid.linear_transform, nonhybrid, true,
                        models::make_batch(samples_of({{3, 4, 3, 9}, {1}, {20, 7}}, {5, 2, 20})));
}

// ---------------------------------------------------------------------------------------------------
// An independent recomputation of one forward pass, node by node, from the hand-made graph of
// [5, 3, 5, 7] (nodes 3, 5, 7), in double precision with two GNN steps.

TEST(SrGnn, MatchesNodeByNodeRecomputation) {
  const std::int64_t n_items = 9, d = 4;
  SrGnnImpl model(tiny_options(n_items, d, 2), 3);
  model.to(torch::kFloat64);
  torch::NoGradGuard no_grad;

  const std::vector<std::int64_t> node_items = {3, 5, 7};
  const std::vector<std::int64_t> alias = {1, 0, 1, 2};
  const auto a_in = real_matrix({{0, 1, 0}, {1, 0, 0}, {0, 1, 0}});
  const auto a_out = real_matrix({{0, 1, 0}, {0.5, 0, 0.5}, {0, 0, 0}});
  const auto& E = model.embedding->weight;
  const auto& g = *model.gnn;

  std::vector<torch::Tensor> h;
  for (auto item : node_items) h.push_back(E[item].clone());
  for (int step = 0; step < 2; ++step) {
    std::vector<torch::Tensor> next;
    for (std::int64_t i = 0; i < 3; ++i) {
      auto agg_in = g.b_iah.clone(), agg_out = g.b_oah.clone();
      for (std::int64_t j = 0; j < 3; ++j) {
        const auto msg_in = torch::mv(g.edge_in->weight, h[j]) + g.edge_in->bias;
        const auto msg_out = torch::mv(g.edge_out->weight, h[j]) + g.edge_out->bias;
        agg_in = agg_in + a_in[i][j] * msg_in;
        agg_out = agg_out + a_out[i][j] * msg_out;
      }
      const auto gi = torch::mv(g.w_ih, torch::cat({agg_in, agg_out})) + g.b_ih;
      const auto gh = torch::mv(g.w_hh, h[i]) + g.b_hh;
      const auto r = torch::sigmoid(gi.slice(0, 0, d) + gh.slice(0, 0, d));
      const auto z = torch::sigmoid(gi.slice(0, d, 2 * d) + gh.slice(0, d, 2 * d));
      const auto cand = torch::tanh(gi.slice(0, 2 * d) + r * gh.slice(0, 2 * d));
      next.push_back((1 - z) * cand + z * h[i]);
    }
    h = next;
  }
  const auto v_n = h[2];  // the last click, item 7
  auto s_g = torch::zeros({d}, torch::kFloat64);
  for (auto a : alias) {
    const auto& v_t = h[static_cast<std::size_t>(a)];
    const auto gate = torch::sigmoid(torch::mv(model.linear_one->weight, v_n) + model.linear_one->bias +
                                     torch::mv(model.linear_two->weight, v_t) + model.linear_two->bias);
    s_g = s_g + torch::dot(model.linear_three->weight[0], gate) * v_t;
  }
  const auto s_h = torch::mv(model.linear_transform->weight, torch::cat({s_g, v_n})) + model.linear_transform->bias;
  const auto want = torch::mv(E.slice(0, 1), s_h);

  const auto batch = models::make_batch(samples_of({{5, 3, 5, 7}}, {1}));
  const SessionRepresentation rep = model.encode(batch);
  EXPECT_TRUE(torch::allclose(rep.local[0], v_n, 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(rep.global[0], s_g, 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(rep.clicks[0], h[1], 1e-12, 1e-12));
  const auto scores = model.score(model.readout(rep), rep);
  EXPECT_TRUE(torch::allclose(scores[0], want, 1e-12, 1e-12)) << scores[0] << "\n" << want;
}

// ---------------------------------------------------------------------------------------------------
// (c) Finite-difference gradients of the whole model, in double precision.

void check_gradients(bool nonhybrid) {
  SrGnnImpl model(tiny_options(7, 4, 2, nonhybrid), 11);
  model.to(torch::kFloat64);
  const auto batch = models::make_batch(samples_of({{5, 3, 5, 7}, {2, 2, 6}, {4}}, {3, 7, 1}));
  GradCheck check;
  check.tolerance = 1e-4;
  if (nonhybrid) {
    check.label = "(nonhybrid)";
    check.skip = [](const std::string& name) { return name.starts_with("linear_transform"); };  // unused there
  }
  expect_gradients_match(model, cross_entropy_of(model, batch), check);
}

TEST(SrGnn, GradientsMatchFiniteDifferences) { check_gradients(false); }
TEST(SrGnn, GradientsMatchFiniteDifferencesNonhybrid) { check_gradients(true); }

// ---------------------------------------------------------------------------------------------------
// (d) Padding invariance: a session's scores do not depend on the padding its batch adds.

TEST(SrGnn, ScoresDoNotDependOnPadding) {
  SrGnnImpl model(tiny_options(20, 8, 2), 5);
  // Alone, a session fills its row; beside a longer one, or padded to 30, it is padded.
  expect_scores_independent_of_batch(model, samples_of({{5, 3, 5, 7}, {1, 2, 3, 4, 5, 6, 6, 9}, {11}}, {1, 2, 3}));
}

// ---------------------------------------------------------------------------------------------------
// (e) Checkpoints: save, load into a differently initialised model, same scores.

TEST(SrGnn, SaveAndLoadGiveIdenticalScores) {
  const auto batch = models::make_batch(samples_of({{5, 3, 5, 7}, {2, 2, 6}, {4}}, {3, 7, 1}));
  expect_checkpoint_round_trip(std::make_shared<SrGnnImpl>(tiny_options(20, 8, 1), 1),
                               std::make_shared<SrGnnImpl>(tiny_options(20, 8, 1), 2), batch);
}

}  // namespace
}  // namespace llm4sbr::models
