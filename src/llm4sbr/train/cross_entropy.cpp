#include "llm4sbr/train/cross_entropy.hpp"

#include <ATen/Parallel.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "llm4sbr/core/lane_sum.hpp"
#include "llm4sbr/core/vectorizable_exp.hpp"

namespace llm4sbr::train {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// One row of the loss: g = (softmax(s) − one-hot(t)) / B, returns max + log z − s[t] (z = Σ exp(s − max)).
// Three passes over the row: the first reads it from memory, the others from cache (a row of 12,101 scores
// is 48 KB). LibTorch's exp (Sleef, 8 lanes in this build) took ~0.6 ms of the whole-matrix version's ~1 ms a
// Beauty batch; vectorizable_exp runs in 16 lanes where the CPU has them. Cloned per ISA level; no FMA
// contraction (CMakeLists.txt), so each clone's values are the same.
[[gnu::target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")]]
float row_loss(const float* __restrict s, float* __restrict g, std::int64_t n, std::int64_t target, float inv_batch) {
  const float max = lane_max<float>(n, -std::numeric_limits<float>::infinity(), [&](std::int64_t j) { return s[j]; });
  const float z = lane_sum<float>(n, [&](std::int64_t j) { return g[j] = vectorizable_exp(s[j] - max); });
  const float scale = inv_batch / z;
  for (std::int64_t j = 0; j < n; ++j) g[j] *= scale;
  g[target] -= inv_batch;
  return max + std::log(z) - s[target];
}

// Forward: the loss and, in the same pass over each row, its gradient for an incoming gradient of 1.
// Backward: that tensor itself when the incoming gradient g is 1 (a loss backpropagated as it is, or summed
// with others), else g times it.
struct FusedCrossEntropy : torch::autograd::Function<FusedCrossEntropy> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& scores, const torch::Tensor& targets) {
    const auto s = scores.contiguous();
    const auto t = targets.contiguous();
    const auto b = s.size(0), n = s.size(1);
    TORCH_CHECK(t.min().item<std::int64_t>() >= 0 && t.max().item<std::int64_t>() < n,
                "cross_entropy: a target is outside [0, ", n, ")");
    auto grad = torch::empty_like(s, torch::MemoryFormat::Contiguous);
    auto loss = torch::empty({b}, s.options());
    const float* score = s.data_ptr<float>();
    float* g = grad.data_ptr<float>();
    float* loss_of = loss.data_ptr<float>();
    const std::int64_t* target_of = t.data_ptr<std::int64_t>();
    const float inv_batch = 1.0F / static_cast<float>(b);
    at::parallel_for(0, b, 1, [&](std::int64_t begin, std::int64_t end) {
      for (auto r = begin; r < end; ++r) loss_of[r] = row_loss(score + r * n, g + r * n, n, target_of[r], inv_batch);
    });
    ctx->saved_data["grad"] = grad;
    return loss.mean();
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto grad = ctx->saved_data["grad"].toTensor();
    const auto& g = grad_outputs[0];
    // Returned as it is: autograd adds into a gradient in place only when no one else holds it, and ctx does
    // (a second backward with retain_graph gets the same values).
    if (g.item<float>() == 1.0F) return {grad, torch::Tensor()};
    return {grad * g, torch::Tensor()};
  }
};

}  // namespace

torch::Tensor cross_entropy(const torch::Tensor& scores, const torch::Tensor& targets) {
  const bool fusable = scores.dim() == 2 && scores.scalar_type() == torch::kFloat32 && scores.device().is_cpu() &&
                       targets.dim() == 1 && targets.size(0) == scores.size(0) && scores.size(0) > 0;
  if (!fusable) return torch::nn::functional::cross_entropy(scores, targets);
  return FusedCrossEntropy::apply(scores, targets.to(torch::kLong));
}

}  // namespace llm4sbr::train
