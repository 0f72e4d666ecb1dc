#include "llm4sbr/enhance/llm4sbr_head.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <set>

#include "llm4sbr/core/error.hpp"
#include "llm4sbr/models/init.hpp"

namespace llm4sbr::enhance {

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

models::ForwardOutput Llm4sbrHeadImpl::forward(const models::SessionBatch& batch) { return pass(batch, true); }

models::ForwardOutput Llm4sbrHeadImpl::forward_unscored(const models::SessionBatch& batch) {
  if (!linear_scorer().defined()) return RecommenderImpl::forward_unscored(batch);
  return pass(batch, false);
}

models::ForwardOutput Llm4sbrHeadImpl::pass(const models::SessionBatch& batch, bool score) {
  models::SessionRepresentation rep = encoder_->encode(batch);
  // The session vector and what goes with it; the scores of every item only when asked.
  const auto scored = [&](torch::Tensor session, const models::SessionRepresentation& r, torch::Tensor aux,
                          torch::Tensor alphas) {
    models::ForwardOutput out{torch::Tensor(), std::move(aux), std::move(alphas), std::move(session)};
    if (score) out.scores = encoder_->score(out.session, r);
    return out;
  };
  const auto n_views = static_cast<std::int64_t>(options_.views.size());
  if (n_views == 0) return scored(encoder_->readout(rep), rep, rep.aux_loss, {});

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
    return scored(projected.mean(1), rep, {}, {});
  }

  models::SessionRepresentation gated = rep;
  std::vector<torch::Tensor> anchors, weights;
  std::vector<torch::Tensor*> slots;  // where each view's gated representation goes
  for (std::int64_t v = 0; v < n_views; ++v) {
    const auto i = static_cast<std::size_t>(v);
    slots.push_back(anchor_of(options_.views[i]) == Anchor::kGlobal ? &gated.global : &gated.local);
    anchors.push_back(*slots.back());
    weights.push_back(gates[i]->weight);
  }
  // DirectAU trains the projection (Eq. 15); evaluation and serving only need the gates.
  double au_weight = 0;
  if (is_training() && options_.align_uniform && options_.tau > 0)
    au_weight = options_.average_views ? options_.tau / static_cast<double>(n_views) : options_.tau;
  auto views = gate_views(projected, anchors, weights, au_weight);  // Eq. 8-11
  for (std::size_t v = 0; v < slots.size(); ++v) *slots[v] = views.gated[v];
  torch::Tensor aux = rep.aux_loss;
  if (views.au.defined()) aux = aux.defined() ? aux + views.au : views.au;
  return scored(encoder_->readout(gated), gated, aux, views.alphas);
}

std::string Llm4sbrHeadImpl::label() const {
  if (options_.without_sbr) return "LLM-Infer";
  return fmt::format("LLM4SBR({})", models::display_name(encoder_->name()));
}

}  // namespace llm4sbr::enhance
