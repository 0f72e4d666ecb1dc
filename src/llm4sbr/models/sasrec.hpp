// SASRec (Kang & McAuley, ICDM'18, "Self-Attentive Sequential Recommendation") as the authors' code
// computes it (kang205/SASRec, modules.py/model.py): item + learned position embeddings, a stack of
// causal self-attention blocks, and the output at the last click scores every item.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/models/session_encoder.hpp"

namespace llm4sbr::models {

/// Hyper-parameters of SASRec (configs/models/sasrec.yaml).
struct SasRecOptions {
  std::int64_t hidden_size = 100;  ///< d (the LLM4SBR paper's 100; Kang & McAuley used 50)
  std::int64_t n_items = 0;        ///< N; the embedding table has N + 1 rows (row 0 = padding)
  std::int64_t max_length = 50;    ///< n: the last max_length clicks of a longer session are kept
  std::int64_t blocks = 2;         ///< b, self-attention blocks
  std::int64_t heads = 1;          ///< attention heads (d must be divisible by it)
  double dropout = 0.5;            ///< 0.5 for the paper's sparse datasets (Beauty), 0.2 for ML-1M
  /// false (default): the session vector is W3 [global ; local] + b3, LLM4SBR's fusion (paper Eq. 12)
  /// over this model's two anchors, so gating either anchor changes the scores; true: the model's own
  /// readout s = F at the last click, the paper's model (it ignores global)
  bool nonhybrid = false;
  /// true: the per-position dropouts draw their masks over the whole [B, n, d] window (dropout_packed), so a
  /// seed drops what the padded model dropped (the results of earlier versions); false (default): over the
  /// real clicks (and the attention weights' for the pairs a real click attends to) only.
  bool padded_dropout_masks = false;

  /// Reads `hidden_size`, `max_length`, `blocks`, `heads`, `dropout`, `nonhybrid` and `padded_dropout_masks`
  /// from a model config section;
  /// hidden_size defaults to ctx.hidden_size and n_items comes from ctx. Throws ConfigError (naming the
  /// key) for a bad value.
  static SasRecOptions from_config(const ModelContext& ctx, const Config& settings);
};

/// One SASRec block (the authors' code): with x [B, n, d] and the real positions m,
///   q = LN₁(x),  x = q + Attention(q W_Q + b_Q, x W_K + b_K, x W_V + b_V)     (causal, padding keys masked,
///                                                                            dropout on the weights,
///                                                                            no output projection)
///   x = LN₂(x),  x = x + Dropout(W₂ Dropout(ReLU(W₁ x + b₁)) + b₂)   (at the real positions m only).
class SasRecBlockImpl : public torch::nn::Module {
 public:
  SasRecBlockImpl(std::int64_t hidden_size, std::int64_t heads, double dropout, bool padded_dropout_masks = false);

  /// x [P, d]: the real positions of a [B, n] window, packed row by row, at flat slots [P] of B·n; kept [B]
  /// int64: row b's real positions (0 … kept[b] − 1, kept[b] ≥ 1), n = window. Returns [P, d]. Everything runs on
  /// the P real rows only, attention on each session's causal pairs (causal_attention). The dropouts draw their
  /// masks for the real rows and the pairs they attend to, or with padded_dropout_masks for the whole
  /// [B, n, d] window and [B, h, n, n] weights, as the padded computation did (dropout_packed, attention_keep).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& slots, const torch::Tensor& kept,
                        std::int64_t window);

  torch::nn::LayerNorm attention_norm{nullptr}, ffn_norm{nullptr};
  torch::nn::Linear query{nullptr}, key{nullptr}, value{nullptr};
  torch::nn::Linear ffn_in{nullptr}, ffn_out{nullptr};  ///< the code's kernel-1 Conv1d layers

 private:
  std::int64_t heads_;
  double dropout_;
  bool padded_dropout_masks_;
};
TORCH_MODULE(SasRecBlock);

/// SASRec as a SessionEncoder.
///
/// Each session keeps its last n' = min(length, max_length) clicks (a longer prefix is cut from the
/// front, as the reference's fixed-length window does). Positions follow the reference, which pads on
/// the left to max_length: click t of the window (0-based) has position max_length - n' + t, so the last
/// click always has position max_length - 1.
///   x = Dropout(E[i] · √d + P[pos]) ⊙ m,  x = Block_b(…Block_1(x)),  F = LN(x).
/// encode: local = F at the last click; global = the mean of F over the window's real clicks (SASRec
/// has no session vector of its own; this is the long-term anchor for the LLM4SBR head); clicks = F at
/// every kept click; no aux loss. readout: s = W3 [global ; local] + b3 (the LLM4SBR head gates both anchors
/// before it); nonhybrid: s = local (SASRec predicts from the last position).
/// score: s · E[1:]ᵀ -> [B, N] (SASRec shares the item embedding between input and prediction).
/// Padding never reaches a real position: keys at padding are masked and attention is causal, so a
/// session's scores do not depend on its batch.
///
/// Kang & McAuley train every position against one sampled negative with binary cross-entropy, with
/// Adam(β₂ = 0.98) and no weight decay; here, like every backbone, the trainer applies cross-entropy over
/// all items to the last position of each augmented prefix, with its own Adam and train.l2.
/// Initialisation as the authors' TensorFlow code: Glorot-uniform for the embedding tables and every
/// weight matrix, zero biases, LayerNorm at (1, 0) with ε = 1e-8, drawn from a generator seeded by `seed`.
class SasRecImpl : public SessionEncoderImpl {
 public:
  explicit SasRecImpl(SasRecOptions options, std::uint64_t seed = 0);

  SessionRepresentation encode(const SessionBatch& batch) override;
  /// The batch's real clicks in its window (items, positions, slots, sessions, kept counts) on `device`.
  std::shared_ptr<const BatchInputs> prepare(const SessionBatch& batch, const torch::Device& device) const override;
  torch::Tensor readout(const SessionRepresentation& rep) override;
  torch::Tensor score(const torch::Tensor& session, const SessionRepresentation& rep) override;
  LinearScorer linear_scorer() const override;

  std::int64_t hidden_size() const override { return options_.hidden_size; }
  std::int64_t n_items() const override { return options_.n_items; }
  std::string name() const override { return "sasrec"; }
  const SasRecOptions& options() const { return options_; }

  torch::nn::Embedding embedding{nullptr};      ///< E, [N + 1, d]
  torch::nn::Embedding pos_embedding{nullptr};  ///< P, [max_length, d]
  torch::nn::ModuleList blocks{nullptr};        ///< SasRecBlock × blocks
  torch::nn::LayerNorm final_norm{nullptr};
  torch::nn::Linear linear_transform{nullptr};  ///< W3, b3 [d, 2d] (hybrid readout only)

 private:
  SasRecOptions options_;
};
TORCH_MODULE(SasRec);

}  // namespace llm4sbr::models
