// The next-item loss on the score matrix, fused for the CPU. F::cross_entropy makes log_softmax (a [B, N]
// tensor), then its backward fills a zero [B, N] gradient for nll_loss and runs log_softmax's backward over
// both: ~1.9 ms forward and backward on SR-GNN's Beauty batch ([100, 12,101] scores). The fused form makes the
// gradient in the forward pass, row by row while the row is in cache, and hands it back as it is: ~0.5 ms
// (bench/cross_entropy_bench; the whole-matrix fused form before it took ~1.1 ms).
#pragma once

#include <torch/torch.h>

namespace llm4sbr::train {

/// The mean next-item cross-entropy of a batch (paper Eq. 17; the reference code's nn.CrossEntropyLoss):
///   L = (1/B) Σ_b [ log Σ_j exp(s[b, j]) − s[b, t_b] ],   ∂L/∂s[b, j] = (softmax(s[b])_j − [j = t_b]) / B.
/// scores [B, N] (any float dtype and device), targets [B] int64 0-based item indices in [0, N). Returns a
/// 0-dim tensor with a gradient to scores. Float32 CPU scores take the fused path (stable: each row's maximum
/// is subtracted; it keeps one [B, N] tensor, the gradient, as log_softmax keeps its output; a NaN or +∞ score
/// gives a NaN loss); other scores go to F::cross_entropy. The two agree to float rounding
/// (tests/train/cross_entropy_test.cpp). Throws c10::Error for a target outside [0, N).
torch::Tensor cross_entropy(const torch::Tensor& scores, const torch::Tensor& targets);

}  // namespace llm4sbr::train
