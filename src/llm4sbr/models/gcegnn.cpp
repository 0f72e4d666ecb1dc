#include "llm4sbr/models/gcegnn.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <memory>
#include <numeric>
#include <random>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

#include "llm4sbr/core/error.hpp"
#include "llm4sbr/models/batch.hpp"
#include "llm4sbr/models/dropout.hpp"
#include "llm4sbr/models/model_settings.hpp"
#include "llm4sbr/models/neighbour_attention.hpp"
#include "llm4sbr/models/readout.hpp"
#include "llm4sbr/models/init.hpp"
#include "llm4sbr/models/segments.hpp"

namespace llm4sbr::models {

namespace F = torch::nn::functional;

namespace {

torch::Tensor int_tensor(const std::vector<std::int64_t>& v) { return torch::tensor(v, torch::kInt64); }

}  // namespace

// ---------------------------------------------------------------------------------------------------
// The global item graph.

GlobalItemGraph build_global_graph(const std::vector<std::vector<std::int64_t>>& sessions, std::int64_t n_items,
                                   std::int64_t epsilon, std::int64_t top_k) {
  if (epsilon < 1 || top_k < 1)
    throw Error(fmt::format("build_global_graph: epsilon and top_k must be >= 1, got {} and {}", epsilon, top_k));
  // Per item: neighbour -> (count, rank of first occurrence), in the reference's pair order.
  std::vector<std::unordered_map<std::int64_t, std::pair<std::int64_t, std::int64_t>>> counts(
      static_cast<std::size_t>(n_items + 1));
  std::int64_t order = 0;
  const auto add = [&](std::int64_t a, std::int64_t b) {
    auto [it, fresh] = counts[static_cast<std::size_t>(a)].try_emplace(b, 0, order++);
    ++it->second.first;
  };
  for (std::size_t s = 0; s < sessions.size(); ++s) {
    const auto& seq = sessions[s];
    for (auto item : seq)
      if (item < 1 || item > n_items)
        throw Error(fmt::format("build_global_graph: item {} of session {} is outside 1..{}", item, s, n_items));
    const auto n = static_cast<std::int64_t>(seq.size());
    for (std::int64_t k = 1; k <= epsilon; ++k)
      for (std::int64_t j = 0; j + k < n; ++j) {
        add(seq[static_cast<std::size_t>(j)], seq[static_cast<std::size_t>(j + k)]);
        add(seq[static_cast<std::size_t>(j + k)], seq[static_cast<std::size_t>(j)]);
      }
  }
  GlobalItemGraph g;
  g.neighbours.resize(static_cast<std::size_t>(n_items + 1));
  std::vector<std::tuple<std::int64_t, std::int64_t, std::int64_t>> row;  // (-count, first, item)
  for (std::size_t i = 0; i < counts.size(); ++i) {
    row.clear();
    for (const auto& [item, cf] : counts[i]) row.emplace_back(-cf.first, cf.second, item);
    std::sort(row.begin(), row.end());
    const auto keep = std::min<std::size_t>(row.size(), static_cast<std::size_t>(top_k));
    for (std::size_t k = 0; k < keep; ++k) g.neighbours[i].emplace_back(std::get<2>(row[k]), -std::get<0>(row[k]));
  }
  return g;
}

std::vector<std::vector<std::int64_t>> training_sessions(const data::PreparedDataset& ds) {
  std::vector<std::vector<std::int64_t>> out;
  std::unordered_set<std::int64_t> seen;
  for (const auto& s : ds.train) {
    if (s.session < 0 || s.session >= static_cast<std::int64_t>(ds.sessions.size()))
      throw Error(fmt::format("training_sessions: sample {} names session {}, but there are {}", s.id, s.session,
                              ds.sessions.size()));
    if (seen.insert(s.session).second) out.push_back(ds.sessions[static_cast<std::size_t>(s.session)].items);
  }
  return out;
}

NeighbourTable sample_neighbour_table(const GlobalItemGraph& graph, std::int64_t n_sample, std::uint64_t seed) {
  if (n_sample < 1) throw Error(fmt::format("sample_neighbour_table: n_sample must be >= 1, got {}", n_sample));
  const auto rows = static_cast<std::int64_t>(graph.neighbours.size());
  NeighbourTable t;
  t.items = torch::zeros({rows, n_sample}, torch::kInt64);
  t.weights = torch::zeros({rows, n_sample}, torch::kFloat64);
  auto items = t.items.accessor<std::int64_t, 2>();
  auto weights = t.weights.accessor<double, 2>();
  std::mt19937_64 rng(seed);
  std::vector<std::size_t> index;
  for (std::int64_t i = 1; i < rows; ++i) {
    const auto& nb = graph.neighbours[static_cast<std::size_t>(i)];
    if (nb.empty()) continue;
    index.resize(nb.size());
    std::iota(index.begin(), index.end(), 0);
    for (std::int64_t k = 0; k < n_sample; ++k) {
      std::size_t pick;
      if (static_cast<std::int64_t>(nb.size()) >= n_sample) {  // without replacement: partial Fisher-Yates
        std::uniform_int_distribution<std::size_t> draw(static_cast<std::size_t>(k), nb.size() - 1);
        std::swap(index[static_cast<std::size_t>(k)], index[draw(rng)]);
        pick = index[static_cast<std::size_t>(k)];
      } else {  // with replacement
        std::uniform_int_distribution<std::size_t> draw(0, nb.size() - 1);
        pick = draw(rng);
      }
      items[i][k] = nb[pick].first;
      weights[i][k] = static_cast<double>(nb[pick].second);
    }
  }
  return t;
}

// ---------------------------------------------------------------------------------------------------
// The per-batch relation graph.

RelationGraph build_relation_graph(const torch::Tensor& items, std::int64_t max_positions) {
  if (!items.defined() || items.dim() != 2 || items.scalar_type() != torch::kInt64 || !items.device().is_cpu())
    throw Error("build_relation_graph: expected a 2-D int64 CPU tensor of item ids, got " +
                (items.defined() ? c10::str(items.toString(), " of shape ", items.sizes())
                                 : std::string("an undefined tensor")));
  if (max_positions < 1) throw Error(fmt::format("build_relation_graph: max_positions must be >= 1, got {}", max_positions));
  const torch::Tensor contiguous = items.contiguous();
  const auto it = contiguous.accessor<std::int64_t, 2>();
  const std::int64_t b_size = it.size(0), len = it.size(1);

  std::vector<std::int64_t> node_items, node_offsets{0}, node_sessions, click_nodes, click_sessions, click_positions,
      last_clicks, edge_src, edge_dst, edge_code;
  std::vector<std::int64_t> row, nodes, local;
  std::vector<std::int8_t> code;
  for (std::int64_t b = 0; b < b_size; ++b) {
    row.clear();
    for (std::int64_t t = 0; t < len && it[b][t] != 0; ++t) {
      if (it[b][t] < 0)
        throw Error(fmt::format("build_relation_graph: negative item id {} at row {}, position {}", it[b][t], b, t));
      row.push_back(it[b][t]);
    }
    if (row.empty()) throw Error(fmt::format("build_relation_graph: row {} has no click", b));
    if (static_cast<std::int64_t>(row.size()) > max_positions)
      row.erase(row.begin(), row.end() - max_positions);  // keep the most recent clicks
    const auto first = static_cast<std::int64_t>(node_items.size());
    nodes = row;
    std::sort(nodes.begin(), nodes.end());
    nodes.erase(std::unique(nodes.begin(), nodes.end()), nodes.end());
    node_items.insert(node_items.end(), nodes.begin(), nodes.end());
    node_sessions.insert(node_sessions.end(), nodes.size(), b);
    node_offsets.push_back(static_cast<std::int64_t>(node_items.size()));

    const auto n_clicks = static_cast<std::int64_t>(row.size());
    local.resize(row.size());
    for (std::int64_t t = 0; t < n_clicks; ++t) {
      local[static_cast<std::size_t>(t)] =
          std::lower_bound(nodes.begin(), nodes.end(), row[static_cast<std::size_t>(t)]) - nodes.begin();
      click_nodes.push_back(first + local[static_cast<std::size_t>(t)]);
      click_sessions.push_back(b);
      click_positions.push_back(n_clicks - 1 - t);
    }
    last_clicks.push_back(static_cast<std::int64_t>(click_nodes.size()) - 1);

    // The reference's walk over the reversed sequence u_i = row[n − 1 − i].
    const auto n = static_cast<std::int64_t>(nodes.size());
    code.assign(static_cast<std::size_t>(n * n), 0);
    const auto at = [&](std::int64_t r, std::int64_t c) -> std::int8_t& { return code[static_cast<std::size_t>(r * n + c)]; };
    for (std::int64_t i = 0; i < n_clicks; ++i) {
      const std::int64_t u = local[static_cast<std::size_t>(n_clicks - 1 - i)];
      at(u, u) = 1;
      if (i + 1 == n_clicks) break;
      const std::int64_t v = local[static_cast<std::size_t>(n_clicks - 2 - i)];
      if (u == v || at(u, v) == 4) continue;
      at(v, v) = 1;
      if (at(v, u) == 2) {
        at(u, v) = at(v, u) = 4;
      } else {
        at(u, v) = 2;
        at(v, u) = 3;
      }
    }
    for (std::int64_t r = 0; r < n; ++r)
      for (std::int64_t c = 0; c < n; ++c)
        if (at(r, c) != 0) {
          edge_src.push_back(first + r);
          edge_dst.push_back(first + c);
          edge_code.push_back(at(r, c));
        }
  }

  RelationGraph g;
  g.node_items = int_tensor(node_items);
  g.node_offsets = int_tensor(node_offsets);
  g.node_sessions = int_tensor(node_sessions);
  g.click_nodes = int_tensor(click_nodes);
  g.click_sessions = int_tensor(click_sessions);
  g.click_positions = int_tensor(click_positions);
  g.last_clicks = int_tensor(last_clicks);
  g.edge_src = int_tensor(edge_src);
  g.edge_dst = int_tensor(edge_dst);
  g.edge_code = int_tensor(edge_code);
  return g;
}

torch::Tensor RelationGraph::dense_codes(std::int64_t b) const {
  const auto first = node_offsets[b].item<std::int64_t>();
  const auto n = node_offsets[b + 1].item<std::int64_t>() - first;
  auto a = torch::zeros({n, n}, torch::kInt64);
  const auto mine = edge_src.ge(first) & edge_src.lt(first + n);
  a.index_put_({edge_src.masked_select(mine) - first, edge_dst.masked_select(mine) - first}, edge_code.masked_select(mine));
  return a;
}

// ---------------------------------------------------------------------------------------------------

GceGnnOptions GceGnnOptions::from_config(const ModelContext& ctx, const Config& settings) {
  const ModelSettings keys("gcegnn", settings);
  GceGnnOptions o;
  o.n_items = keys.n_items(ctx);
  o.hidden_size = keys.hidden_size(ctx);
  o.n_iter = keys.integer("n_iter", o.n_iter, 1);
  o.n_sample = keys.integer("n_sample", o.n_sample, 1);
  o.epsilon = keys.integer("epsilon", o.epsilon, 1);
  o.dropout_local = keys.rate("dropout_local", o.dropout_local);
  o.dropout_global = keys.rate("dropout_global", o.dropout_global);
  o.dropout_gcn = keys.rate("dropout_gcn", o.dropout_gcn);
  o.alpha = keys.real("alpha", o.alpha, 0.0, 1.0);
  o.activation = keys.choice("activation", o.activation, {"relu", "tanh"});
  o.max_positions = keys.integer("max_positions", o.max_positions, 1);
  o.nonhybrid = keys.flag("nonhybrid", o.nonhybrid);
  keys.reject_unknown_keys();
  return o;
}

GlobalAggregatorImpl::GlobalAggregatorImpl(std::int64_t hidden_size, double dropout, std::string activation)
    : dropout_(dropout), activation_(std::move(activation)) {
  const std::int64_t d = hidden_size;
  w_1 = register_parameter("w_1", torch::empty({d + 1, d}));
  w_2 = register_parameter("w_2", torch::empty({d, 1}));
  w_3 = register_parameter("w_3", torch::empty({2 * d, d}));
}

torch::Tensor GlobalAggregatorImpl::forward(const torch::Tensor& self_vectors, const torch::Tensor& neighbour_vectors,
                                            const torch::Tensor& neighbour_weights, const torch::Tensor& session) {
  const auto aggregated = neighbour_attention(session, neighbour_vectors, neighbour_weights, w_1, w_2);  // [n, d]
  auto out = fast_dropout(torch::cat({self_vectors, aggregated}, -1), dropout_, is_training());
  out = torch::matmul(out, w_3);
  return activation_ == "relu" ? torch::relu(out) : torch::tanh(out);
}

GceGnnImpl::GceGnnImpl(GceGnnOptions options, NeighbourTable table, std::uint64_t seed)
    : options_(std::move(options)), table_(std::move(table)) {
  const std::int64_t d = options_.hidden_size;
  if (!table_.items.defined() || table_.items.dim() != 2 || table_.items.size(0) != options_.n_items + 1 ||
      table_.items.size(1) != options_.n_sample || !table_.weights.defined() ||
      table_.weights.sizes() != table_.items.sizes())
    throw Error(fmt::format("gcegnn: the neighbour table must be [{}, {}] items and weights", options_.n_items + 1,
                            options_.n_sample));
  embedding = register_module("embedding", torch::nn::Embedding(options_.n_items + 1, d));
  pos_embedding = register_module("pos_embedding", torch::nn::Embedding(options_.max_positions, d));
  local_attention = register_parameter("local_attention", torch::empty({4, d}));
  global_aggregators = register_module("global_aggregators", torch::nn::ModuleList());
  for (std::int64_t i = 0; i < options_.n_iter; ++i)
    global_aggregators->push_back(GlobalAggregator(d, options_.dropout_gcn, options_.activation));
  w_1 = register_parameter("w_1", torch::empty({2 * d, d}));
  w_2 = register_parameter("w_2", torch::empty({d, 1}));
  glu1 = register_module("glu1", torch::nn::Linear(d, d));
  glu2 = register_module("glu2", torch::nn::Linear(torch::nn::LinearOptions(d, d).bias(false)));
  // Registered last (so the other parameters draw the same values as without it), and in nonhybrid mode
  // too, so that both variants share one checkpoint layout.
  linear_transform = register_module("linear_transform", torch::nn::Linear(2 * d, d));
  init_uniform_reference(*this, d, seed);
}

RelationGraph RelationGraph::to(const torch::Device& device) const {
  return {to_device(node_items, device),     to_device(node_offsets, device), to_device(node_sessions, device),
          to_device(click_nodes, device),    to_device(click_sessions, device), to_device(click_positions, device),
          to_device(last_clicks, device),    to_device(edge_src, device),     to_device(edge_dst, device),
          to_device(edge_code, device)};
}

torch::Tensor GceGnnImpl::session_level(const RelationGraph& graph, const torch::Tensor& h) {
  const auto& src = graph.edge_src;
  const auto h_j = h.index_select(0, graph.edge_dst);
  const auto a = local_attention.index_select(0, graph.edge_code - 1);  // a_r of each pair, [E, d]
  const auto e = F::leaky_relu((h.index_select(0, src) * h_j * a).sum(1, true),
                               F::LeakyReLUFuncOptions().negative_slope(options_.alpha));  // [E, 1]
  return segment_softmax_sum(e, h_j, src, h.size(0));  // softmax over each row's coded pairs
}

GceGnnImpl::HopTree GceGnnImpl::hop_tree(const RelationGraph& graph, const torch::Tensor& node_items) {
  const auto device = node_items.device();
  const auto dtype = embedding->weight.scalar_type();
  if (!device_items_.defined() || device_items_.device() != device || device_weights_.scalar_type() != dtype) {
    device_items_ = table_.items.to(device);
    device_weights_ = table_.weights.to(device, dtype);
  }
  const std::int64_t k = options_.n_sample;
  HopTree tree{{node_items}, {}, {graph.node_sessions}};
  for (std::int64_t h = 0; h < options_.n_iter; ++h) {
    tree.weights.push_back(device_weights_.index_select(0, tree.items.back()));  // [n_h, K]
    tree.items.push_back(device_items_.index_select(0, tree.items.back()).reshape({-1}));
    tree.sessions.push_back(tree.sessions.back().repeat_interleave(k));
  }
  return tree;
}

torch::Tensor GceGnnImpl::global_level(const HopTree& tree, std::vector<torch::Tensor> vectors,
                                       const torch::Tensor& session_vectors) {
  const std::int64_t k = options_.n_sample, hops = options_.n_iter;
  const auto& weights = tree.weights;
  const auto& sessions = tree.sessions;
  for (std::int64_t round = 0; round < hops; ++round) {
    auto& aggregator = global_aggregators->at<GlobalAggregatorImpl>(static_cast<std::size_t>(round));
    std::vector<torch::Tensor> next;
    for (std::int64_t h = 0; h < hops - round; ++h) {
      const auto& self = vectors[static_cast<std::size_t>(h)];
      next.push_back(aggregator.forward(self, vectors[static_cast<std::size_t>(h + 1)].view({self.size(0), k, -1}),
                                        weights[static_cast<std::size_t>(h)],
                                        session_vectors.index_select(0, sessions[static_cast<std::size_t>(h)])));
    }
    vectors = std::move(next);
  }
  return vectors[0];
}

std::shared_ptr<const BatchInputs> GceGnnImpl::prepare(const SessionBatch& batch, const torch::Device& device) const {
  return std::make_shared<PreparedInputs<RelationGraph>>(
      build_relation_graph(batch.items_on_cpu(), options_.max_positions).to(device));
}

SessionRepresentation GceGnnImpl::encode(const SessionBatch& batch) {
  const auto device = embedding->weight.device();
  const auto inputs = inputs_for(batch, device);
  const auto& graph = prepared_as<RelationGraph>(*inputs);
  const std::int64_t b = graph.batch_size();
  const auto& node_items = graph.node_items;
  const auto& click_nodes = graph.click_nodes;
  const auto& sessions = graph.click_sessions;
  const auto counts = torch::bincount(sessions, {}, b).to(embedding->weight.scalar_type()).unsqueeze(1);  // [B, 1]
  const auto mean = [&](const torch::Tensor& per_click) { return segment_sum(per_click, sessions, b) / counts; };

  // The item table is read once, for the nodes and every hop's sampled neighbours together: one lookup, one
  // gradient for autograd to add into the scores' (reading the table four times made four of them a step).
  const auto tree = hop_tree(graph, node_items);
  std::vector<std::int64_t> counts_of;
  for (const auto& level : tree.items) counts_of.push_back(level.size(0));
  auto vectors = item_lookup(embedding->weight, torch::cat(tree.items)).split_with_sizes(counts_of);  // [n_h, d] each
  const auto h = vectors[0];  // [V, d]
  const auto h_local = session_level(graph, h);
  const auto h_global = global_level(tree, std::move(vectors), mean(h.index_select(0, click_nodes)));
  const auto combined =
      fast_dropout(h_local, options_.dropout_local, is_training()) + fast_dropout(h_global, options_.dropout_global, is_training());
  const auto x = combined.index_select(0, click_nodes);  // [P, d], click order

  // Reversed-position-aware readout: β_t = w2ᵀ σ(G1 tanh([Pos[n−1−t] ; x_t] W1) + b + G2 mean(x)), no softmax.
  const auto z = torch::tanh(torch::matmul(torch::cat({pos_embedding(graph.click_positions), x}, 1), w_1));
  const auto beta = torch::matmul(torch::sigmoid(glu1(z) + glu2(mean(x)).index_select(0, sessions)), w_2);  // [P, 1]

  SessionRepresentation rep;
  rep.local = x.index_select(0, graph.last_clicks);
  rep.global = segment_sum(beta * x, sessions, b);
  rep.clicks = x;
  rep.click_sessions = sessions;
  return rep;
}

torch::Tensor GceGnnImpl::readout(const SessionRepresentation& rep) {
  return hybrid_readout(linear_transform, rep, options_.nonhybrid, rep.global);
}

torch::Tensor GceGnnImpl::score(const torch::Tensor& session, const SessionRepresentation& /*rep*/) {
  return embedding_scores(session, embedding->weight, options_.n_items);
}

LinearScorer GceGnnImpl::linear_scorer() const {
  return embedding_scorer(embedding->weight, options_.n_items);
}

SessionEncoder make_gcegnn(const ModelContext& ctx, const Config& settings) {
  auto options = GceGnnOptions::from_config(ctx, settings);
  if (ctx.dataset == nullptr)
    throw ConfigError("gcegnn: the global item graph needs the training data (ModelContext::dataset is not set)");
  const auto graph = build_global_graph(training_sessions(*ctx.dataset), options.n_items, options.epsilon, options.n_sample);
  auto table = sample_neighbour_table(graph, options.n_sample, ctx.seed);
  return std::make_shared<GceGnnImpl>(std::move(options), std::move(table), ctx.seed);
}

}  // namespace llm4sbr::models
