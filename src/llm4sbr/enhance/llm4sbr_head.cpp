#include "llm4sbr/enhance/llm4sbr_head.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <limits>
#include <set>

#include "llm4sbr/core/error.hpp"
#include "llm4sbr/models/init.hpp"

namespace llm4sbr::enhance {

namespace F = torch::nn::functional;

torch::Tensor alignment_loss(const torch::Tensor& x, const torch::Tensor& y) {
  const auto xn = F::normalize(x, F::NormalizeFuncOptions().dim(-1));
  const auto yn = F::normalize(y, F::NormalizeFuncOptions().dim(-1));
  return (xn - yn).pow(2).sum(-1).mean(-1);
}

torch::Tensor uniformity_loss(const torch::Tensor& x) {
  const auto b = x.size(-2);
  if (b < 2) return torch::zeros(x.sizes().slice(0, x.dim() - 2), x.options());
  const auto xn = F::normalize(x, F::NormalizeFuncOptions().dim(-1));
  // The pairs' squared distances ‖x̂_i‖² + ‖x̂_j‖² − 2 x̂_i·x̂_j from one [B, B] product (torch::pdist's
  // backward pass, a loop over the pairs, cost more than the product); clamped at 0 against rounding.
  const auto squares = xn.pow(2).sum(-1);
  const auto sq = (squares.unsqueeze(-1) + squares.unsqueeze(-2) - 2 * xn.matmul(xn.transpose(-1, -2))).clamp_min(0);
  const auto pairs = torch::ones({b, b}, torch::TensorOptions().dtype(torch::kBool).device(x.device())).triu(1);
  // log mean exp(-2 d²) over the pairs i < j = logsumexp(-2 d²) - log(#pairs): the same value without underflow
  // (the other entries are -inf: no weight, no gradient).
  const auto logits = (-2.0 * sq).masked_fill(pairs.logical_not(), -std::numeric_limits<double>::infinity());
  return torch::logsumexp(logits.flatten(-2), -1) - std::log(static_cast<double>(b * (b - 1) / 2));
}

Anchor anchor_of(const std::string& view) {
  if (view == "long" || view == "normal") return Anchor::kGlobal;
  if (view == "short") return Anchor::kLocal;
  throw ConfigError(fmt::format("the LLM4SBR head knows the views long, short and normal, not '{}'", view));
}

const SettingsSchema& enhance_settings() {
  using enum SettingType;
  static const SettingsSchema schema{"enhance",
                                     {{"enabled", kBool}, {"baseline", kBool}, {"tau", kNumber}, {"align_uniform", kBool},
                                      {"average_views", kBool}, {"without_sbr", kBool}}};
  return schema;
}

HeadOptions HeadOptions::from_config(const Config& cfg, std::vector<std::string> views, std::int64_t text_dim) {
  HeadOptions o;
  o.views = std::move(views);
  o.text_dim = text_dim;
  o.tau = cfg.get<double>("enhance.tau", o.tau);
  o.align_uniform = cfg.get<bool>("enhance.align_uniform", o.align_uniform);
  o.average_views = cfg.get<bool>("enhance.average_views", o.average_views);
  o.without_sbr = cfg.get<bool>("enhance.without_sbr", o.without_sbr);
  if (!(o.tau >= 0) || !std::isfinite(o.tau)) throw ConfigError(fmt::format("enhance.tau = {} must be >= 0", o.tau));
  if (!o.views.empty() && o.text_dim < 1) throw ConfigError("the LLM4SBR head needs intents of width >= 1");
  std::set<Anchor> used;
  for (const auto& v : o.views)
    if (!used.insert(anchor_of(v)).second)
      throw ConfigError(fmt::format("intent views [{}]: two views would gate the same representation (long and normal "
                                    "both pair with the global one); use long+short or normal alone",
                                    fmt::join(o.views, ", ")));
  if (o.without_sbr && o.views.empty()) throw ConfigError("enhance.without_sbr needs at least one intent view");
  return o;
}

Llm4sbrHeadImpl::Llm4sbrHeadImpl(models::SessionEncoder encoder, HeadOptions options, std::uint64_t seed)
    : encoder_(std::move(encoder)), options_(std::move(options)) {
  register_module("encoder", encoder_);
  const auto d = encoder_->hidden_size();
  if (options_.views.empty()) return;  // the plain backbone: no head parameters at all
  projection = register_module("projection", torch::nn::Linear(options_.text_dim, d));
  models::init_uniform_reference(*projection, d, seed ^ 0x5eedu);
  for (std::size_t v = 0; v < options_.views.size(); ++v) {
    gates.push_back(register_module("gate_" + options_.views[v], torch::nn::Linear(torch::nn::LinearOptions(d, 1).bias(false))));
    models::init_uniform_reference(*gates.back(), d, seed + 1 + v);
  }
  const auto device = encoder_->parameters().front().device();
  to(device);
}

models::ForwardOutput Llm4sbrHeadImpl::forward(const models::SessionBatch& batch) {
  models::SessionRepresentation rep = encoder_->encode(batch);
  const auto n_views = static_cast<std::int64_t>(options_.views.size());
  if (n_views == 0) return {encoder_->score(encoder_->readout(rep), rep), rep.aux_loss};

  if (!batch.intents.defined())
    throw Error("the LLM4SBR head got a batch without intents (run the intent stage, or set enhance.enabled=false)");
  if (batch.intents.dim() != 3 || batch.intents.size(0) != batch.size() || batch.intents.size(1) != n_views ||
      batch.intents.size(2) != options_.text_dim)
    throw Error(fmt::format("the LLM4SBR head needs intents [{}, {}, {}] (batch, views {}, d_text), got [{}]", batch.size(),
                            n_views, options_.text_dim, fmt::join(options_.views, "/"),
                            fmt::join(batch.intents.sizes(), ", ")));

  const auto projected = projection(batch.intents.to(rep.global.device(), rep.global.scalar_type()));  // [B, V, d]
  if (options_.without_sbr) {
    // LLM-Infer: the session is what the LLM said it is, nothing of the behaviour model.
    return {encoder_->score(projected.mean(1), rep), torch::Tensor()};
  }

  models::SessionRepresentation gated = rep;
  std::vector<torch::Tensor> anchors, alphas;
  for (std::int64_t v = 0; v < n_views; ++v) {
    const auto p = projected.select(1, v);  // [B, d] h̃_v
    const bool global = anchor_of(options_.views[static_cast<std::size_t>(v)]) == Anchor::kGlobal;
    const auto& anchor = global ? rep.global : rep.local;  // [B, d]
    anchors.push_back(anchor);
    const auto alpha = gates[static_cast<std::size_t>(v)](torch::sigmoid(anchor + p));  // [B, 1] Eq. 10-11
    (global ? gated.global : gated.local) = anchor * alpha;
    alphas.push_back(alpha);
  }
  torch::Tensor aux = rep.aux_loss;
  if (is_training() && options_.align_uniform && options_.tau > 0) {
    // Σ_v align(h̃_v, anchor_v) + ½ (unif(h̃_v) + unif(anchor_v)), every view at once ([V, B, d] stacks).
    const auto intents = projected.transpose(0, 1), anchored = torch::stack(anchors);
    const auto uniformity = uniformity_loss(torch::cat({intents, anchored}));  // [2V]
    auto au = (alignment_loss(intents, anchored) +
               0.5 * (uniformity.narrow(0, 0, n_views) + uniformity.narrow(0, n_views, n_views)))
                  .sum();
    if (options_.average_views) au = au / static_cast<double>(n_views);
    au = options_.tau * au;
    aux = aux.defined() ? aux + au : au;
  }
  return {encoder_->score(encoder_->readout(gated), gated), aux, torch::cat(alphas, 1)};
}

std::string Llm4sbrHeadImpl::label() const {
  if (options_.without_sbr) return "LLM-Infer";
  return fmt::format("LLM4SBR({})", models::display_name(encoder_->name()));
}

}  // namespace llm4sbr::enhance
