// Layer normalization over the last dimension, written out for the CPU (SASRec's five a forward pass).
#pragma once

#include <torch/torch.h>

namespace llm4sbr::models {

/// y = (x − μ) / sqrt(σ² + eps) · weight + bias over the last dimension of x [..., d], with μ and σ² the mean
/// and biased variance of each row (Ba et al. 2016; SASRec's normalize()): torch::layer_norm(x, {d}, weight,
/// bias, eps) to float rounding, differentiable in x, weight and bias [d]. On the CPU in float32/float64 a
/// written-out kernel, one pass a row each way (the row's moments, then its output); LibTorch's (Debian's 1.13)
/// took 111 µs forward for [850, 100] (SASRec's rows of a Beauty batch) where an add of that size takes 9 µs,
/// and its forward and backward were ~9 % of a SASRec training step in perf. Elsewhere torch::layer_norm.
/// Error (c10) if weight or bias is not [d].
torch::Tensor layer_norm(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias, double eps);

}  // namespace llm4sbr::models
