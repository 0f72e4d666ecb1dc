#include "llm4sbr/models/sasrec.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <memory>

#include "llm4sbr/models/batch.hpp"
#include "llm4sbr/models/layer_norm.hpp"
#include "llm4sbr/models/model_settings.hpp"
#include "llm4sbr/models/packed_attention.hpp"
#include "llm4sbr/models/readout.hpp"
#include "llm4sbr/models/segments.hpp"

namespace llm4sbr::models {

namespace F = torch::nn::functional;

namespace {

constexpr double kLayerNormEps = 1e-8;  // the authors' normalize()

torch::nn::LayerNorm layer_norm_module(std::int64_t d) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({d}).eps(kLayerNormEps));
}

/// The module's normalization through models/layer_norm.hpp (its parameters, checkpoint names and eps stay the
/// module's).
torch::Tensor normalize(const torch::nn::LayerNorm& norm, const torch::Tensor& x) {
  return layer_norm(x, norm->weight, norm->bias, norm->options.eps());
}

}  // namespace

SasRecOptions SasRecOptions::from_config(const ModelContext& ctx, const Config& settings) {
  const ModelSettings keys("sasrec", settings);
  SasRecOptions o;
  o.n_items = keys.n_items(ctx);
  o.hidden_size = keys.hidden_size(ctx);
  o.max_length = keys.integer("max_length", o.max_length, 1);
  o.blocks = keys.integer("blocks", o.blocks, 0);
  o.heads = keys.integer("heads", o.heads, 1);
  o.dropout = keys.rate("dropout", o.dropout);
  o.nonhybrid = keys.flag("nonhybrid", o.nonhybrid);
  o.padded_dropout_masks = keys.flag("padded_dropout_masks", o.padded_dropout_masks);
  if (o.hidden_size % o.heads != 0)
    throw ConfigError(
        fmt::format("sasrec: config key 'heads' must divide hidden_size {}, got {}", o.hidden_size, o.heads));
  keys.reject_unknown_keys();
  return o;
}

// ---------------------------------------------------------------------------------------------------

SasRecBlockImpl::SasRecBlockImpl(std::int64_t hidden_size, std::int64_t heads, double dropout,
                                 bool padded_dropout_masks)
    : heads_(heads), dropout_(dropout), padded_dropout_masks_(padded_dropout_masks) {
  const std::int64_t d = hidden_size;
  attention_norm = register_module("attention_norm", layer_norm_module(d));
  query = register_module("query", torch::nn::Linear(d, d));
  key = register_module("key", torch::nn::Linear(d, d));
  value = register_module("value", torch::nn::Linear(d, d));
  ffn_norm = register_module("ffn_norm", layer_norm_module(d));
  ffn_in = register_module("ffn_in", torch::nn::Linear(d, d));
  ffn_out = register_module("ffn_out", torch::nn::Linear(d, d));
}

torch::Tensor SasRecBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& slots, const torch::Tensor& kept,
                                       std::int64_t window) {
  const auto q_in = normalize(attention_norm, x);
  const auto keep = attention_keep(kept, window, heads_, dropout_, is_training(), padded_dropout_masks_, x.options());
  const auto h = normalize(ffn_norm, q_in + causal_attention(query(q_in), key(x), value(x), kept, heads_, keep));
  auto dropout = [&](const torch::Tensor& t) {
    return dropout_packed(t, slots, kept.size(0) * window, dropout_, is_training(), padded_dropout_masks_);
  };
  return h + dropout(ffn_out(dropout(torch::relu(ffn_in(h)))));
}

// ---------------------------------------------------------------------------------------------------

SasRecImpl::SasRecImpl(SasRecOptions options, std::uint64_t seed) : options_(options) {
  const std::int64_t d = options_.hidden_size;
  embedding = register_module("embedding", torch::nn::Embedding(options_.n_items + 1, d));
  pos_embedding = register_module("pos_embedding", torch::nn::Embedding(options_.max_length, d));
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (std::int64_t i = 0; i < options_.blocks; ++i)
    blocks->push_back(SasRecBlock(d, options_.heads, options_.dropout, options_.padded_dropout_masks));
  final_norm = register_module("final_norm", layer_norm_module(d));
  // Registered last (the other parameters draw the same values as without it), and in nonhybrid mode
  // too, so that both variants share one checkpoint layout.
  linear_transform = register_module("linear_transform", torch::nn::Linear(2 * d, d));

  // Glorot-uniform matrices, zero biases, LayerNorm (1, 0), drawn from a generator seeded by `seed`.
  auto gen = at::detail::createCPUGenerator(seed);
  torch::NoGradGuard no_grad;
  for (const auto& item : named_parameters()) {
    auto p = item.value();
    const std::string& name = item.key();
    auto draw = torch::empty(p.sizes(), p.options().device(torch::kCPU));
    if (p.dim() == 2) {
      const double bound = std::sqrt(6.0 / static_cast<double>(p.size(0) + p.size(1)));
      draw.uniform_(-bound, bound, gen);
    } else if (name.find("norm") != std::string::npos && name.ends_with("weight")) {
      draw.fill_(1.0);
    } else {
      draw.zero_();
    }
    p.copy_(draw);
  }
}

namespace {

/// A batch's real clicks in its window (SasRecImpl::prepare): every per-position layer runs on these P rows
/// only (Beauty's prefixes are mostly a few clicks in a window of up to 50). Made on the CPU, where the
/// nonzero of the slots needs no wait for a GPU.
struct WindowClicks {
  torch::Tensor items;      ///< [P] model id of each kept click, row by row in click order
  torch::Tensor positions;  ///< [P] its row of the position table
  torch::Tensor slots;      ///< [P] its slot in the [B, window] grid, in [0, B·window)
  torch::Tensor sessions;   ///< [P] its batch row
  torch::Tensor kept;       ///< [B] clicks kept of each row, n' = min(length, max_length)
  std::int64_t window = 0;  ///< slots a row: min(L, max_length)
};

/// The last `window` slots of each row of items [B, L] (lengths [B]): kept clicks left-aligned,
/// start = max(0, length − max_length).
WindowClicks window_clicks(const torch::Tensor& items, const torch::Tensor& lengths, std::int64_t max_length) {
  WindowClicks w;
  w.window = std::min(items.size(1), max_length);
  w.kept = lengths.clamp_max(max_length);                                    // n'
  const auto t = torch::arange(w.window, lengths.options()).unsqueeze(0);  // [1, n]
  const auto real_mask = t < w.kept.unsqueeze(1);                          // [B, n]
  const auto source = ((lengths - w.kept).unsqueeze(1) + t).clamp_max(items.size(1) - 1);
  const auto clicks = items.gather(1, source);  // read at the real slots only
  const auto positions = ((max_length - w.kept).unsqueeze(1) + t).clamp_max(max_length - 1);
  w.slots = real_mask.reshape({-1}).nonzero().squeeze(1);
  w.sessions = w.slots.div(w.window, "floor");
  w.items = clicks.reshape({-1}).index_select(0, w.slots);
  w.positions = positions.reshape({-1}).index_select(0, w.slots);
  return w;
}

}  // namespace

std::shared_ptr<const BatchInputs> SasRecImpl::prepare(const SessionBatch& batch, const torch::Device& device) const {
  auto w = window_clicks(batch.items_on_cpu(), batch.lengths_on_cpu(), options_.max_length);
  for (auto* t : {&w.items, &w.positions, &w.slots, &w.sessions, &w.kept}) *t = to_device(*t, device);
  return std::make_shared<PreparedInputs<WindowClicks>>(std::move(w));
}

SessionRepresentation SasRecImpl::encode(const SessionBatch& batch) {
  const auto& weight = embedding->weight;
  const auto dtype = weight.scalar_type();
  const auto inputs = inputs_for(batch, weight.device());
  const auto& w = prepared_as<WindowClicks>(*inputs);
  const std::int64_t b = w.kept.size(0), rows = b * w.window;
  auto x = item_lookup(weight, w.items) * std::sqrt(static_cast<double>(options_.hidden_size)) + pos_embedding(w.positions);  // [P, d]
  x = dropout_packed(x, w.slots, rows, options_.dropout, is_training(), options_.padded_dropout_masks);
  for (const auto& block : *blocks) x = block->as<SasRecBlock>()->forward(x, w.slots, w.kept, w.window);
  const auto out = normalize(final_norm, x);  // [P, d]

  SessionRepresentation rep;
  rep.local = out.index_select(0, w.kept.cumsum(0) - 1);  // each row's last kept click
  rep.global = segment_sum(out, w.sessions, b) / w.kept.to(dtype).unsqueeze(1);
  rep.clicks = out;
  rep.click_sessions = w.sessions;
  return rep;
}

torch::Tensor SasRecImpl::readout(const SessionRepresentation& rep) {
  return hybrid_readout(linear_transform, rep, options_.nonhybrid, rep.local);
}

torch::Tensor SasRecImpl::score(const torch::Tensor& session, const SessionRepresentation& /*rep*/) {
  return embedding_scores(session, embedding->weight, options_.n_items);
}

LinearScorer SasRecImpl::linear_scorer() const {
  return embedding_scorer(embedding->weight, options_.n_items);
}

SessionEncoder make_sasrec(const ModelContext& ctx, const Config& settings) {
  return std::make_shared<SasRecImpl>(SasRecOptions::from_config(ctx, settings), ctx.seed);
}

}  // namespace llm4sbr::models
