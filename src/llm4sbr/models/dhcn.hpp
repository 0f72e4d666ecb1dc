// S²-DHCN (Xia et al., AAAI'21, "Self-Supervised Hypergraph Convolutional Networks for Session-based
// Recommendation") as the official code computes it (xiaxin1998/DHCN, backbone-notes §6): a hypergraph
// over the training prefixes smooths the item table, a position-aware soft attention reads each session
// out of the smoothed table, and a line-graph channel over the batch feeds a self-supervised loss.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/data/dataset.hpp"
#include "llm4sbr/models/session_encoder.hpp"

namespace llm4sbr::models {

/// Hyper-parameters of S²-DHCN (defaults of the official code, configs/models/dhcn.yaml).
struct DhcnOptions {
  std::int64_t hidden_size = 100;    ///< d
  std::int64_t n_items = 0;          ///< N; the item table has N rows, row k-1 = model id k (no padding row)
  std::int64_t layers = 3;           ///< L, hypergraph and line-graph convolution layers (`--layer`)
  double beta = 0.01;                ///< weight of the SSL loss (README: 0.01 Diginetica, 0.02 Tmall); 0 = off
  bool position_embedding = true;    ///< false: the Tmall readout generate_sess_emb_npos (z_t = tanh(x_t))
  std::int64_t max_positions = 200;  ///< rows of the reversed-position table (the reference's 200)
  double prune_below = 0.0;          ///< drop entries of A below this (Nowplaying: 0.05), not renormalised
  /// false (default): the session vector is W3 [global ; local] + b3, LLM4SBR's fusion (paper Eq. 12)
  /// over this model's two anchors, so gating either anchor changes the scores; true: the model's own
  /// readout s = θ_h, the paper's exact model (it ignores local)
  bool nonhybrid = false;

  /// Reads `hidden_size`, `layers`, `beta`, `position_embedding`, `max_positions`, `prune_below` and
  /// `nonhybrid` from a model config section; hidden_size defaults to ctx.hidden_size and n_items comes from ctx.
  /// Throws ConfigError (naming the key) for a bad value.
  static DhcnOptions from_config(const ModelContext& ctx, const Config& settings);
};

/// The hyperedges grouped into chains of nested prefixes: the form in which S = H B⁻¹ Hᵀ (so that
/// A = D⁻¹ S, see Hypergraph) is cheapest to apply.
///
/// The augmented prefixes of one session are nested, each holding the previous one's items and perhaps
/// one more. Along a chain e_1 ⊆ e_2 ⊆ … the edge sums (Hᵀ x)_e are running sums over the items in the
/// order they first appear, and an item that first appears in e_k lies in e_k, e_k+1, … up to the chain's
/// end, so (H z)_i is a suffix sum of z over the chain. One product S x then costs O((E + K)·d) for E
/// edges and K first appearances, instead of the explicit A's O(nnz(A)·d): 0.32 M against 1.7 M rows of x
/// on Beauty. Edge k of a chain is its k-th shortest prefix; edges are numbered chain after chain.
struct PrefixChains {
  torch::Tensor chain_offsets;  ///< [C+1] int64: chain c owns edges chain_offsets[c] .. chain_offsets[c+1]-1
  torch::Tensor edge_weights;   ///< [E] 1/|e| per edge (float64 as built; see to())
  torch::Tensor first_offsets;  ///< [E+1] int64: the items first appearing in edge e are
                                ///< first_items[first_offsets[e] .. first_offsets[e+1]-1]
  torch::Tensor first_items;    ///< [K] int64 item rows (model id − 1)

  /// The chains of `samples`' prefixes (ids already checked to lie in 1..N): the samples of each session
  /// ordered by prefix length, with a new chain wherever a prefix does not start with the previous one
  /// (samples that are not one session's prefixes each form a chain of their own).
  static PrefixChains from_samples(const std::vector<data::Sample>& samples);
  /// A copy whose edge weights have `dtype` (the dtype of the x it will multiply).
  PrefixChains to(torch::Dtype dtype) const;
  /// The loop multiply runs. automatic: for float32 on a CPU with AVX-512 and at most 128 columns a thread, the
  /// running sums stay in registers (~1.8x faster on Beauty, bench/hypergraph_bench); portable: always the
  /// plain loop. Both make the same additions in the same order: the same values.
  enum class Kernel { automatic, portable };
  /// S x for a dense CPU x [N, d] with N = the items, in the dtype of edge_weights -> [N, d]. Threads
  /// split the columns, so the result does not depend on their number. Throws c10::Error for a dtype
  /// that is not floating.
  torch::Tensor multiply(const torch::Tensor& x, Kernel kernel = Kernel::automatic) const;
};

/// The item hypergraph of S²-DHCN (reference util.Data.__init__, backbone-notes §6.1).
///
/// Hyperedges are the prefixes of the given samples (the augmented training prefixes: a session of m
/// clicks gives m-1 nested hyperedges), each the set of its distinct items; never the test split.
/// With H ∈ {0,1}^{N×E} the incidence, D = diag(H 1) the item degrees and B = diag(1ᵀ H) the edge sizes:
///   A = D⁻¹ H B⁻¹ Hᵀ,   A[i][j] = (1 / deg_i) Σ_{e ∋ i, j} 1 / |e|   (row-stochastic; N×N).
/// An item in no prefix (it only ever occurs as a target, or not at all) has degree 0 and an empty row
/// and column, where the reference would divide by zero. Row/column k is model id k+1.
struct Hypergraph {
  torch::Tensor incidence;    ///< H, sparse COO [N, E] float64, coalesced (values 1)
  torch::Tensor degrees;      ///< D's diagonal, [N] int64 (0 for items in no prefix)
  torch::Tensor edge_sizes;   ///< B's diagonal, [E] int64 (distinct items of each prefix)
  torch::Tensor adjacency;    ///< A, sparse COO [N, N] float64, coalesced (row-major)
  torch::Tensor adjacency_t;  ///< Aᵀ, sparse COO [N, N] float64, coalesced (for the backward pass)
  /// The same hyperedges as nested chains, so that A x = D⁻¹ (S x) and Aᵀ g = S (D⁻¹ g) never read A.
  /// Left empty (undefined tensors) when entries were pruned, as A is then no longer D⁻¹ S.
  PrefixChains chains;
};

/// Builds the hypergraph of `samples`' prefixes over items 1..n_items. Entries of A below `prune_below`
/// are deleted afterwards without renormalising (the reference's Nowplaying filter; 0 keeps all).
/// Throws InputError naming the sample for an id outside 1..n_items. Cost: O(Σ_e |e|²) time (Gustavson's
/// row-by-row product) and O(nnz(A) + N) memory beyond the output.
Hypergraph build_hypergraph(const std::vector<data::Sample>& samples, std::int64_t n_items, double prune_below = 0.0);

/// A fixed sparse matrix in the two layouts the propagation uses: coalesced COO (for any device) and the
/// CSR arrays of the same entries (for the CPU kernel, which runs rows in parallel).
struct SparseRows {
  torch::Tensor coo;     ///< sparse COO [n, m], coalesced
  torch::Tensor crow;    ///< [n+1] int64 row pointer
  torch::Tensor col;     ///< [nnz] int64 column of each entry, row-major
  torch::Tensor values;  ///< [nnz] entries, in the dtype of the dense operand

  /// From a coalesced COO matrix, converted to `like`'s dtype and device.
  static SparseRows from_coo(const torch::Tensor& coo, const torch::Tensor& like);
  /// this · x for a dense x [m, d] -> [n, d] (no autograd; see DhcnImpl::item_states).
  torch::Tensor matmul(const torch::Tensor& x) const;
};

/// S²-DHCN as a SessionEncoder.
///
/// Hypergraph channel: X⁰ = E, X^{l+1} = A X^l, X_h = (X⁰ + … + X^L) / (L+1) ([N, d]; A from the
/// training prefixes of ModelContext::dataset, fixed for the model's life and not saved in checkpoints).
/// The product A·X is the cost of a step (3 layers forward, 3 with Aᵀ backward); on the CPU it runs
/// through the prefix chains (PrefixChains: 2.1x faster training steps on Beauty than the explicit A), with
/// pruned entries as a row-parallel CSR product (SparseRows), elsewhere as LibTorch's sparse COO product.
/// Session readout (generate_sess_emb), with x_t = X_h[click t] and p_t = P[r_t] the embedding of the
/// reversed position r_t = n-1-t (the last click is 0; positions >= max_positions share the last row,
/// where the reference would fail on Beauty's 203-click prefixes):
///   s* = Σ_t x_t / n,  z_t = tanh(W1 [p_t ; x_t] + b1)  (npos: z_t = tanh(x_t)),
///   β_t = w2ᵀ σ(G1 z_t + c1 + G2 s*)   (no softmax),   θ_h = Σ_t β_t x_t.
/// encode: local = X_h[last click], global = θ_h, clicks = x_t of every real click. In training mode with
/// beta > 0, aux_loss = beta · L_ssl (below); in eval mode aux_loss is undefined and nothing looks at the
/// other rows of the batch, so a session's scores never depend on its batch (DHCN issues #2/#3).
/// readout: s = W3 [global ; local] + b3 (backbone-notes §8: the LLM4SBR head gates θ_h and the last click's
/// X_h row before it); nonhybrid: s = global = θ_h, the reference's readout.
/// score: s · X_hᵀ -> [B, N], the candidates being the hypergraph-convolved items (unlike SR-GNN). X_h
/// is the one computed by the last encode() call, which score() must follow. In eval mode without
/// gradients X_h is computed once and re-used until E changes (it does not depend on the batch).
///
/// Line-graph channel and SSL (training only): Θ⁰_b = mean of the *raw, detached* E over session b's
/// clicks (the reference's numpy round-trip), Â = Jaccard overlap of the batch's item sets (+ I on the
/// diagonal), Θ^{l+1} = D̂⁻¹ Â Θ^l, θ_l = mean of the L+1 layers. With θ̃_h = θ_h with rows and feature
/// columns randomly permuted (the global torch generator):
///   L_ssl = Σ_b [ −log(σ(⟨θ_h,b, θ_l,b⟩) + 1e-8) − log(1 − σ(⟨θ_l,b, θ̃_h,b⟩) + 1e-8) ]   (a sum, not a mean).
///
/// The reference's Adam has no weight decay; our trainer applies train.l2 to every model (set
/// train.l2=0 for the faithful setting). Every parameter is drawn from U(−1/√d, 1/√d).
class DhcnImpl : public SessionEncoderImpl {
 public:
  DhcnImpl(DhcnOptions options, Hypergraph graph, std::uint64_t seed = 0);

  SessionRepresentation encode(const SessionBatch& batch) override;
  /// The batch's packed clicks and, in training with beta > 0, its line graph's D̂⁻¹Â, on `device`.
  std::shared_ptr<const BatchInputs> prepare(const SessionBatch& batch, const torch::Device& device) const override;
  torch::Tensor readout(const SessionRepresentation& rep) override;
  torch::Tensor score(const torch::Tensor& session, const SessionRepresentation& rep) override;

  std::int64_t hidden_size() const override { return options_.hidden_size; }
  std::int64_t n_items() const override { return options_.n_items; }
  std::string name() const override { return "dhcn"; }
  const DhcnOptions& options() const { return options_; }
  const Hypergraph& hypergraph() const { return graph_; }

  /// X_h = mean of A^l E over l = 0..L, [N, d] (differentiable in E).
  torch::Tensor item_states();
  /// θ_l of the line-graph channel for a batch, [B, d] (no gradient; exposed for tests).
  torch::Tensor line_graph_sessions(const SessionBatch& batch);
  /// beta · L_ssl for hypergraph session vectors θ_h and line-graph vectors θ_l, both [B, d].
  torch::Tensor ssl_loss(const torch::Tensor& theta_h, const torch::Tensor& theta_l) const;

  torch::nn::Embedding embedding{nullptr};      ///< E, [N, d]; row k-1 is model id k
  torch::nn::Embedding pos_embedding{nullptr};  ///< P, [max_positions, d], row 0 = the last click
  torch::nn::Linear w_1{nullptr};               ///< W1, b1: [p_t ; x_t] (2d) -> d
  torch::Tensor w_2;                            ///< [d, 1]
  torch::nn::Linear glu1{nullptr};              ///< G1, c1
  torch::nn::Linear glu2{nullptr};              ///< G2, no bias
  torch::nn::Linear linear_transform{nullptr};  ///< W3, b3 [d, 2d] (hybrid readout only)

 private:
  /// prepare()'s inputs, with the line graph or without.
  std::shared_ptr<const BatchInputs> batch_inputs(const SessionBatch& batch, const torch::Device& device,
                                                  bool line_graph) const;
  /// batch.inputs when they hold what the pass needs (the line graph or not), else made now.
  std::shared_ptr<const BatchInputs> inputs_of(const SessionBatch& batch, bool line_graph) const;
  /// θ_l from a batch's inputs (made with the line graph) and lengths [B] on the model's device.
  torch::Tensor line_graph_sessions(const BatchInputs& inputs, const torch::Tensor& lengths);
  /// A and Aᵀ in the dtype and on the device of E (converted once, then cached).
  const std::pair<SparseRows, SparseRows>& adjacency_like(const torch::Tensor& like);
  /// X -> A X, differentiable, by the chains where they apply (CPU, nothing pruned), else by the explicit A.
  torch::Tensor propagate(const torch::Tensor& x);

  DhcnOptions options_;
  Hypergraph graph_;
  std::pair<SparseRows, SparseRows> adjacency_cache_;
  PrefixChains chains_cache_;     ///< graph_.chains with E's dtype
  torch::Tensor inverse_degrees_;  ///< [N] 1 / deg_i in E's dtype, 0 for items in no prefix
  /// X_h for encode(): computed afresh in training, re-used in evaluation while E is unchanged.
  torch::Tensor states_for_encode();

  /// Which E a cached X_h was computed from: its storage and in-place version.
  struct StatesKey {
    const void* data = nullptr;
    std::int64_t version = -1;
    bool operator==(const StatesKey&) const = default;
  };
  torch::Tensor current_states_;  ///< X_h of the last encode(), for score()
  StatesKey states_key_;          ///< set while current_states_ may be re-used (evaluation)
};
TORCH_MODULE(Dhcn);

}  // namespace llm4sbr::models
