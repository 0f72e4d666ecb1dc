#include "llm4sbr/train/cross_entropy.hpp"

namespace llm4sbr::train {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Forward: the row maxima, e = exp(s − max) once (LibTorch's vectorized exp), its row sums z; the loss is
// mean(max + log z − s[t]). Backward: ∂L/∂s = e · (g / (B z)), then − g / B at each target: one pass over e.
struct FusedCrossEntropy : torch::autograd::Function<FusedCrossEntropy> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& scores, const torch::Tensor& targets) {
    const auto s = scores.contiguous();
    const auto t = targets.unsqueeze(1);
    const auto max = s.amax(1, true);
    auto e = s - max;
    e.exp_();
    const auto z = e.sum(1, true);
    ctx->save_for_backward({e, z, t});
    return (max + z.log() - s.gather(1, t)).mean();
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto& e = saved[0];
    const auto& z = saved[1];
    const auto& t = saved[2];
    const auto per_sample = grad_outputs[0] / static_cast<double>(e.size(0));  // g / B
    auto grad = e * (per_sample / z);
    grad.scatter_add_(1, t, (-per_sample).expand({e.size(0), 1}));
    return {grad, torch::Tensor()};
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
