#include "llm4sbr/models/srgnn.hpp"

#include <fmt/format.h>

#include <cmath>
#include <memory>

#include "llm4sbr/models/init.hpp"
#include "llm4sbr/models/packed_gru.hpp"
#include "llm4sbr/models/readout.hpp"
#include "llm4sbr/models/session_graph.hpp"

namespace llm4sbr::models {

namespace F = torch::nn::functional;

SrGnnOptions SrGnnOptions::from_settings(const ModelContext& ctx, const ModelSettings& keys) {
  SrGnnOptions o;
  o.n_items = keys.n_items(ctx);
  o.hidden_size = keys.hidden_size(ctx);
  o.step = keys.integer("step", o.step, 0);
  o.nonhybrid = keys.flag("nonhybrid", o.nonhybrid);
  return o;
}

SrGnnOptions SrGnnOptions::from_config(const ModelContext& ctx, const Config& settings) {
  const ModelSettings keys("srgnn", settings);
  auto o = from_settings(ctx, keys);
  keys.reject_unknown_keys();
  return o;
}

// ---------------------------------------------------------------------------------------------------

GatedGnnImpl::GatedGnnImpl(std::int64_t hidden_size, std::int64_t step) : step_(step) {
  const std::int64_t d = hidden_size;
  edge_in = register_module("edge_in", torch::nn::Linear(d, d));
  edge_out = register_module("edge_out", torch::nn::Linear(d, d));
  w_ih = register_parameter("w_ih", torch::empty({3 * d, 2 * d}));
  w_hh = register_parameter("w_hh", torch::empty({3 * d, d}));
  b_ih = register_parameter("b_ih", torch::empty({3 * d}));
  b_hh = register_parameter("b_hh", torch::empty({3 * d}));
  b_iah = register_parameter("b_iah", torch::empty({d}));
  b_oah = register_parameter("b_oah", torch::empty({d}));
}

torch::Tensor GatedGnnImpl::forward(const SessionGraph& graph, torch::Tensor hidden) {
  for (std::int64_t i = 0; i < step_; ++i) {
    // [W_in h + b_in, W_out h + b_out] as one product, aggregated along in- and out-edges (Eq. 1), + [b_iah, b_oah].
    const auto messages = F::linear(hidden, torch::cat({edge_in->weight, edge_out->weight}),
                                    torch::cat({edge_in->bias, edge_out->bias}));  // [V, 2d]
    hidden = gru_cell(graph.aggregate_both(messages) + torch::cat({b_iah, b_oah}), hidden);
  }
  return hidden;
}

torch::Tensor GatedGnnImpl::gru_cell(const torch::Tensor& input, const torch::Tensor& hidden) {
  const bool written_out = hidden.is_cpu() && hidden.size(0) > 0 &&
                           (hidden.scalar_type() == torch::kFloat32 || hidden.scalar_type() == torch::kFloat64);
  if (written_out) {
    // packed_gru.hpp's layer, one step over all V rows: two products and one loop each way, where the
    // operations below make a dozen passes over [V, 3d] forward and more backward (~15 % of the samples under
    // an SR-GNN training step in perf; `backbone_bench --model srgnn`: ~4 % more samples/s).
    const auto rows = torch::full({1}, hidden.size(0), torch::kLong);
    return packed_gru_layer(input, rows, w_ih, w_hh, b_ih, b_hh, hidden);
  }
  const auto gi = F::linear(input, w_ih, b_ih).chunk(3, -1);
  const auto gh = F::linear(hidden, w_hh, b_hh).chunk(3, -1);
  const auto reset = torch::sigmoid(gi[0] + gh[0]);
  const auto update = torch::sigmoid(gi[1] + gh[1]);
  const auto candidate = torch::tanh(gi[2] + reset * gh[2]);
  return candidate + update * (hidden - candidate);  // (1 - z) ñ + z h
}

// ---------------------------------------------------------------------------------------------------

SrGnnImpl::SrGnnImpl(SrGnnOptions options, std::uint64_t seed) : options_(options) {
  const std::int64_t d = options_.hidden_size;
  embedding = register_module("embedding", torch::nn::Embedding(options_.n_items + 1, d));
  gnn = register_module("gnn", GatedGnn(d, options_.step));
  linear_one = register_module("linear_one", torch::nn::Linear(d, d));
  linear_two = register_module("linear_two", torch::nn::Linear(d, d));
  linear_three = register_module("linear_three", torch::nn::Linear(torch::nn::LinearOptions(d, 1).bias(false)));
  // Registered in nonhybrid mode too, so that both variants share one checkpoint layout (it is unused there).
  linear_transform = register_module("linear_transform", torch::nn::Linear(2 * d, d));
  init_uniform_reference(*this, d, seed);
}

std::shared_ptr<const BatchInputs> SrGnnImpl::prepare(const SessionBatch& batch, const torch::Device& device) const {
  return std::make_shared<PreparedInputs<SessionGraph>>(
      build_session_graph(batch.items_on_cpu(), embedding->weight.scalar_type()).to(device));
}

SessionRepresentation SrGnnImpl::encode(const SessionBatch& batch) {
  const auto& weight = embedding->weight;
  const auto inputs = inputs_for(batch, weight.device());
  const auto& graph = prepared_as<SessionGraph>(*inputs);
  const auto& sessions = graph.click_sessions;

  const auto h = gnn(graph, item_lookup(weight, graph.node_items));  // [V, d]
  const auto v = h.index_select(0, graph.click_nodes);      // [P, d] every click's state
  const auto v_n = v.index_select(0, graph.last_clicks);    // [B, d] last click
  // alpha_t = q^T sigmoid(W1 v_n + W2 v_t), no softmax (the reference); padding never enters the sum.
  const auto alpha = linear_three(torch::sigmoid(linear_one(v_n).index_select(0, sessions) + linear_two(v)));  // [P, 1]

  SessionRepresentation rep;
  rep.local = v_n;
  rep.global = torch::zeros_like(v_n).index_add(0, sessions, alpha * v);
  rep.clicks = v;
  rep.click_sessions = sessions;
  return rep;
}

torch::Tensor SrGnnImpl::readout(const SessionRepresentation& rep) {
  return hybrid_readout(linear_transform, rep, options_.nonhybrid, rep.global);
}

torch::Tensor SrGnnImpl::score(const torch::Tensor& session, const SessionRepresentation& /*rep*/) {
  return embedding_scores(session, embedding->weight, options_.n_items);
}

LinearScorer SrGnnImpl::linear_scorer() const {
  return embedding_scorer(embedding->weight, options_.n_items);
}

SessionEncoder make_srgnn(const ModelContext& ctx, const Config& settings) {
  return std::make_shared<SrGnnImpl>(SrGnnOptions::from_config(ctx, settings), ctx.seed);
}

}  // namespace llm4sbr::models
