// S²-DHCN: the hypergraph entry by entry (with items of degree zero), the convolved item table, a
// recomputation of the session readout, the line-graph channel and SSL loss, finite-difference
// gradients with and without SSL, and scores that do not depend on the rest of the batch.
#include "llm4sbr/models/dhcn.hpp"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/models/batch.hpp"
#include "models/model_testing.hpp"

namespace llm4sbr::models {
namespace {

using namespace llm4sbr::testing;  // samples_of, the matrices and the checks every backbone passes

DhcnOptions tiny_options(std::int64_t n_items, std::int64_t d, double beta = 0.01, std::int64_t layers = 3) {
  DhcnOptions o;
  o.n_items = n_items;
  o.hidden_size = d;
  o.layers = layers;
  o.beta = beta;
  o.max_positions = 6;
  return o;
}

// Training prefixes over 5 items: item 4 is only ever a target and item 5 never occurs, so both have
// degree 0. Hyperedges: e0 = {1,2} (from 1,2,1), e1 = {2,3}, e2 = {3}, e3 = {1,2,3}.
const std::vector<std::vector<std::int64_t>> kPrefixes = {{1, 2, 1}, {2, 3}, {3}, {1, 2, 3}};
const std::vector<std::int64_t> kTargets = {4, 4, 2, 4};

// ---------------------------------------------------------------------------------------------------
// (a) The hypergraph, entry by entry.

TEST(DhcnHypergraph, MatchesHandComputedIncidenceAndNormalisation) {
  const Hypergraph g = build_hypergraph(samples_of(kPrefixes, kTargets), 5);

  const auto h = real_matrix({{1, 0, 0, 1}, {1, 1, 0, 1}, {0, 1, 1, 1}, {0, 0, 0, 0}, {0, 0, 0, 0}});
  EXPECT_TRUE(torch::equal(g.incidence.to_dense(), h)) << g.incidence.to_dense();
  EXPECT_TRUE(torch::equal(g.degrees, torch::tensor({2L, 3L, 3L, 0L, 0L})));
  EXPECT_TRUE(torch::equal(g.edge_sizes, torch::tensor({2L, 2L, 1L, 3L})));

  // A[i][j] = (1/deg_i) Σ_{e ∋ i,j} 1/|e|, e.g. A[2][3] = (1/2 + 1 + 1/3) / 3 = 11/18.
  const auto want = real_matrix({{5.0 / 12, 5.0 / 12, 1.0 / 6, 0, 0},
                                 {5.0 / 18, 4.0 / 9, 5.0 / 18, 0, 0},
                                 {1.0 / 9, 5.0 / 18, 11.0 / 18, 0, 0},
                                 {0, 0, 0, 0, 0},
                                 {0, 0, 0, 0, 0}});
  const auto a = g.adjacency.to_dense();
  EXPECT_TRUE(torch::allclose(a, want, 0, 1e-15)) << a;
  EXPECT_TRUE(torch::allclose(g.adjacency_t.to_dense(), want.t(), 0, 1e-15));
  EXPECT_TRUE(g.adjacency.is_coalesced());
  EXPECT_EQ(g.adjacency._nnz(), 9);  // nothing stored for the isolated items
  EXPECT_TRUE(torch::isfinite(a).all().item<bool>());

  // The same as D⁻¹ H B⁻¹ Hᵀ with the zero degrees guarded.
  const auto deg = g.degrees.to(torch::kFloat64);
  const auto d_inv = torch::where(deg > 0, 1.0 / deg, torch::zeros_like(deg));
  const auto b_inv = 1.0 / g.edge_sizes.to(torch::kFloat64);
  EXPECT_TRUE(torch::allclose(a, d_inv.unsqueeze(1) * h.mm(torch::diag(b_inv)).mm(h.t()), 0, 1e-15));
  // Row-stochastic on the items that have a hyperedge.
  EXPECT_TRUE(torch::allclose(a.sum(1), torch::tensor({1.0, 1.0, 1.0, 0.0, 0.0}, torch::kFloat64), 0, 1e-15));
}

TEST(DhcnHypergraph, PrunesSmallEntriesWithoutRenormalising) {
  const Hypergraph g = build_hypergraph(samples_of(kPrefixes, kTargets), 5, 0.2);
  const auto a = g.adjacency.to_dense();
  EXPECT_EQ(g.adjacency._nnz(), 7);  // 1/6 and 1/9 go
  EXPECT_DOUBLE_EQ(a[0][2].item<double>(), 0.0);
  EXPECT_DOUBLE_EQ(a[2][0].item<double>(), 0.0);
  EXPECT_DOUBLE_EQ(a[0][0].item<double>(), 5.0 / 12);
  EXPECT_DOUBLE_EQ(a[2][2].item<double>(), 11.0 / 18);
}

TEST(DhcnHypergraph, RejectsIdsOutsideTheCatalogue) {
  EXPECT_THROW(build_hypergraph(samples_of({{1, 6}}, {2}), 5), InputError);
  EXPECT_THROW(build_hypergraph(samples_of({{0, 1}}, {2}), 5), InputError);
  EXPECT_THROW(build_hypergraph(samples_of({{1}}, {2}), 0), Error);
}

// The chains of nested prefixes: session 0's prefixes 1 | 1 2 | 1 2 1 | 1 2 1 3 form one chain, session 1's
// 2 | 2 4 another; 3 1 and 1 3 share session 2 but do not nest, so they start a chain each.
TEST(DhcnHypergraph, PrefixChainsApplyTheUnnormalisedAdjacency) {
  std::vector<data::Sample> samples = {{0, 0, {1, 2, 1}, 3}, {1, 1, {2, 4}, 1}, {2, 0, {1}, 2},       {3, 2, {3, 1}, 2},
                                       {4, 0, {1, 2}, 1},    {5, 2, {1, 3}, 4}, {6, 0, {1, 2, 1, 3}, 5}, {7, 1, {2}, 4}};
  const Hypergraph g = build_hypergraph(samples, 5);
  const PrefixChains& c = g.chains;
  EXPECT_TRUE(torch::equal(c.chain_offsets, torch::tensor({0L, 4L, 6L, 7L, 8L})));
  // Edges in chain order: {1} {1,2} {1,2} {1,2,3} | {2} {2,4} | {1,3} | {1,3} (sorted by length, stable).
  EXPECT_TRUE(torch::allclose(c.edge_weights, torch::tensor({1.0, 0.5, 0.5, 1.0 / 3, 1.0, 0.5, 0.5, 0.5}, torch::kFloat64)));
  EXPECT_TRUE(torch::equal(c.first_offsets, torch::tensor({0L, 1L, 2L, 2L, 3L, 4L, 5L, 7L, 9L})));
  EXPECT_TRUE(torch::equal(c.first_items, torch::tensor({0L, 1L, 2L, 1L, 3L, 2L, 0L, 0L, 2L})));

  // S x = H B⁻¹ Hᵀ x, and D⁻¹ S = A.
  const auto h = g.incidence.to_dense();
  const auto s_dense = h.mm(torch::diag(1.0 / g.edge_sizes.to(torch::kFloat64))).mm(h.t());
  const auto x = torch::randn({5, 7}, torch::kFloat64);
  EXPECT_TRUE(torch::allclose(c.multiply(x), s_dense.mm(x), 1e-12, 1e-12));
  const auto deg = g.degrees.to(torch::kFloat64);
  EXPECT_TRUE(torch::allclose(g.adjacency.to_dense() * deg.unsqueeze(1), s_dense, 1e-12, 1e-12));
  // Threads split the columns: the same bits with one thread or two.
  const int threads = at::get_num_threads();
  const auto xf = torch::randn({5, 40});
  at::set_num_threads(1);
  const auto one = c.to(torch::kFloat32).multiply(xf);
  at::set_num_threads(2);
  const auto two = c.to(torch::kFloat32).multiply(xf);
  at::set_num_threads(threads);
  EXPECT_TRUE(torch::equal(one, two));
  EXPECT_TRUE(torch::allclose(one, s_dense.to(torch::kFloat32).mm(xf), 1e-5, 1e-6));
  // Pruned entries break A = D⁻¹ S: no chains then, and the model multiplies by the explicit A.
  EXPECT_FALSE(build_hypergraph(samples, 5, 0.2).chains.chain_offsets.defined());
}

// The register kernel (float32, AVX-512, up to 128 columns a thread) against the plain loop and S x in float64,
// on chains of random sessions: every vector count 1..8 with and without a masked last vector, and widths past
// 128 that fall back to the loop. Both kernels make the same float32 additions in the same order, so their
// results are equal by construction (on a CPU without AVX-512 both are the loop).
TEST(DhcnHypergraph, ChainKernelsGiveTheSameValues) {
  std::vector<data::Sample> samples;
  std::mt19937 rng(7);
  std::uniform_int_distribution<std::int64_t> item(1, 60), length(2, 12);
  for (std::int64_t session = 0, id = 0; session < 150; ++session) {
    std::vector<std::int64_t> clicks(static_cast<std::size_t>(length(rng)));
    for (auto& c : clicks) c = item(rng);
    for (std::size_t n = 1; n < clicks.size(); ++n)
      samples.push_back({id++, session, {clicks.begin(), clicks.begin() + static_cast<std::ptrdiff_t>(n)}, clicks[n]});
  }
  const Hypergraph g = build_hypergraph(samples, 60);
  const auto h = g.incidence.to_dense();
  const auto s_dense = h.mm(torch::diag(1.0 / g.edge_sizes.to(torch::kFloat64))).mm(h.t());
  const auto chains = g.chains.to(torch::kFloat32);
  const int threads = at::get_num_threads();
  at::set_num_threads(1);  // one thread takes every column: w = the width below
  for (std::int64_t width : {1, 15, 16, 17, 40, 100, 127, 128, 129, 200}) {
    SCOPED_TRACE(width);
    const auto x = torch::randn({60, width});
    const auto fast = chains.multiply(x, PrefixChains::Kernel::automatic);
    EXPECT_TRUE(torch::equal(fast, chains.multiply(x, PrefixChains::Kernel::portable)));
    EXPECT_TRUE(torch::allclose(fast.to(torch::kFloat64), s_dense.mm(x.to(torch::kFloat64)), 1e-5, 1e-5));
  }
  at::set_num_threads(threads);
}

// SparseRows (the pruned and non-CPU path) is the plain row-by-row loop, bit for bit.
TEST(DhcnHypergraph, SparseProductEqualsThePlainLoopExactly) {
  for (auto dtype : {torch::kFloat32, torch::kFloat64}) {
    const auto dense_a = torch::rand({50, 40}, torch::kFloat64) * torch::rand({50, 40}).lt(0.2);
    const auto x = torch::randn({40, 37}, torch::kFloat64).to(dtype);
    const auto rows = SparseRows::from_coo(dense_a.to_sparse().coalesce(), x);
    auto want = torch::zeros({50, 37}, x.options());
    const auto a = dense_a.to(dtype);
    for (std::int64_t r = 0; r < 50; ++r)
      for (std::int64_t c = 0; c < 40; ++c)
        if (a[r][c].item<double>() != 0) want[r] += a[r][c] * x[c];  // entries in column order, like CSR
    EXPECT_TRUE(torch::equal(rows.matmul(x), want)) << dtype;
  }
}

// ---------------------------------------------------------------------------------------------------
// (b) Construction: from the training split only, config keys.

data::PreparedDataset tiny_dataset() {
  data::PreparedDataset ds;
  ds.name = "tiny";
  for (std::int64_t k = 1; k <= 5; ++k) ds.items.push_back({k, "i" + std::to_string(k), ""});
  ds.train = samples_of(kPrefixes, kTargets);
  ds.valid = samples_of({{4, 5}}, {1});
  ds.test = samples_of({{4, 5, 1}, {5}}, {2, 4});
  return ds;
}

TEST(Dhcn, BuildsItsHypergraphFromTheTrainingSplitOnly) {
  const auto ds = tiny_dataset();
  ModelContext ctx;
  ctx.n_items = ds.n_items();
  ctx.hidden_size = 4;
  ctx.dataset = &ds;
  auto enc = make_encoder("dhcn", ctx, Config::parse("layers: 2\nbeta: 0.02\nposition_embedding: false\n"));
  auto* m = dynamic_cast<DhcnImpl*>(enc.get());
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->name(), "dhcn");
  EXPECT_EQ(m->hidden_size(), 4);
  EXPECT_EQ(m->n_items(), 5);
  EXPECT_EQ(m->options().layers, 2);
  EXPECT_DOUBLE_EQ(m->options().beta, 0.02);
  EXPECT_FALSE(m->options().position_embedding);
  // Items 4 and 5 occur in the validation and test prefixes, but only training prefixes are hyperedges.
  EXPECT_TRUE(torch::equal(m->hypergraph().degrees, torch::tensor({2L, 3L, 3L, 0L, 0L})));
  EXPECT_EQ(m->embedding->weight.sizes(), (std::vector<std::int64_t>{5, 4}));  // no padding row

  EXPECT_THROW(make_encoder("dhcn", ctx, Config::parse("layers: -1\n")), ConfigError);
  EXPECT_THROW(make_encoder("dhcn", ctx, Config::parse("beta: -0.1\n")), ConfigError);
  EXPECT_THROW(make_encoder("dhcn", ctx, Config::parse("max_positions: 0\n")), ConfigError);
  EXPECT_THROW(make_encoder("dhcn", ctx, Config::parse("prune_below: 2\n")), ConfigError);
  ctx.dataset = nullptr;
  EXPECT_THROW(make_encoder("dhcn", ctx, Config()), ConfigError);
}

TEST(Dhcn, InitialisesUniformlyFromTheSeed) {
  auto graph = [] { return build_hypergraph(samples_of(kPrefixes, kTargets), 5); };
  DhcnImpl a(tiny_options(5, 8), graph(), 7), b(tiny_options(5, 8), graph(), 7), c(tiny_options(5, 8), graph(), 8);
  const auto pa = a.parameters(), pb = b.parameters(), pc = c.parameters();
  bool any_differs = false;
  for (std::size_t i = 0; i < pa.size(); ++i) {
    EXPECT_TRUE(torch::equal(pa[i], pb[i]));
    EXPECT_LE(pa[i].abs().max().item<double>(), 1.0 / std::sqrt(8.0));
    any_differs = any_differs || !torch::equal(pa[i], pc[i]);
  }
  EXPECT_TRUE(any_differs);
}

// ---------------------------------------------------------------------------------------------------
// (c) The forward pass against dense recomputations, in double precision.

TEST(Dhcn, ItemStatesAverageTheConvolutionLayers) {
  DhcnImpl model(tiny_options(5, 4), build_hypergraph(samples_of(kPrefixes, kTargets), 5), 3);
  model.to(torch::kFloat64);
  torch::NoGradGuard no_grad;
  const auto e = model.embedding->weight;
  const auto a = model.hypergraph().adjacency.to_dense();
  const auto want = (e + a.mm(e) + a.mm(a.mm(e)) + a.mm(a.mm(a.mm(e)))) / 4.0;
  const auto x_h = model.item_states();
  EXPECT_TRUE(torch::allclose(x_h, want, 1e-12, 1e-12));
  // An item in no training prefix keeps only its layer-0 share.
  EXPECT_TRUE(torch::allclose(x_h[3], e[3] / 4.0, 1e-12, 1e-12));

  // With pruned entries, through the explicit (pruned) A.
  auto pruned_options = tiny_options(5, 4);
  pruned_options.prune_below = 0.2;
  DhcnImpl pruned(pruned_options, build_hypergraph(samples_of(kPrefixes, kTargets), 5, 0.2), 3);
  pruned.to(torch::kFloat64);
  const auto ap = pruned.hypergraph().adjacency.to_dense();
  const auto ep = pruned.embedding->weight;
  EXPECT_TRUE(torch::allclose(pruned.item_states(), (ep + ap.mm(ep) + ap.mm(ap.mm(ep)) + ap.mm(ap.mm(ap.mm(ep)))) / 4.0,
                              1e-12, 1e-12));
}

TEST(Dhcn, MatchesClickByClickRecomputation) {
  const std::int64_t d = 4;
  auto own = tiny_options(5, d);
  own.nonhybrid = true;  // the reference's readout, θ_h alone
  DhcnImpl model(own, build_hypergraph(samples_of(kPrefixes, kTargets), 5), 5);
  model.to(torch::kFloat64);
  model.eval();
  torch::NoGradGuard no_grad;

  // Session 3, 1, 3, 2 (7 clicks would exceed max_positions = 6; see the next test for that).
  const std::vector<std::int64_t> session = {3, 1, 3, 2};
  const auto x_h = model.item_states();
  const auto n = static_cast<std::int64_t>(session.size());
  auto mean = torch::zeros({d}, torch::kFloat64);
  for (auto i : session) mean = mean + x_h[i - 1] / static_cast<double>(n);
  auto theta = torch::zeros({d}, torch::kFloat64);
  for (std::int64_t t = 0; t < n; ++t) {
    const auto x = x_h[session[static_cast<std::size_t>(t)] - 1];
    const auto p = model.pos_embedding->weight[n - 1 - t];  // reversed position: the last click is 0
    const auto z = torch::tanh(torch::mv(model.w_1->weight, torch::cat({p, x})) + model.w_1->bias);
    const auto gate =
        torch::sigmoid(torch::mv(model.glu1->weight, z) + model.glu1->bias + torch::mv(model.glu2->weight, mean));
    theta = theta + torch::dot(model.w_2.squeeze(1), gate) * x;
  }

  const auto batch = models::make_batch(samples_of({session}, {1}));
  const SessionRepresentation rep = model.encode(batch);
  EXPECT_TRUE(torch::allclose(rep.global[0], theta, 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(rep.local[0], x_h[1], 1e-12, 1e-12));  // the last click, item 2
  EXPECT_TRUE(torch::allclose(rep.clicks[2], x_h[2], 1e-12, 1e-12));
  EXPECT_TRUE(torch::equal(model.readout(rep), rep.global));
  const auto scores = model.score(model.readout(rep), rep);
  EXPECT_TRUE(torch::allclose(scores[0], torch::mv(x_h, theta), 1e-12, 1e-12));
}

TEST(Dhcn, EvaluationReusesTheItemStatesUntilTheEmbeddingChanges) {
  DhcnImpl model(tiny_options(5, 4), build_hypergraph(samples_of(kPrefixes, kTargets), 5), 5);
  const auto batch = models::make_batch(samples_of({{3, 1, 3, 2}, {2}}, {1, 3}));
  model.eval();
  torch::NoGradGuard no_grad;
  const auto first = model.forward(batch);
  EXPECT_TRUE(torch::equal(model.forward(batch), first));
  model.embedding->weight.mul_(2.0);  // what an optimiser step or torch::load does: in place
  const auto changed = model.forward(batch);
  EXPECT_FALSE(torch::allclose(changed, first));
  EXPECT_TRUE(torch::allclose(changed, model.score(model.readout(model.encode(batch)), model.encode(batch))));
  model.train();  // training recomputes every time: the ground truth for the cached states
  const auto fresh = model.forward(batch);
  EXPECT_TRUE(torch::equal(fresh, changed));
}

TEST(Dhcn, FarPositionsShareTheLastPositionRow) {
  DhcnImpl model(tiny_options(5, 4), build_hypergraph(samples_of(kPrefixes, kTargets), 5), 5);
  model.eval();
  torch::NoGradGuard no_grad;
  // 8 clicks with max_positions 6: the reversed positions 7, 6 and 5 of the first three clicks all use
  // row 5, which therefore moves the result; the reference's fixed table would fail here.
  const auto batch = models::make_batch(samples_of({{1, 2, 3, 1, 2, 3, 1, 2}}, {3}));
  const auto before = model.forward(batch);
  EXPECT_TRUE(torch::isfinite(before).all().item<bool>());
  model.pos_embedding->weight[5].add_(0.3);
  EXPECT_FALSE(torch::allclose(model.forward(batch), before));
}

TEST(Dhcn, OutputShapesAndTheSslLossOnlyInTraining) {
  const std::int64_t n = 5, d = 8;
  DhcnImpl model(tiny_options(n, d), build_hypergraph(samples_of(kPrefixes, kTargets), 5), 1);
  const auto batch = models::make_batch(samples_of({{3, 4, 3, 1}, {1}, {5, 2}}, {5, 2, 4}));
  expect_representation_shapes(model, batch);
  const SessionRepresentation rep = model.encode(batch);
  ASSERT_TRUE(rep.aux_loss.defined());
  EXPECT_EQ(rep.aux_loss.dim(), 0);
  EXPECT_TRUE(rep.aux_loss.requires_grad());
  model.eval();
  EXPECT_FALSE(model.encode(batch).aux_loss.defined());
  model.train();
  DhcnImpl no_ssl(tiny_options(n, d, 0.0), build_hypergraph(samples_of(kPrefixes, kTargets), 5), 1);
  EXPECT_FALSE(no_ssl.encode(batch).aux_loss.defined());
}

TEST(Dhcn, HybridReadoutFusesBothAnchors) {
  auto own = tiny_options(5, 8);
  own.nonhybrid = true;
  DhcnImpl hybrid(tiny_options(5, 8), build_hypergraph(samples_of(kPrefixes, kTargets), 5), 1);
  DhcnImpl nonhybrid(own, build_hypergraph(samples_of(kPrefixes, kTargets), 5), 1);
  hybrid.eval();
  expect_hybrid_readout(hybrid, hybrid.linear_transform, nonhybrid, true,
                        models::make_batch(samples_of({{3, 4, 3, 1}, {1}, {5, 2}}, {5, 2, 4})));
}

// ---------------------------------------------------------------------------------------------------
// (d) The line-graph channel and the SSL loss.

TEST(Dhcn, LineGraphChannelUsesJaccardOverlapAndNoGradient) {
  const std::int64_t d = 4;
  DhcnImpl model(tiny_options(5, d, 0.01, 2), build_hypergraph(samples_of(kPrefixes, kTargets), 5), 2);
  model.to(torch::kFloat64);
  // Item sets {1,2} (from 1,2,2), {2,3} and {4}: J = 1/3 between the first two, 0 otherwise.
  const auto batch = models::make_batch(samples_of({{1, 2, 2}, {2, 3}, {4}}, {1, 1, 1}));
  const auto theta_l = model.line_graph_sessions(batch);
  EXPECT_FALSE(theta_l.requires_grad());

  const auto e = model.embedding->weight.detach();
  const auto theta0 = torch::stack({(e[0] + 2 * e[1]) / 3.0, (e[1] + e[2]) / 2.0, e[3]});  // duplicates counted
  const auto adj = real_matrix({{1, 1.0 / 3, 0}, {1.0 / 3, 1, 0}, {0, 0, 1}});
  const auto p = adj / adj.sum(1, true);
  const auto want = (theta0 + p.mm(theta0) + p.mm(p.mm(theta0))) / 3.0;
  EXPECT_TRUE(torch::allclose(theta_l, want, 1e-12, 1e-12)) << theta_l << "\n" << want;
}

TEST(Dhcn, SslLossIsTheSummedBinaryCrossEntropyWithShuffledNegatives) {
  DhcnImpl model(tiny_options(5, 3, 0.5), build_hypergraph(samples_of(kPrefixes, kTargets), 5), 2);
  model.to(torch::kFloat64);
  const auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  const auto theta_h = torch::tensor({0.1, -0.2, 0.3, 0.4, 0.5, -0.6}, opts).view({2, 3});
  const auto theta_l = torch::tensor({0.7, 0.1, -0.3, 0.2, -0.4, 0.9}, opts).view({2, 3});
  torch::manual_seed(9);
  const auto loss = model.ssl_loss(theta_h, theta_l).item<double>();
  torch::manual_seed(9);
  const auto rows = torch::randperm(2, torch::kInt64), cols = torch::randperm(3, torch::kInt64);
  const auto shuffled = theta_h.index_select(0, rows).index_select(1, cols);
  double want = 0;
  for (std::int64_t b = 0; b < 2; ++b) {
    const double pos = torch::dot(theta_h[b], theta_l[b]).item<double>();
    const double neg = torch::dot(theta_l[b], shuffled[b]).item<double>();
    auto sigmoid = [](double x) { return 1.0 / (1.0 + std::exp(-x)); };
    want += -std::log(sigmoid(pos) + 1e-8) - std::log(1 - sigmoid(neg) + 1e-8);
  }
  EXPECT_NEAR(loss, 0.5 * want, 1e-12);
}

// ---------------------------------------------------------------------------------------------------
// (e) Finite-difference gradients, in double precision, with the SSL loss on and off.

// The loss with the line-graph vectors θ_l held fixed: the reference detaches the line-graph channel, so
// its analytic gradient is the derivative with θ_l constant, which is what the finite differences see.
double batch_loss(DhcnImpl& model, const SessionBatch& batch, const torch::Tensor& theta_l) {
  model.eval();  // no SSL inside encode(); it is added below from the fixed θ_l
  const SessionRepresentation rep = model.encode(batch);
  model.train();
  auto loss = torch::nn::functional::cross_entropy(model.score(model.readout(rep), rep), batch.targets - 1);
  if (model.options().beta > 0) {
    torch::manual_seed(17);  // the SSL negatives are random: the same permutation for every evaluation
    loss = loss + model.ssl_loss(rep.global, theta_l);
  }
  return loss.item<double>();
}

void check_gradients(double beta) {
  DhcnImpl model(tiny_options(5, 4, beta, 2), build_hypergraph(samples_of(kPrefixes, kTargets), 5), 11);
  model.to(torch::kFloat64);
  // Prefix 7 clicks long: reversed positions 6 -> clamped to row 5.
  const auto batch = models::make_batch(samples_of({{3, 1, 3, 2}, {2, 2, 4}, {5}, {1, 2, 3, 1, 2, 3, 1}}, {3, 5, 1, 4}));
  const auto theta_l = model.line_graph_sessions(batch);

  model.zero_grad();
  torch::manual_seed(17);
  const SessionRepresentation rep = model.encode(batch);  // training mode: the model's own SSL loss
  ASSERT_EQ(rep.aux_loss.defined(), beta > 0);
  auto loss = torch::nn::functional::cross_entropy(model.score(model.readout(rep), rep), batch.targets - 1);
  if (rep.aux_loss.defined()) loss = loss + rep.aux_loss;
  EXPECT_NEAR(loss.item<double>(), batch_loss(model, batch, theta_l), 1e-12);
  loss.backward();

  GradCheck check;
  check.label = "(beta " + std::to_string(beta) + ")";
  expect_stored_gradients_match(model, [&] { return batch_loss(model, batch, theta_l); }, check);
}

TEST(Dhcn, GradientsMatchFiniteDifferencesWithSsl) { check_gradients(0.5); }
TEST(Dhcn, GradientsMatchFiniteDifferencesWithoutSsl) { check_gradients(0.0); }

// ---------------------------------------------------------------------------------------------------
// (f) Batch independence: the line graph couples a batch, but eval scores never see it.

TEST(Dhcn, EvalScoresDoNotDependOnTheBatch) {
  DhcnImpl model(tiny_options(5, 8), build_hypergraph(samples_of(kPrefixes, kTargets), 5), 5);
  model.eval();
  expect_scores_independent_of_batch(model, samples_of({{3, 1, 3, 2}, {1, 2, 3, 4, 5, 5, 1, 2}, {4}, {2, 3}}, {1, 2, 3, 4}));
}

// ---------------------------------------------------------------------------------------------------
// (g) Checkpoints: the parameters round-trip; the hypergraph is rebuilt from the data.

TEST(Dhcn, SaveAndLoadGiveIdenticalScores) {
  const auto batch = models::make_batch(samples_of({{3, 1, 3, 2}, {2, 2, 4}, {5}}, {3, 5, 1}));
  auto graph = [] { return build_hypergraph(samples_of(kPrefixes, kTargets), 5); };
  expect_checkpoint_round_trip(std::make_shared<DhcnImpl>(tiny_options(5, 8), graph(), 1),
                               std::make_shared<DhcnImpl>(tiny_options(5, 8), graph(), 2), batch);
}

}  // namespace
}  // namespace llm4sbr::models
