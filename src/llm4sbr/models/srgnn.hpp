// SR-GNN (Wu et al., AAAI'19) as the official PyTorch code computes it (backbone-notes §3): a gated
// graph network over each session's item graph, then a soft-attention readout of the node states.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/models/model_settings.hpp"
#include "llm4sbr/models/session_encoder.hpp"
#include "llm4sbr/models/session_graph.hpp"

namespace llm4sbr::models {

/// Hyper-parameters of SR-GNN.
struct SrGnnOptions {
  std::int64_t hidden_size = 100;  ///< d, the embedding and state width
  std::int64_t n_items = 0;        ///< N; the embedding table has N + 1 rows (row 0 = padding)
  std::int64_t step = 1;           ///< gated-GNN iterations per forward pass (reference default 1)
  bool nonhybrid = false;          ///< readout s = s_g instead of the hybrid W3 [s_g ; v_n] + b3

  /// Reads `hidden_size`, `step` and `nonhybrid` from a model config section; hidden_size defaults to
  /// ctx.hidden_size and n_items comes from ctx. Throws ConfigError (naming the key) for a bad value or
  /// a key SR-GNN does not read.
  static SrGnnOptions from_config(const ModelContext& ctx, const Config& settings);
  /// The same keys through `keys`, without the unknown-key check (TAGNN reads its own keys after them).
  static SrGnnOptions from_settings(const ModelContext& ctx, const ModelSettings& keys);
};

/// The gated graph layer of SR-GNN (also TAGNN's), backbone-notes §3.2. For each of `step` iterations:
///   a_in  = A_in  (H W_in  + b_in)  + b_iah,   a_out = A_out (H W_out + b_out) + b_oah,   a = [a_in ; a_out]
///   gi = W_ih a + b_ih,  gh = W_hh H + b_hh   (3d each, split r | z | n)
///   r = σ(gi_r + gh_r),  z = σ(gi_z + gh_z),  ñ = tanh(gi_n + r ⊙ gh_n),  H' = (1 − z) ⊙ ñ + z ⊙ H
/// (the PyTorch GRU convention: the reset gate multiplies W_hn h + b_hn).
class GatedGnnImpl : public torch::nn::Module {
 public:
  GatedGnnImpl(std::int64_t hidden_size, std::int64_t step);

  /// `step` propagation rounds over the batch's packed session graphs: hidden [V, d] -> [V, d].
  torch::Tensor forward(const SessionGraph& graph, torch::Tensor hidden);

  std::int64_t step() const { return step_; }

  torch::nn::Linear edge_in{nullptr}, edge_out{nullptr};  ///< W_in, b_in and W_out, b_out
  torch::Tensor w_ih, w_hh, b_ih, b_hh;                  ///< [3d, 2d], [3d, d], [3d], [3d]
  torch::Tensor b_iah, b_oah;                            ///< [d] biases added after aggregation

 private:
  /// One GRU cell (PyTorch's equations, Eq. 2-5 of SR-GNN) from input [V, 2d] and hidden [V, d] to [V, d].
  torch::Tensor gru_cell(const torch::Tensor& input, const torch::Tensor& hidden);

  std::int64_t step_;
};
TORCH_MODULE(GatedGnn);

/// SR-GNN as a SessionEncoder.
///
/// encode: H = GatedGnn(E[nodes]); v_t = H[node of click t] (rep.clicks, packed [P, d]); local = v_n, the
/// state of the last click; global = s_g = Σ_t α_t v_t over the real clicks with α_t = qᵀ σ(W1 v_n + b1 + W2 v_t + b2)
/// (no softmax, as in the code). readout: W3 [global ; local] + b3 (nonhybrid: global).
/// score: s · E[1:]ᵀ -> [B, N], the candidates being the layer-0 embeddings.
/// The session graph is built on the CPU (batch.items is copied there) and moved to the model's device.
class SrGnnImpl : public SessionEncoderImpl {
 public:
  explicit SrGnnImpl(SrGnnOptions options, std::uint64_t seed = 0);

  SessionRepresentation encode(const SessionBatch& batch) override;
  /// The batch's SessionGraph (build_session_graph) on `device`.
  std::shared_ptr<const BatchInputs> prepare(const SessionBatch& batch, const torch::Device& device) const override;
  torch::Tensor readout(const SessionRepresentation& rep) override;
  torch::Tensor score(const torch::Tensor& session, const SessionRepresentation& rep) override;
  LinearScorer linear_scorer() const override;

  std::int64_t hidden_size() const override { return options_.hidden_size; }
  std::int64_t n_items() const override { return options_.n_items; }
  std::string name() const override { return "srgnn"; }
  const SrGnnOptions& options() const { return options_; }

  torch::nn::Embedding embedding{nullptr};  ///< E, [N + 1, d]
  GatedGnn gnn{nullptr};
  torch::nn::Linear linear_one{nullptr};        ///< W1, b1 (applied to v_n)
  torch::nn::Linear linear_two{nullptr};        ///< W2, b2 (applied to v_t)
  torch::nn::Linear linear_three{nullptr};      ///< q, no bias
  torch::nn::Linear linear_transform{nullptr};  ///< W3, b3 [d, 2d] (hybrid readout only)

 private:
  SrGnnOptions options_;
};
TORCH_MODULE(SrGnn);

}  // namespace llm4sbr::models
