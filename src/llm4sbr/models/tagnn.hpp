// TAGNN (Yu et al., SIGIR'20 short paper) as the official code computes it (backbone-notes §4): SR-GNN's
// session graph and gated GNN, a softmaxed attentive readout, and a target-aware attention that gives
// every candidate item its own view of the session.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/models/segments.hpp"
#include "llm4sbr/models/session_encoder.hpp"
#include "llm4sbr/models/srgnn.hpp"

namespace llm4sbr::models {

/// Hyper-parameters of TAGNN: SR-GNN's plus the padding switch.
struct TagnnOptions {
  SrGnnOptions base;  ///< hidden_size, n_items, step (1), nonhybrid (false): read as SR-GNN reads them
  /// false (default, the fix): both softmaxes run over the session's real clicks only.
  /// true: reproduce the reference, whose softmaxes also run over the padding up to a dataset-wide length
  /// (backbone-notes §4 and §2.8); see pad_length.
  bool faithful_padding = false;
  /// The padded length L of faithful_padding. 0 (default): as the reference, the longest prefix of the
  /// training split while training and the longest prefix of the valid and test splits in eval mode
  /// (which needs ModelContext::dataset). > 0: this length in both modes. A session longer than L is an
  /// error. Unused without faithful_padding.
  std::int64_t pad_length = 0;
  std::int64_t train_pad_length = 0;  ///< resolved by from_config (faithful_padding only)
  std::int64_t eval_pad_length = 0;   ///< resolved by from_config (faithful_padding only)

  /// Reads SR-GNN's keys plus `faithful_padding` and `pad_length`, and resolves the two padded lengths.
  /// Throws ConfigError (naming the key) for a bad value, or for faithful_padding with pad_length 0 and no
  /// dataset in ctx.
  static TagnnOptions from_config(const ModelContext& ctx, const Config& settings);
};

/// TAGNN as a SessionEncoder, built on SR-GNN (same parameters and names, plus linear_t).
///
/// encode: H = GatedGnn(E[nodes]); v_t = H[node of click t] (rep.clicks, packed [P, d]); local = v_n (last click);
///   α_t = softmax_t(qᵀ σ(W1 v_n + b1 + W2 v_t + b2)) over the session's clicks (faithful_padding: also over
///   L − n padded positions holding the GNN state of the edgeless node "item 0", the same for every session);
///   global = s_g = Σ_t α_t v_t over the real clicks.
/// readout: SR-GNN's, s_h = W3 [global ; local] + b3 (nonhybrid: global).
/// score: for every candidate i with layer-0 embedding e_i (E[1:]) and the clicks' states h̃_t = v_t,
///   β_{i,t} = softmax_t(e_iᵀ W_t h̃_t) over the session's clicks (faithful_padding: padded positions have
///   h̃ = 0, so each adds exp(0) to the denominator only),
///   score_i = e_iᵀ (s + Σ_t β_{i,t} h̃_t) = e_iᵀ s + Σ_t β_{i,t} (e_iᵀ h̃_t)   -> [B, N].
///   Computed from the two [P, N] products (W_t h̃) Eᵀ and h̃ Eᵀ with segment_softmax_sum (its fused path:
///   three passes over [P, N] forward, one backward), never forming the reference's [B, N, d]. The target term
///   reads rep.clicks, so a head that gates rep.global/rep.local before readout changes s only, and the
///   target-attention term is added unchanged (backbone-notes §8).
class TagnnImpl : public SrGnnImpl {
 public:
  explicit TagnnImpl(TagnnOptions options, std::uint64_t seed = 0);

  SessionRepresentation encode(const SessionBatch& batch) override;
  torch::Tensor score(const torch::Tensor& session, const SessionRepresentation& rep) override;
  /// None: the target attention makes each item's score depend on the clicks (SR-GNN's table does not apply).
  LinearScorer linear_scorer() const override { return {}; }

  std::string name() const override { return "tagnn"; }
  const TagnnOptions& tagnn_options() const { return tagnn_options_; }
  /// The padded length L used now (train or eval mode); 0 without faithful_padding.
  std::int64_t current_pad_length() const;

  torch::nn::Linear linear_t{nullptr};  ///< W_t [d, d], no bias (target attention)

 private:
  /// Padded positions per session, L − n_b ([B] int64), from the clicks' sessions; undefined by default.
  torch::Tensor padding_counts(const torch::Tensor& click_sessions, std::int64_t batch_size) const;

  TagnnOptions tagnn_options_;
};
TORCH_MODULE(Tagnn);

}  // namespace llm4sbr::models
