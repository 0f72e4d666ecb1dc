// GCE-GNN's global-level attention over an item's sampled neighbours, as one autograd node on the CPU.
// Composed from LibTorch operations it made about ten passes over the [n, K, d] neighbour tensors forward and
// more backward (the products with w_1[d] and w_2, the sum, LeakyReLU, the weights times the neighbours and
// their sum, and each one's backward), where the arithmetic that matters is one [n·K, d] x [d, d] product.
#pragma once

#include <torch/torch.h>

namespace llm4sbr::models {

/// The weighted sum of an item's neighbours in GCE-GNN's global aggregation (the paper's Eq. 1-3):
///   π_k = softmax_k( w2ᵀ LeakyReLU_0.2( W1ᵀ [s ⊙ h_k ; w_k] ) ),   out = Σ_k π_k h_k.
/// session s [n, d], neighbours h [n, K, d], weights w [n, K] (raw pair counts), w_1 [d + 1, d], w_2 [d, 1]
/// -> [n, d], differentiable in all five. float32/float64 CPU tensors of one dtype, K <= 64, run as one autograd node
/// (two products through BLAS forward, three backward, the rest in single passes over the rows; float sums in
/// another order than the composed operations); anything else runs composed_neighbour_attention.
/// Throws llm4sbr::Error for mismatched shapes.
torch::Tensor neighbour_attention(const torch::Tensor& session, const torch::Tensor& neighbours,
                                  const torch::Tensor& weights, const torch::Tensor& w_1, const torch::Tensor& w_2);

/// neighbour_attention by composed LibTorch operations, for any dtype and device (the reference the node is
/// tested against).
torch::Tensor composed_neighbour_attention(const torch::Tensor& session, const torch::Tensor& neighbours,
                                          const torch::Tensor& weights, const torch::Tensor& w_1,
                                          const torch::Tensor& w_2);

}  // namespace llm4sbr::models
