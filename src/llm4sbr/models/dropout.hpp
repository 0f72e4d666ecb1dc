// Dropout with LibTorch's draws, made ~15x faster on the CPU. at::bernoulli_ (without MKL, as Debian builds
// LibTorch) draws one value at a time through CPUGeneratorImpl::random64: ~13-16 ns a value here, which made
// the dropout masks ~6 of SASRec's ~35 ms a training batch. The same Mersenne Twister words, generated and
// tempered a block at a time and compared as integers, give the same values at ~1 ns each; the generator is
// left exactly where at::bernoulli_ would leave it, so every later draw is unchanged too.
#pragma once

#include <torch/torch.h>

namespace llm4sbr::models {

/// t.bernoulli_(p) on the default CPU generator: each value set to 1 with probability p, else 0, and the same
/// values and generator state as ATen's own kernel. For contiguous float32/float64 CPU tensors when this
/// LibTorch's kernel is the one replicated (checked once per process against at::bernoulli_ on a private
/// generator); otherwise t.bernoulli_(p) itself. p in [0, 1] (c10::Error otherwise, as ATen). Returns t.
torch::Tensor& fast_bernoulli_(torch::Tensor& t, double p);

/// Whether fast_bernoulli_ runs its own draws in this process (this LibTorch's CPU kernel is the one it
/// replicates: without MKL, as Debian's), rather than handing every call to ATen.
bool fast_bernoulli_replicates_libtorch();

/// at::dropout's multipliers on the CPU: a contiguous tensor of `sizes` whose values are 1 / (1 − p) with
/// probability 1 − p, else 0 — fast_bernoulli_(1 − p), then divided by 1 − p, as at::dropout makes its noise, so
/// the same values from the same seed. 0 <= p < 1 (at::dropout draws nothing for p = 1).
torch::Tensor dropout_noise(torch::IntArrayRef sizes, double p, const torch::TensorOptions& options);

/// F::dropout(x, p, training) with at::dropout's CPU computation (x · bernoulli(1 − p) / (1 − p), nothing drawn
/// when !training, p = 0 or x is empty, x · 0 when p = 1): the same values from the same seed, drawn by
/// fast_bernoulli_ above. Other devices take F::dropout (whose CUDA kernel draws otherwise).
torch::Tensor fast_dropout(const torch::Tensor& x, double p, bool training);

}  // namespace llm4sbr::models
