#include "llm4sbr/models/tagnn.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <memory>

#include "llm4sbr/core/error.hpp"
#include "llm4sbr/models/batch.hpp"
#include "llm4sbr/models/init.hpp"
#include "llm4sbr/models/model_settings.hpp"
#include "llm4sbr/models/session_graph.hpp"

namespace llm4sbr::models {

TagnnOptions TagnnOptions::from_config(const ModelContext& ctx, const Config& settings) {
  TagnnOptions o;
  const ModelSettings keys("tagnn", settings);
  o.base = SrGnnOptions::from_settings(ctx, keys);
  o.faithful_padding = keys.flag("faithful_padding", o.faithful_padding);
  o.pad_length = keys.integer("pad_length", o.pad_length, 0);
  keys.reject_unknown_keys();
  if (!o.faithful_padding) return o;
  if (o.pad_length > 0) {
    o.train_pad_length = o.eval_pad_length = o.pad_length;
  } else if (ctx.dataset != nullptr) {
    // The reference pads each Data object to its own longest sequence (§2.8): train and test differ.
    o.train_pad_length = models::max_prefix_length(ctx.dataset->train);
    o.eval_pad_length = std::max(models::max_prefix_length(ctx.dataset->valid), models::max_prefix_length(ctx.dataset->test));
    if (o.eval_pad_length == 0) o.eval_pad_length = o.train_pad_length;
  } else {
    throw ConfigError("tagnn: faithful_padding needs config key 'pad_length' > 0 or a dataset to take it from");
  }
  return o;
}

TagnnImpl::TagnnImpl(TagnnOptions options, std::uint64_t seed)
    : SrGnnImpl(options.base, seed), tagnn_options_(options) {
  const std::int64_t d = options.base.hidden_size;
  linear_t = register_module("linear_t", torch::nn::Linear(torch::nn::LinearOptions(d, d).bias(false)));
  init_uniform_reference(*this, d, seed);  // again, over SR-GNN's parameters and linear_t
}

std::int64_t TagnnImpl::current_pad_length() const {
  if (!tagnn_options_.faithful_padding) return 0;
  return is_training() ? tagnn_options_.train_pad_length : tagnn_options_.eval_pad_length;
}

torch::Tensor TagnnImpl::padding_counts(const torch::Tensor& click_sessions, std::int64_t batch_size) const {
  if (!tagnn_options_.faithful_padding) return {};
  const std::int64_t pad = current_pad_length();
  const auto lengths = torch::bincount(click_sessions, {}, batch_size);
  const auto longest = lengths.max().item<std::int64_t>();
  if (longest > pad)
    throw Error(fmt::format("tagnn: a session of {} clicks is longer than the padded length {} of faithful_padding "
                            "(set models.tagnn.pad_length)", longest, pad));
  return pad - lengths;
}

SessionRepresentation TagnnImpl::encode(const SessionBatch& batch) {
  SessionRepresentation rep = SrGnnImpl::encode(batch);  // GNN states and v_n; its global is replaced below
  const auto& v = rep.clicks;
  const auto& sessions = rep.click_sessions;
  const std::int64_t b = rep.local.size(0);
  const auto anchor = linear_one(rep.local);  // W1 v_n + b1, [B, d]
  const auto logits = linear_three(torch::sigmoid(anchor.index_select(0, sessions) + linear_two(v)));  // [P, 1]

  torch::Tensor pad_logit, pad_count;
  if (tagnn_options_.faithful_padding) {
    pad_count = padding_counts(sessions, b);
    // A padded position holds the GNN state of node "item 0", which has no edges: one vector for all sessions.
    SessionGraph edgeless;
    const auto device = v.device();
    edgeless.node_items = torch::zeros({1}, torch::TensorOptions(torch::kInt64).device(device));
    edgeless.edge_src = edgeless.edge_dst = torch::zeros({0}, torch::TensorOptions(torch::kInt64).device(device));
    edgeless.in_weight = edgeless.out_weight = torch::zeros({0}, v.options());
    const auto v_pad = gnn(edgeless, embedding(edgeless.node_items));  // [1, d]
    pad_logit = linear_three(torch::sigmoid(anchor + linear_two(v_pad)));  // [B, 1]
  }
  rep.global = segment_softmax_sum(logits, v, sessions, b, pad_logit, pad_count);  // Σ_t α_t v_t
  return rep;
}

torch::Tensor TagnnImpl::score(const torch::Tensor& session, const SessionRepresentation& rep) {
  if (!rep.clicks.defined() || !rep.click_sessions.defined())
    throw Error("tagnn: score needs rep.clicks and rep.click_sessions from encode");
  const auto candidates = embedding->weight.narrow(0, 1, options().n_items);  // E[1:], [N, d]
  const auto& h = rep.clicks;
  const auto& sessions = rep.click_sessions;
  const std::int64_t b = session.size(0);
  const auto logits = torch::matmul(linear_t(h), candidates.t());  // e_i^T W_t h_t, [P, N]
  const auto values = torch::matmul(h, candidates.t());            // e_i^T h_t, [P, N]

  torch::Tensor pad_logit, pad_count;
  if (tagnn_options_.faithful_padding) {
    pad_count = padding_counts(sessions, b);
    pad_logit = torch::zeros({b, 1}, logits.options());  // padded h~ = 0, so logit 0
  }
  return torch::matmul(session, candidates.t()) + segment_softmax_sum(logits, values, sessions, b, pad_logit, pad_count);
}

SessionEncoder make_tagnn(const ModelContext& ctx, const Config& settings) {
  return std::make_shared<TagnnImpl>(TagnnOptions::from_config(ctx, settings), ctx.seed);
}

}  // namespace llm4sbr::models
