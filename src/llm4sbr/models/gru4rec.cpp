#include "llm4sbr/models/gru4rec.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <memory>
#include <tuple>

#include "llm4sbr/models/model_settings.hpp"
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

SessionRepresentation Gru4RecImpl::encode(const SessionBatch& batch) {
  const auto& weight = embedding->weight;
  const auto device = weight.device();
  const auto items = batch.items.to(device);
  const auto mask = batch.mask.to(device);
  const auto lengths = batch.lengths.to(device);

  const auto input =
      F::dropout(embedding(items), F::DropoutFuncOptions().p(options_.dropout_embed).training(is_training()));
  // Packed, so that the GRU steps over real clicks only: a batch is padded to its longest prefix (up to
  // 200 clicks on Beauty) while most prefixes are a few clicks long, and the padded run cost 10x more.
  namespace rnn = torch::nn::utils::rnn;
  const auto packed = rnn::pack_padded_sequence(input, batch.lengths_on_cpu(), /*batch_first=*/true,
                                                /*enforce_sorted=*/false);
  const auto outputs = std::get<0>(rnn::pad_packed_sequence(std::get<0>(gru->forward_with_packed_input(packed)),
                                                            /*batch_first=*/true, 0.0, items.size(1)));  // [B, L, d]
  const auto states = F::dropout(outputs, F::DropoutFuncOptions().p(options_.dropout_hidden).training(is_training()));
  const auto real = mask.unsqueeze(-1).to(weight.scalar_type());

  SessionRepresentation rep;
  rep.local = gather_rows(states, lengths - 1);
  rep.global = (states * real).sum(1) / lengths.to(weight.scalar_type()).unsqueeze(1);
  std::tie(rep.clicks, rep.click_sessions) = pack_clicks(states, mask);
  return rep;
}

torch::Tensor Gru4RecImpl::readout(const SessionRepresentation& rep) {
  return hybrid_readout(linear_transform, rep, options_.nonhybrid, rep.local);
}

torch::Tensor Gru4RecImpl::score(const torch::Tensor& session, const SessionRepresentation& /*rep*/) {
  return embedding_scores(session, embedding->weight, options_.n_items) + item_bias;
}

SessionEncoder make_gru4rec(const ModelContext& ctx, const Config& settings) {
  return std::make_shared<Gru4RecImpl>(Gru4RecOptions::from_config(ctx, settings), ctx.seed);
}

}  // namespace llm4sbr::models
