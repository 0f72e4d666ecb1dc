// The LLM4SBR head (paper §4.2, Eq. 7-15, Algorithm 1 lines 8-22): wraps any SessionEncoder and
// enhances its session representation with the localized LLM intents of Stage 1.
//
//   h̃_v   = T h_v                                   (Eq. 7; one T [d, d_text] + bias shared by all views)
//   L_a   = E ‖ĥ̃_v − ĥ_anchor‖²                      (Eq. 8, DirectAU alignment on L2-normalised vectors)
//   L_u   = ½ [log E exp(−2‖ĥ̃_i − ĥ̃_j‖²) + log E exp(−2‖ĥ_i − ĥ_j‖²)]   (Eq. 9, pairs within the batch)
//   α_v   = q_vᵀ σ(anchor + h̃_v)                     (Eq. 10-11; a scalar gate per session, unbounded)
//   H     = readout(α_long · H^g, α_short · H^l)      (Eq. 12; SR-GNN's readout is W [H^g ; H^l] + b)
//   L     = CE + τ Σ_v (L_a + L_u)                     (Eq. 15, τ = 0.1; views summed like the code)
//
// Anchors: the long-term view (and the single "normal" view) pairs with the global representation H^g,
// the short-term view with the local representation H^l (paper Fig. 1, reference code). A representation
// no view pairs with passes ungated. The gated pair goes through the backbone's own readout, so every
// backbone gets the head at the same place; for SR-GNN that readout is exactly the reference's fusion.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/models/session_encoder.hpp"
#include "llm4sbr/models/recommender.hpp"
#include "llm4sbr/core/settings.hpp"
#include "llm4sbr/enhance/view_gates.hpp"

namespace llm4sbr::enhance {

/// Which representation of the session a view is aligned with and gates.
enum class Anchor { kGlobal, kLocal };

/// The anchor of a view: "long" and "normal" -> global, "short" -> local. Throws ConfigError otherwise.
Anchor anchor_of(const std::string& view);

/// The keys of enhance.*: enabled and baseline (which rows a run trains) and the head's options below.
const SettingsSchema& enhance_settings();

struct HeadOptions {
  /// The views of the intents tensor, in its order (intents.npy's second axis). Empty = no enhancement:
  /// the head then computes exactly the plain backbone.
  std::vector<std::string> views{"long", "short"};
  std::int64_t text_dim = 0;    ///< d_text, the width of the intents
  double tau = 0.1;             ///< weight of alignment + uniformity (Eq. 15)
  bool align_uniform = true;    ///< false = the paper's "w/o AU" (gates and fusion only)
  bool average_views = false;   ///< false: Σ over views (reference code); true: mean (Algorithm 1 line 16)
  bool without_sbr = false;     ///< "w/o SBR" (LLM-Infer): score with the mean projected intent alone

  /// Reads `enhance.tau`, `enhance.align_uniform`, `enhance.average_views`, `enhance.without_sbr`.
  /// `views` and `text_dim` come from the intents. Throws ConfigError for a bad value or two views that
  /// share an anchor (long and normal).
  static HeadOptions from_config(const Config& cfg, std::vector<std::string> views, std::int64_t text_dim);
};

/// LLM4SBR(backbone) as a Recommender. forward() reads batch.intents [B, V, d_text] (float32, V =
/// options.views.size()) and returns the scores [B, N] and the weighted auxiliary loss (training mode
/// only, plus the backbone's own auxiliary loss). In eval mode a sample's scores depend on that sample
/// alone. Throws Error if the batch carries no intents or intents of the wrong shape.
class Llm4sbrHeadImpl : public models::RecommenderImpl {
 public:
  /// New head parameters are drawn from U(−1/√d, 1/√d) with `seed` (the reference's initialisation).
  Llm4sbrHeadImpl(models::SessionEncoder encoder, HeadOptions options, std::uint64_t seed);

  models::ForwardOutput forward(const models::SessionBatch& batch) override;
  models::ForwardOutput forward_unscored(const models::SessionBatch& batch) override;
  std::shared_ptr<const models::BatchInputs> prepare(const models::SessionBatch& batch,
                                                     const torch::Device& device) const override {
    return encoder_->prepare(batch, device);
  }
  models::LinearScorer linear_scorer() const override { return encoder_->linear_scorer(); }
  /// "LLM4SBR(SR-GNN)"; the w/o-SBR variant is "LLM-Infer".
  std::string label() const override;

  const models::SessionEncoder& encoder() const { return encoder_; }
  const HeadOptions& options() const { return options_; }

  torch::nn::Linear projection{nullptr};     ///< T, d_text -> d, with bias (Eq. 7)
  std::vector<torch::nn::Linear> gates;      ///< q_v, d -> 1 without bias, one per view (Eq. 10-11)

 private:
  models::ForwardOutput pass(const models::SessionBatch& batch, bool score);

  models::SessionEncoder encoder_;
  HeadOptions options_;
};
TORCH_MODULE(Llm4sbrHead);

}  // namespace llm4sbr::enhance
