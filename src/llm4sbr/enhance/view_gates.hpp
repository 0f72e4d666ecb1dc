// The LLM4SBR head's per-view arithmetic (paper Eq. 8-11): each view's gate on its anchor representation and
// the DirectAU losses that pull the projected intent towards that anchor. On [B, d] tensors of a training batch
// these are ~50 small LibTorch operations forward and as many backward, each costing more in dispatch and
// autograd bookkeeping than in arithmetic (the head added ~14 % to an SR-GNN step). gate_views computes all
// views in one autograd node with its backward pass written out; composed_gate_views is the same computation
// by LibTorch operations (the reference for its tests, and the path for GPUs and other dtypes).
#pragma once

#include <torch/torch.h>

#include <vector>

namespace llm4sbr::enhance {

/// DirectAU alignment (paper Eq. 8 as the reference computes it): the batch mean of ‖x̂_i − ŷ_i‖², with
/// x̂ = x / ‖x‖. x, y: [B, d] -> scalar in [0, 4], or [V, B, d] -> [V] (V batches at once). Zero rows stay
/// zero (no division by zero).
torch::Tensor alignment_loss(const torch::Tensor& x, const torch::Tensor& y);

/// DirectAU uniformity (paper Eq. 9): log of the mean of exp(−2‖x̂_i − x̂_j‖²) over all pairs i < j of the
/// batch. x: [B, d] -> scalar in [−4, 0], or [V, B, d] -> [V]. A batch of one has no pair and gives 0 (the
/// reference divides by zero there and returns NaN).
torch::Tensor uniformity_loss(const torch::Tensor& x);

/// What the gates and DirectAU give the head, for V views of a batch of B sessions.
struct GatedViews {
  std::vector<torch::Tensor> gated;  ///< V × [B, d]: α_v · anchor_v, the gated representations (Eq. 12's inputs)
  torch::Tensor alphas;              ///< [B, V]: α_v = q_vᵀ σ(anchor_v + h̃_v), unbounded (Eq. 10-11)
  /// Scalar: au_weight · Σ_v [L_a(h̃_v, anchor_v) + ½ (L_u(h̃_v) + L_u(anchor_v))] (Eq. 8-9, 15); undefined
  /// when au_weight is 0.
  torch::Tensor au;
};

/// The gates and DirectAU losses of all views in one autograd node. projected: [B, V, d] (h̃, Eq. 7);
/// anchors: V × [B, d], the representation each view gates; gate_weights: V × [1, d] or [d] (q_v, the gate
/// Linear's weight); au_weight ≥ 0 (τ, or τ / V for the views' mean; 0 = no DirectAU, as in evaluation).
/// Gradients flow to projected, the anchors and the gate weights. float32/float64 CPU tensors take the
/// written-out forward and backward passes; others composed_gate_views. Throws llm4sbr::Error for bad shapes.
GatedViews gate_views(const torch::Tensor& projected, const std::vector<torch::Tensor>& anchors,
                      const std::vector<torch::Tensor>& gate_weights, double au_weight);

/// gate_views by LibTorch operations (alignment_loss, uniformity_loss, torch::sigmoid, ...): the same
/// arguments and values to float rounding.
GatedViews composed_gate_views(const torch::Tensor& projected, const std::vector<torch::Tensor>& anchors,
                               const std::vector<torch::Tensor>& gate_weights, double au_weight);

}  // namespace llm4sbr::enhance
