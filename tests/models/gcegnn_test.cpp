// GCE-GNN: the global item graph and its sampled table entry by entry, the relation codes of the
// session graph, config and shapes, a dense recomputation of the reference's forward pass (reversed
// sequence, −9e15 masks, explicit hop tree), finite-difference gradients and padding invariance.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <functional>
#include <utility>
#include <vector>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/models/batch.hpp"
#include "llm4sbr/models/gcegnn.hpp"
#include "models/model_testing.hpp"

namespace llm4sbr::models {
namespace {

using namespace llm4sbr::testing;  // samples_of, the matrices and the checks every backbone passes

namespace F = torch::nn::functional;
using Neighbours = std::vector<std::pair<std::int64_t, std::int64_t>>;

// Three hand-made training sessions (item 7 never occurs).
const std::vector<std::vector<std::int64_t>> kSessions = {{1, 2, 3, 4, 5}, {2, 1, 2}, {6}};

GceGnnOptions tiny_options(std::int64_t n_items, std::int64_t d, std::int64_t n_iter, std::int64_t n_sample) {
  GceGnnOptions o;
  o.n_items = n_items;
  o.hidden_size = d;
  o.n_iter = n_iter;
  o.n_sample = n_sample;
  o.max_positions = 10;
  return o;
}

// A model over items 1..9 whose table comes from a few sessions; items 8 and 9 have no neighbours.
GceGnnOptions tiny_model_options(std::int64_t n_iter, double dropout, bool nonhybrid = false) {
  auto o = tiny_options(9, 4, n_iter, 3);
  o.dropout_local = o.dropout_global = o.dropout_gcn = dropout;
  o.nonhybrid = nonhybrid;
  return o;
}
NeighbourTable tiny_table(std::uint64_t seed) {
  const std::vector<std::vector<std::int64_t>> sessions = {{1, 2, 3, 4, 5, 6, 7}, {2, 1, 2, 5}, {3, 3, 7, 6}, {4, 1}};
  return sample_neighbour_table(build_global_graph(sessions, 9, 3, 3), 3, seed);
}
GceGnnImpl tiny_model(std::int64_t n_iter, std::uint64_t seed, double dropout = 0.0, bool nonhybrid = false) {
  return GceGnnImpl(tiny_model_options(n_iter, dropout, nonhybrid), tiny_table(seed), seed);
}

// ---------------------------------------------------------------------------------------------------
// (a) The global graph.

TEST(GceGnnGlobalGraph, MatchesHandCountedPairs) {
  // Pairs within 3 clicks, both directions: session 1 gives 1-2, 2-3, 3-4, 4-5 (k = 1), 1-3, 2-4, 3-5 (k = 2),
  // 1-4, 2-5 (k = 3). Session 2 gives 2-1 twice more (k = 1) and the self pair 2-2 (k = 2), counted in
  // both directions. Session 3 has no pair. Ties keep the order of first occurrence.
  const auto g = build_global_graph(kSessions, 7, 3, 12);
  ASSERT_EQ(g.neighbours.size(), 8u);
  EXPECT_TRUE(g.neighbours[0].empty());
  EXPECT_EQ(g.neighbours[1], (Neighbours{{2, 3}, {3, 1}, {4, 1}}));
  EXPECT_EQ(g.neighbours[2], (Neighbours{{1, 3}, {2, 2}, {3, 1}, {4, 1}, {5, 1}}));
  EXPECT_EQ(g.neighbours[3], (Neighbours{{2, 1}, {4, 1}, {1, 1}, {5, 1}}));
  EXPECT_EQ(g.neighbours[4], (Neighbours{{3, 1}, {5, 1}, {2, 1}, {1, 1}}));
  EXPECT_EQ(g.neighbours[5], (Neighbours{{4, 1}, {3, 1}, {2, 1}}));
  EXPECT_TRUE(g.neighbours[6].empty());
  EXPECT_TRUE(g.neighbours[7].empty());

  // Top-k keeps the heaviest; epsilon narrows the window.
  const auto top3 = build_global_graph(kSessions, 7, 3, 3);
  EXPECT_EQ(top3.neighbours[2], (Neighbours{{1, 3}, {2, 2}, {3, 1}}));
  EXPECT_EQ(top3.neighbours[3], (Neighbours{{2, 1}, {4, 1}, {1, 1}}));
  const auto adjacent = build_global_graph(kSessions, 7, 1, 12);
  EXPECT_EQ(adjacent.neighbours[2], (Neighbours{{1, 3}, {3, 1}}));  // no self pair at distance 1

  EXPECT_THROW(build_global_graph({{1, 8}}, 7), Error);
}

TEST(GceGnnGlobalGraph, NeighbourTableIsSampledOnceFromTheSeed) {
  const auto g = build_global_graph(kSessions, 7, 3, 4);
  const auto t = sample_neighbour_table(g, 4, 2020);
  ASSERT_EQ(t.items.sizes(), (std::vector<std::int64_t>{8, 4}));
  ASSERT_EQ(t.weights.scalar_type(), torch::kFloat64);
  for (std::int64_t i = 0; i < 8; ++i) {
    const auto& nb = g.neighbours[static_cast<std::size_t>(i)];
    std::vector<std::int64_t> row;
    for (std::int64_t k = 0; k < 4; ++k) {
      const auto item = t.items[i][k].item<std::int64_t>();
      const auto weight = t.weights[i][k].item<double>();
      row.push_back(item);
      if (nb.empty()) {  // item 0, and items without neighbours: (0, 0)
        EXPECT_EQ(item, 0);
        EXPECT_EQ(weight, 0.0);
        continue;
      }
      auto it = std::find_if(nb.begin(), nb.end(), [&](const auto& p) { return p.first == item; });
      ASSERT_NE(it, nb.end()) << "item " << i << " got a non-neighbour " << item;
      EXPECT_EQ(weight, static_cast<double>(it->second));
    }
    if (nb.size() >= 4) {  // without replacement: a permutation of the top 4
      std::vector<std::int64_t> want;
      for (const auto& p : nb) want.push_back(p.first);
      std::sort(row.begin(), row.end());
      std::sort(want.begin(), want.end());
      EXPECT_EQ(row, want) << "item " << i;
    }
  }
  EXPECT_TRUE(torch::equal(t.items, sample_neighbour_table(g, 4, 2020).items));
  bool any_differs = false;
  for (std::uint64_t seed = 1; seed < 6; ++seed) any_differs |= !torch::equal(t.items, sample_neighbour_table(g, 4, seed).items);
  EXPECT_TRUE(any_differs);
}

TEST(GceGnnGlobalGraph, NeverUsesValidOrTestSessions) {
  // Item 5 occurs only in the valid session, item 6 only in the test session.
  data::PreparedDataset ds;
  for (std::int64_t i = 1; i <= 6; ++i) ds.items.push_back({i, std::to_string(i), ""});
  ds.sessions = {{"a", {1, 2, 3}, 0}, {"b", {2, 3, 4}, 0}, {"c", {3, 5, 1}, 0}, {"d", {4, 6, 2}, 0}};
  ds.train = {{0, 0, {1, 2}, 3}, {1, 0, {1}, 2}, {2, 1, {2, 3}, 4}, {3, 1, {2}, 3}};
  ds.valid = {{0, 2, {3, 5}, 1}};
  ds.test = {{0, 3, {4, 6}, 2}};
  EXPECT_EQ(training_sessions(ds), (std::vector<std::vector<std::int64_t>>{{1, 2, 3}, {2, 3, 4}}));

  ModelContext ctx;
  ctx.n_items = 6;
  ctx.hidden_size = 4;
  ctx.seed = 3;
  ctx.dataset = &ds;
  auto enc = make_encoder("gcegnn", ctx, Config());
  const auto& table = dynamic_cast<GceGnnImpl&>(*enc).neighbour_table();
  EXPECT_EQ(table.items.sizes(), (std::vector<std::int64_t>{7, 12}));
  EXPECT_TRUE(table.items[5].eq(0).all().item<bool>());
  EXPECT_TRUE(table.items[6].eq(0).all().item<bool>());
  EXPECT_FALSE(table.items.eq(5).any().item<bool>());
  EXPECT_FALSE(table.items.eq(6).any().item<bool>());
  EXPECT_FALSE(table.items[4].eq(0).any().item<bool>());  // a training item has neighbours
  // The model runs on a test session holding the test-only item.
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::isfinite(enc->forward(models::make_batch(ds.test))).all().item<bool>());
}

// ---------------------------------------------------------------------------------------------------
// (b) The relation graph.

TEST(GceGnnRelationGraph, MatchesHandComputedCodes) {
  // Row 0: 5 3 5 7, reversed 7 5 3 5; nodes (3, 5, 7). 7 -> 5: (7,5) = 2, (5,7) = 3; 5 -> 3: (5,3) = 2,
  //   (3,5) = 3; 3 -> 5: (5,3) is 2, so both become 4. Row "7" has code 2 towards "5": 5 came before 7.
  // Row 1: 1 2 3, reversed 3 2 1: (3,2) = 2, (2,3) = 3, (2,1) = 2, (1,2) = 3.
  // Row 2: 2 2 6, reversed 6 2 2: (6,2) = 2, (2,6) = 3; the repeat 2 -> 2 adds nothing but the self code.
  // Row 3: a single click. Row 4: 7 5 7 5, reversed 5 7 5 7: 5 -> 7 then 7 -> 5 makes both 4.
  const auto items = int_matrix({{5, 3, 5, 7}, {1, 2, 3, 0}, {2, 2, 6, 0}, {9, 0, 0, 0}, {7, 5, 7, 5}});
  const RelationGraph g = build_relation_graph(items);
  EXPECT_TRUE(torch::equal(g.node_items, torch::tensor({3L, 5L, 7L, 1L, 2L, 3L, 2L, 6L, 9L, 5L, 7L})));
  EXPECT_TRUE(torch::equal(g.node_offsets, torch::tensor({0L, 3L, 6L, 8L, 9L, 11L})));
  EXPECT_TRUE(torch::equal(g.node_sessions, torch::tensor({0L, 0L, 0L, 1L, 1L, 1L, 2L, 2L, 3L, 4L, 4L})));
  EXPECT_TRUE(torch::equal(g.click_nodes, torch::tensor({1L, 0L, 1L, 2L, 3L, 4L, 5L, 6L, 6L, 7L, 8L, 10L, 9L, 10L, 9L})));
  EXPECT_TRUE(torch::equal(g.click_positions, torch::tensor({3L, 2L, 1L, 0L, 2L, 1L, 0L, 2L, 1L, 0L, 0L, 3L, 2L, 1L, 0L})));
  EXPECT_TRUE(torch::equal(g.click_sessions, torch::tensor({0L, 0L, 0L, 0L, 1L, 1L, 1L, 2L, 2L, 2L, 3L, 4L, 4L, 4L, 4L})));
  EXPECT_TRUE(torch::equal(g.last_clicks, torch::tensor({3L, 6L, 9L, 10L, 14L})));
  EXPECT_TRUE(torch::equal(g.dense_codes(0), int_matrix({{1, 4, 0}, {4, 1, 3}, {0, 2, 1}})));
  EXPECT_TRUE(torch::equal(g.dense_codes(1), int_matrix({{1, 3, 0}, {2, 1, 3}, {0, 2, 1}})));
  EXPECT_TRUE(torch::equal(g.dense_codes(2), int_matrix({{1, 3}, {2, 1}})));
  EXPECT_TRUE(torch::equal(g.dense_codes(3), int_matrix({{1}})));
  EXPECT_TRUE(torch::equal(g.dense_codes(4), int_matrix({{1, 4}, {4, 1}})));

  // A longer row keeps its last max_positions clicks: 5 3 5 7 -> 3 5 7.
  const RelationGraph cut = build_relation_graph(int_matrix({{5, 3, 5, 7}}), 3);
  EXPECT_TRUE(torch::equal(cut.click_positions, torch::tensor({2L, 1L, 0L})));
  EXPECT_TRUE(torch::equal(cut.dense_codes(0), int_matrix({{1, 3, 0}, {2, 1, 3}, {0, 2, 1}})));

  EXPECT_THROW(build_relation_graph(int_matrix({{1, 2}, {0, 0}})), Error);
  EXPECT_THROW(build_relation_graph(int_matrix({{1, -2}})), Error);
  EXPECT_THROW(build_relation_graph(torch::zeros({2, 2}, torch::kFloat32)), Error);
}

// ---------------------------------------------------------------------------------------------------
// (c) Config and shapes.

TEST(GceGnn, ReadsConfigAndRegistersByName) {
  data::PreparedDataset ds;
  ds.sessions = {{"a", {1, 2, 3}, 0}};
  ds.train = {{0, 0, {1, 2}, 3}};
  ModelContext ctx;
  ctx.n_items = 20;
  ctx.hidden_size = 8;
  EXPECT_THROW(make_encoder("gcegnn", ctx, Config()), ConfigError);  // no training data for the global graph
  ctx.dataset = &ds;
  auto enc = make_encoder("gcegnn", ctx, Config::parse("n_iter: 2\nn_sample: 5\ndropout_gcn: 0.2\nactivation: tanh\n"));
  auto* m = dynamic_cast<GceGnnImpl*>(enc.get());
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->name(), "gcegnn");
  EXPECT_EQ(m->hidden_size(), 8);
  EXPECT_EQ(m->options().n_iter, 2);
  EXPECT_EQ(m->options().n_sample, 5);
  EXPECT_DOUBLE_EQ(m->options().dropout_gcn, 0.2);
  EXPECT_DOUBLE_EQ(m->options().dropout_global, 0.5);
  EXPECT_EQ(m->global_aggregators->size(), 2u);
  EXPECT_EQ(m->neighbour_table().items.sizes(), (std::vector<std::int64_t>{21, 5}));
  EXPECT_EQ(m->pos_embedding->weight.sizes(), (std::vector<std::int64_t>{200, 8}));
  for (const char* bad : {"n_iter: 0\n", "dropout_global: 1.0\n", "activation: gelu\n", "n_sample: 0\n", "epsilon: x\n"})
    EXPECT_THROW(make_encoder("gcegnn", ctx, Config::parse(bad)), ConfigError) << bad;
}

TEST(GceGnn, OutputShapes) {
  const auto batch = models::make_batch(samples_of({{3, 4, 3, 9}, {1}, {8, 7}}, {5, 2, 9}));
  for (std::int64_t n_iter : {1, 2}) {
    GceGnnImpl model = tiny_model(n_iter, 1, 0.3);
    expect_representation_shapes(model, batch);
    const SessionRepresentation rep = model.encode(batch);
    EXPECT_TRUE(torch::equal(rep.local[0], rep.clicks[3]));  // x_0 = the last click's state
    EXPECT_FALSE(rep.aux_loss.defined());
    // Dropout acts in training only.
    model.eval();
    torch::NoGradGuard no_grad;
    EXPECT_TRUE(torch::equal(model.forward(batch), model.forward(batch)));
  }
}

TEST(GceGnn, HybridReadoutFusesBothAnchors) {
  GceGnnImpl hybrid = tiny_model(1, 1), nonhybrid = tiny_model(1, 1, 0.0, true);
  expect_hybrid_readout(hybrid, hybrid.linear_transform, nonhybrid, true,
                        models::make_batch(samples_of({{3, 4, 3, 9}, {1}, {8, 7}}, {5, 2, 9})));
}

// ---------------------------------------------------------------------------------------------------
// (d) The reference's forward pass for one session, written the way the reference computes it: the
// sequence reversed, dense relation matrices with −9e15 masks, the hop tree walked item by item.

torch::Tensor reference_scores(GceGnnImpl& model, const std::vector<std::int64_t>& prefix, torch::Tensor* last_state) {
  torch::NoGradGuard no_grad;
  const auto& E = model.embedding->weight;
  const auto& table = model.neighbour_table();
  const std::int64_t d = model.hidden_size(), hops = model.options().n_iter;
  std::vector<std::int64_t> rev(prefix.rbegin(), prefix.rend());
  std::vector<std::int64_t> nodes = rev;
  std::sort(nodes.begin(), nodes.end());
  nodes.erase(std::unique(nodes.begin(), nodes.end()), nodes.end());
  const auto n = static_cast<std::int64_t>(nodes.size());
  const auto codes = build_relation_graph(torch::tensor(prefix, torch::kInt64).unsqueeze(0)).dense_codes(0);

  // Session level.
  std::vector<torch::Tensor> h_local;
  for (std::int64_t i = 0; i < n; ++i) {
    auto e = torch::full({n}, -9e15, torch::kFloat64);
    for (std::int64_t j = 0; j < n; ++j) {
      const auto code = codes[i][j].item<std::int64_t>();
      if (code == 0) continue;
      const auto a = model.local_attention[code - 1];
      e[j] = F::leaky_relu(torch::dot(a, E[nodes[i]] * E[nodes[j]]), F::LeakyReLUFuncOptions().negative_slope(0.2));
    }
    const auto alpha = torch::softmax(e, 0);
    auto out = torch::zeros({d}, torch::kFloat64);
    for (std::int64_t j = 0; j < n; ++j) out = out + alpha[j] * E[nodes[j]];
    h_local.push_back(out);
  }
  // Global level: s = mean of the clicks' embeddings; level(item, depth) = item's vector after `round` rounds.
  auto s = torch::zeros({d}, torch::kFloat64);
  for (auto item : prefix) s = s + E[item];
  s = s / static_cast<double>(prefix.size());
  const auto aggregate = [&](std::int64_t round, const torch::Tensor& self, const std::vector<torch::Tensor>& nbrs,
                             const std::vector<double>& weights) {
    auto& agg = model.global_aggregators->at<GlobalAggregatorImpl>(static_cast<std::size_t>(round));
    auto logits = torch::zeros({static_cast<std::int64_t>(nbrs.size())}, torch::kFloat64);
    for (std::size_t k = 0; k < nbrs.size(); ++k) {
      const auto hidden = torch::mv(agg.w_1.t(), torch::cat({s * nbrs[k], torch::full({1}, weights[k], torch::kFloat64)}));
      logits[static_cast<std::int64_t>(k)] = torch::dot(agg.w_2.squeeze(1), F::leaky_relu(hidden, F::LeakyReLUFuncOptions().negative_slope(0.2)));
    }
    const auto pi = torch::softmax(logits, 0);
    auto h_n = torch::zeros({d}, torch::kFloat64);
    for (std::size_t k = 0; k < nbrs.size(); ++k) h_n = h_n + pi[static_cast<std::int64_t>(k)] * nbrs[k];
    return torch::relu(torch::mv(agg.w_3.t(), torch::cat({self, h_n})));
  };
  // vector of `item` at tree depth `depth` after `rounds` rounds (a round updates depths 0..hops-round-1).
  std::function<torch::Tensor(std::int64_t, std::int64_t, std::int64_t)> vector_of = [&](std::int64_t item, std::int64_t depth,
                                                                                          std::int64_t rounds) {
    if (rounds == 0) return E[item].clone();
    std::vector<torch::Tensor> nbrs;
    std::vector<double> weights;
    for (std::int64_t k = 0; k < model.options().n_sample; ++k) {
      nbrs.push_back(vector_of(table.items[item][k].item<std::int64_t>(), depth + 1, rounds - 1));
      weights.push_back(table.weights[item][k].item<double>());
    }
    return aggregate(rounds - 1, vector_of(item, depth, rounds - 1), nbrs, weights);
  };
  // Combination and the reversed-position readout.
  std::vector<torch::Tensor> x;
  for (auto item : rev) {
    const auto i = std::lower_bound(nodes.begin(), nodes.end(), item) - nodes.begin();
    x.push_back(h_local[static_cast<std::size_t>(i)] + vector_of(item, 0, hops));
  }
  *last_state = x[0];
  auto hs = torch::zeros({d}, torch::kFloat64);
  for (const auto& v : x) hs = hs + v;
  hs = hs / static_cast<double>(x.size());
  auto select = torch::zeros({d}, torch::kFloat64);
  for (std::size_t t = 0; t < x.size(); ++t) {
    const auto z = torch::tanh(torch::mv(model.w_1.t(), torch::cat({model.pos_embedding->weight[static_cast<std::int64_t>(t)], x[t]})));
    const auto nh = torch::sigmoid(model.glu1(z) + model.glu2(hs));
    select = select + torch::dot(nh, model.w_2.squeeze(1)) * x[t];
  }
  return torch::mv(E.slice(0, 1), select);
}

TEST(GceGnn, MatchesDenseReferenceComputation) {
  const std::vector<std::vector<std::int64_t>> prefixes = {{5, 3, 5, 7}, {2, 2, 6}, {8}, {1, 8, 1, 9, 4}};
  const auto batch = models::make_batch(samples_of(prefixes, {1, 2, 3, 4}));
  for (std::int64_t n_iter : {1, 2}) {
    GceGnnImpl model = tiny_model(n_iter, 4, 0.5, true);  // dropouts set, but eval mode turns them off
    model.to(torch::kFloat64);
    model.eval();
    torch::NoGradGuard no_grad;
    const auto rep = model.encode(batch);
    const auto got = model.score(model.readout(rep), rep);
    for (std::size_t b = 0; b < prefixes.size(); ++b) {
      torch::Tensor last;
      const auto want = reference_scores(model, prefixes[b], &last);
      const auto row = static_cast<std::int64_t>(b);
      EXPECT_TRUE(torch::allclose(got[row], want, 1e-10, 1e-12)) << "n_iter " << n_iter << " session " << b << "\n"
                                                                 << got[row] << "\n" << want;
      EXPECT_TRUE(torch::allclose(rep.local[row], last, 1e-10, 1e-12)) << "x_0 of session " << b;
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// (e) Finite-difference gradients (double, dropouts off, training mode).

TEST(GceGnn, GradientsMatchFiniteDifferences) {
  GceGnnImpl model = tiny_model(2, 11);
  model.to(torch::kFloat64);
  model.train();
  // Together the sessions use all four relation codes (7 5 7 5 gives code 4).
  const auto batch = models::make_batch(samples_of({{5, 3, 5, 7}, {2, 2, 6}, {4}, {7, 5, 7, 5}}, {3, 7, 1, 2}));
  GradCheck check;
  check.tolerance = 1e-4;
  expect_gradients_match(model, cross_entropy_of(model, batch), check);
}

// ---------------------------------------------------------------------------------------------------
// (f) Padding invariance: a session's scores depend neither on its batch nor on padding.

TEST(GceGnn, ScoresDoNotDependOnPadding) {
  GceGnnImpl model = tiny_model(2, 5, 0.5);
  model.eval();
  expect_scores_independent_of_batch(model, samples_of({{5, 3, 5, 7}, {1, 2, 3, 4, 5, 6, 6, 9}, {8}}, {1, 2, 3}));
}

// ---------------------------------------------------------------------------------------------------
// (g) Checkpoints: the parameters round-trip; the neighbour table is rebuilt from the data and the seed.

TEST(GceGnn, SaveAndLoadGiveIdenticalScores) {
  const auto batch = models::make_batch(samples_of({{5, 3, 5, 7}, {2, 2, 6}, {4}}, {3, 7, 1}));
  expect_checkpoint_round_trip(std::make_shared<GceGnnImpl>(tiny_model_options(2, 0.5), tiny_table(1), 1),
                               std::make_shared<GceGnnImpl>(tiny_model_options(2, 0.5), tiny_table(1), 2), batch);
}

}  // namespace
}  // namespace llm4sbr::models
