// GRU4Rec (Hidasi et al., ICLR'16, "Session-based Recommendations with Recurrent Neural Networks") in
// the form of the authors' current code (hidasib/GRU4Rec_PyTorch_Official) with cross-entropy loss and
// `constrained_embedding` (one item table for input and output): item embedding -> dropout -> GRU over
// the session's clicks -> the last state scores every item, plus a per-item bias.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/models/session_encoder.hpp"

namespace llm4sbr::models {

/// Hyper-parameters of GRU4Rec (configs/models/gru4rec.yaml).
struct Gru4RecOptions {
  std::int64_t hidden_size = 100;  ///< d: embedding width = GRU state width (the LLM4SBR paper's 100)
  std::int64_t n_items = 0;        ///< N; the embedding table has N + 1 rows (row 0 = padding)
  std::int64_t layers = 1;         ///< stacked GRU layers
  double dropout_embed = 0.0;      ///< on the embedded clicks (the code's dropout_p_embed)
  double dropout_hidden = 0.4;     ///< on the GRU's outputs, and between layers (dropout_p_hidden)
  /// false (default): the session vector is W3 [global ; local] + b3, LLM4SBR's fusion (paper Eq. 12)
  /// over this model's two anchors, so gating either anchor changes the scores; true: the model's own
  /// readout s = h_n, the official code's model (it ignores global)
  bool nonhybrid = false;
  /// true: both dropouts draw their masks over the padded [B, L, d] batch (dropout_packed), so a seed drops
  /// what the padded model dropped (the results of earlier versions); false (default): over the real clicks
  /// only, ~10x fewer draws on Beauty
  bool padded_dropout_masks = false;

  /// Reads `hidden_size`, `layers`, `dropout_embed`, `dropout_hidden`, `nonhybrid` and `padded_dropout_masks`
  /// from a model config section;
  /// hidden_size defaults to ctx.hidden_size and n_items comes from ctx. Throws ConfigError (naming the
  /// key) for a bad value.
  static Gru4RecOptions from_config(const ModelContext& ctx, const Config& settings);
};

/// GRU4Rec as a SessionEncoder.
///
/// h_t = GRU(Dropout_e(E[i_t]), h_{t-1}) over the real clicks (PyTorch GRU equations, h_0 = 0), then
/// Dropout_h on the outputs.
/// encode: local = h_n, the top layer's state after the last click (the GRU runs on the packed clicks,
/// so it never steps over a row's padding, which costs nothing and cannot reach a state); global = the mean of h_t
/// over the real clicks (GRU4Rec has no session-level vector of its own; this average of its states is
/// the long-term anchor for the LLM4SBR head); clicks = every real h_t; no aux loss.
/// readout: s = W3 [global ; local] + b3 (the LLM4SBR head gates both anchors before it); nonhybrid:
/// s = local = h_n (GRU4Rec predicts from its last state).
/// score: s · E[1:]ᵀ + b -> [B, N], the output layer tied to the input embedding and a per-item bias b
/// (the official code's constrained_embedding with its B_y).
///
/// Differences from the official code: it trains session-parallel mini-batches that carry the state
/// from click to click with sampled negatives and Adagrad; here the trainer applies cross-entropy over all
/// items to every augmented prefix, with Adam, like every backbone. Its hidden dropout also reaches the
/// state carried to the next click; here it applies to the outputs only (as torch::nn::GRU does). On a CPU the
/// GRU runs as packed_gru_layer (packed_gru.hpp), the same equations as torch::nn::GRU, whose parameters it reads.
/// Initialisation as the official code (see init_official), drawn from a generator seeded by `seed`.
class Gru4RecImpl : public SessionEncoderImpl {
 public:
  explicit Gru4RecImpl(Gru4RecOptions options, std::uint64_t seed = 0);

  SessionRepresentation encode(const SessionBatch& batch) override;
  /// The batch packed for the GRU (its ids, step sizes, sort order, and where each packed row belongs).
  std::shared_ptr<const BatchInputs> prepare(const SessionBatch& batch, const torch::Device& device) const override;
  torch::Tensor readout(const SessionRepresentation& rep) override;
  torch::Tensor score(const torch::Tensor& session, const SessionRepresentation& rep) override;
  LinearScorer linear_scorer() const override;

  std::int64_t hidden_size() const override { return options_.hidden_size; }
  std::int64_t n_items() const override { return options_.n_items; }
  std::string name() const override { return "gru4rec"; }
  const Gru4RecOptions& options() const { return options_; }

  torch::nn::Embedding embedding{nullptr};  ///< E, [N + 1, d] (input clicks and output candidates)
  torch::nn::GRU gru{nullptr};              ///< batch-first, `layers` layers
  torch::Tensor item_bias;                  ///< b, [N]
  torch::nn::Linear linear_transform{nullptr};  ///< W3, b3 [d, 2d] (hybrid readout only)

 private:
  void init_official(std::uint64_t seed);
  torch::nn::utils::rnn::PackedSequence run_gru(const torch::nn::utils::rnn::PackedSequence& packed);

  Gru4RecOptions options_;
};
TORCH_MODULE(Gru4Rec);

}  // namespace llm4sbr::models
