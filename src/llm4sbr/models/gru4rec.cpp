#include "llm4sbr/models/gru4rec.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <memory>
#include <tuple>
#include <vector>

#include "llm4sbr/models/batch.hpp"
#include "llm4sbr/models/dropout.hpp"
#include "llm4sbr/models/model_settings.hpp"
#include "llm4sbr/models/packed_gru.hpp"
#include "llm4sbr/models/readout.hpp"
#include "llm4sbr/models/segments.hpp"

namespace llm4sbr::models {

namespace F = torch::nn::functional;

Gru4RecOptions Gru4RecOptions::from_config(const ModelContext& ctx, const Config& settings) {
  const ModelSettings keys("gru4rec", settings);
  Gru4RecOptions o;
  o.n_items = keys.n_items(ctx);
  o.hidden_size = keys.hidden_size(ctx);
  o.layers = keys.integer("layers", o.layers, 1);
  o.dropout_embed = keys.rate("dropout_embed", o.dropout_embed);
  o.dropout_hidden = keys.rate("dropout_hidden", o.dropout_hidden);
  o.nonhybrid = keys.flag("nonhybrid", o.nonhybrid);
  o.padded_dropout_masks = keys.flag("padded_dropout_masks", o.padded_dropout_masks);
  keys.reject_unknown_keys();
  return o;
}

Gru4RecImpl::Gru4RecImpl(Gru4RecOptions options, std::uint64_t seed) : options_(options) {
  const std::int64_t d = options_.hidden_size;
  embedding = register_module("embedding", torch::nn::Embedding(options_.n_items + 1, d));
  gru = register_module("gru", torch::nn::GRU(torch::nn::GRUOptions(d, d)
                                                  .num_layers(options_.layers)
                                                  .batch_first(true)
                                                  .dropout(options_.layers > 1 ? options_.dropout_hidden : 0.0)));
  item_bias = register_parameter("item_bias", torch::zeros({options_.n_items}));
  // Registered last (the other parameters draw the same values as without it), and in nonhybrid mode
  // too, so that both variants share one checkpoint layout.
  linear_transform = register_module("linear_transform", torch::nn::Linear(2 * d, d));
  init_official(seed);
}

// The official GRU4Rec's initialisation (init_parameter_matrix in hidasib/GRU4Rec_PyTorch_Official):
// U(−σ, σ) with σ = √(6 / (rows + cols)) for the item table, σ = √(6 / (rows + cols/3)) for the GRU's
// stacked gate matrices [3d, ·] (the code's dim1_scale = 3), and zero biases (item bias included).
void Gru4RecImpl::init_official(std::uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  torch::NoGradGuard no_grad;
  for (const auto& item : named_parameters()) {
    auto p = item.value();
    auto draw = torch::zeros(p.sizes(), p.options().device(torch::kCPU));
    if (p.dim() == 2) {
      const double cols = static_cast<double>(p.size(1)) / (item.key().starts_with("gru.") ? 3.0 : 1.0);
      const double sigma = std::sqrt(6.0 / (static_cast<double>(p.size(0)) + cols));
      draw.uniform_(-sigma, sigma, gen);
    }
    p.copy_(draw);
  }
}

// The GRU's layers over packed clicks: packed_gru_layer on a CPU (float32/64), torch::nn::GRU elsewhere. Between
// layers, dropout on the packed rows as torch's GRU applies it (the same draws from the same seed).
torch::nn::utils::rnn::PackedSequence Gru4RecImpl::run_gru(const torch::nn::utils::rnn::PackedSequence& packed) {
  const auto& x = packed.data();
  const bool own = x.device().is_cpu() && (x.scalar_type() == torch::kFloat32 || x.scalar_type() == torch::kFloat64);
  if (!own) return std::get<0>(gru->forward_with_packed_input(packed));
  auto params = gru->named_parameters();
  auto data = x;
  for (std::int64_t l = 0; l < options_.layers; ++l) {
    if (l > 0) data = fast_dropout(data, gru->options.dropout(), is_training());  // torch::nn::GRU's, between layers
    const auto layer = std::to_string(l);
    data = packed_gru_layer(data, packed.batch_sizes(), params["weight_ih_l" + layer], params["weight_hh_l" + layer],
                            params["bias_ih_l" + layer], params["bias_hh_l" + layer]);
  }
  return torch::nn::utils::rnn::PackedSequence(data, packed.batch_sizes(), packed.sorted_indices(),
                                               packed.unsorted_indices());
}

namespace {

// Where the rows of a PackedSequence (time-major: batch_sizes[t] rows for step t, sessions sorted by decreasing
// length) belong in the batch: slots [P] = b · L + t, their place in the padded [B, L] layout (the dropout
// masks are drawn over it); session_major [P], the packed rows in session order, positions in order
// (SessionRepresentation::clicks); click_sessions [P], each of those rows' session; last [B], the packed row
// of each session's last click. lengths [B] int64 on the CPU, those the sequence was packed with. On `device`.
struct PackedLayout {
  torch::Tensor slots, session_major, click_sessions, last;
};

PackedLayout packed_layout(const torch::nn::utils::rnn::PackedSequence& packed, const torch::Tensor& lengths,
                           std::int64_t width, torch::Device device) {
  const auto sessions = lengths.size(0);
  const auto sizes = packed.batch_sizes();
  const auto* n = sizes.data_ptr<std::int64_t>();
  const auto sorted = packed.sorted_indices().cpu();  // defined: packed with enforce_sorted = false
  const auto* order = sorted.data_ptr<std::int64_t>();
  const auto rows = packed.data().size(0);
  const auto starts = lengths.cumsum(0) - lengths;  // each session's first row in session order
  const auto* start = starts.data_ptr<std::int64_t>();
  auto slots = torch::empty({rows}, torch::kInt64), major = torch::empty({rows}, torch::kInt64);
  auto click_sessions = torch::empty({rows}, torch::kInt64), last = torch::empty({sessions}, torch::kInt64);
  auto* slot = slots.data_ptr<std::int64_t>();
  auto* in_order = major.data_ptr<std::int64_t>();
  auto* owner = click_sessions.data_ptr<std::int64_t>();
  auto* final_row = last.data_ptr<std::int64_t>();
  std::int64_t p = 0;
  for (std::int64_t t = 0; t < sizes.numel(); ++t)
    for (std::int64_t i = 0; i < n[t]; ++i, ++p) {
      const auto b = order[i];
      const auto at = start[b] + t;  // this click's row in session order
      slot[p] = b * width + t;
      in_order[at] = p;
      owner[at] = b;
      final_row[b] = p;  // the last step that has this session wins
    }
  return {to_device(slots, device), to_device(major, device), to_device(click_sessions, device), to_device(last, device)};
}

/// A batch packed for the GRU (Gru4RecImpl::prepare). Packed on the CPU, so that the layout, which walks the
/// step sizes and the sort order on the host, needs no copy back from a GPU.
struct GruBatch {
  torch::Tensor items;             ///< [P] model ids, time-major (the packed sequence's data)
  torch::Tensor batch_sizes;       ///< [T] sessions a step, on the CPU (as PackedSequence wants it)
  torch::Tensor sorted_indices;    ///< [B]
  torch::Tensor unsorted_indices;  ///< [B]
  PackedLayout layout;
  torch::Tensor lengths;  ///< [B] int64
  std::int64_t width = 0;  ///< L of the padded batch (the dropout masks' layout)
};

}  // namespace

std::shared_ptr<const BatchInputs> Gru4RecImpl::prepare(const SessionBatch& batch, const torch::Device& device) const {
  const auto items = batch.items_on_cpu();
  const auto lengths = batch.lengths_on_cpu();  // int64
  const auto packed = torch::nn::utils::rnn::pack_padded_sequence(items, lengths, /*batch_first=*/true,
                                                                   /*enforce_sorted=*/false);
  return std::make_shared<PreparedInputs<GruBatch>>(GruBatch{
      to_device(packed.data(), device), packed.batch_sizes(), to_device(packed.sorted_indices(), device),
      to_device(packed.unsorted_indices(), device), packed_layout(packed, lengths, items.size(1), device),
      to_device(lengths, device), items.size(1)});
}

SessionRepresentation Gru4RecImpl::encode(const SessionBatch& batch) {
  const auto& weight = embedding->weight;
  // Packed from the item ids on: the GRU steps over real clicks only, and nothing is computed at padding (a
  // batch is padded to its longest prefix, up to 200 clicks on Beauty, while most prefixes are a few clicks
  // long: the padded run cost 10x more). The dropout masks are drawn for the real clicks only, or with
  // padded_dropout_masks over the padded [B, L, d] as the padded model drew them.
  const auto inputs = inputs_for(batch, weight.device());
  const auto& g = prepared_as<GruBatch>(*inputs);
  const auto sessions = g.lengths.size(0);
  auto dropout = [&](const torch::Tensor& x, double p) {
    return dropout_packed(x, g.layout.slots, sessions * g.width, p, is_training(), options_.padded_dropout_masks);
  };
  const auto input = dropout(item_lookup(weight, g.items), options_.dropout_embed);
  const auto outputs =
      run_gru(torch::nn::utils::rnn::PackedSequence(input, g.batch_sizes, g.sorted_indices, g.unsorted_indices));
  const auto states = dropout(outputs.data(), options_.dropout_hidden);  // [P, d], time-major

  SessionRepresentation rep;
  rep.clicks = states.index_select(0, g.layout.session_major);
  rep.click_sessions = g.layout.click_sessions;
  rep.local = states.index_select(0, g.layout.last);
  rep.global = segment_sum(rep.clicks, rep.click_sessions, sessions) / g.lengths.to(weight.scalar_type()).unsqueeze(1);
  return rep;
}

torch::Tensor Gru4RecImpl::readout(const SessionRepresentation& rep) {
  return hybrid_readout(linear_transform, rep, options_.nonhybrid, rep.local);
}

torch::Tensor Gru4RecImpl::score(const torch::Tensor& session, const SessionRepresentation& /*rep*/) {
  return embedding_scores(session, embedding->weight, options_.n_items) + item_bias;
}

LinearScorer Gru4RecImpl::linear_scorer() const {
  return embedding_scorer(embedding->weight, options_.n_items, item_bias);
}

SessionEncoder make_gru4rec(const ModelContext& ctx, const Config& settings) {
  return std::make_shared<Gru4RecImpl>(Gru4RecOptions::from_config(ctx, settings), ctx.seed);
}

}  // namespace llm4sbr::models
