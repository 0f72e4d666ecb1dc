// Adam with coupled L2 weight decay (Kingma & Ba 2015; the reference code's torch.optim.Adam), the update of
// torch::optim::Adam made in one pass over each parameter: torch's step reads and writes every value six times
// (grad + λθ, m ← β1·m + (1-β1)·g, v ← β2·v + (1-β2)·g², √v, the denominator, θ ← θ - α·m̂ / (√v̂ + ε)), and
// for SR-GNN's 1.2 M embedding values on a CPU that memory traffic was 7 ms of a 52 ms step.
#pragma once

#include <torch/torch.h>

#include <vector>

namespace llm4sbr::train {

/// torch::optim::Adam whose step() updates each float32 CPU parameter, its two moments and its step count in
/// one loop (parallel over LibTorch's intra-op threads). The same maths as torch's (float rounding aside:
/// tests/train/fused_adam_test.cpp), the same AdamParamState and the same save/load format, so a state
/// written by either loads into the other. Steps that it cannot fuse (amsgrad, a GPU or non-float32
/// parameter, a sparse or non-contiguous gradient) go to torch::optim::Adam::step whole.
class FusedAdam : public torch::optim::Adam {
 public:
  using torch::optim::Adam::Adam;

  /// One Adam step over every parameter with a gradient: for each value,
  /// g = ∇ + λθ; m = β1·m + (1-β1)·g; v = β2·v + (1-β2)·g²; θ = θ - (lr / (1-β1ᵗ))·m / (√v / √(1-β2ᵗ) + ε).
  /// A parameter without a gradient that has Adam state (a gradient in an earlier step) is stepped with a
  /// zero gradient, as torch's Adam steps it after zero_grad() (which leaves zeros); see clear_gradients.
  torch::Tensor step(LossClosure closure = nullptr) override;

 private:
  bool fusable() const;
};

/// PyTorch's zero_grad(set_to_none=True): every gradient of `optimizer`'s parameters undefined, so that the next
/// backward pass stores the gradient it makes instead of adding it to a zeroed tensor (for Beauty's item table,
/// a fill and an addition over 1.2 M values a step). With FusedAdam the steps are those after zero_grad()
/// (see FusedAdam::step); torch::optim::Adam would skip a parameter left without a gradient instead.
void clear_gradients(torch::optim::Optimizer& optimizer);

/// Every sparse gradient of `optimizer`'s parameters replaced by its dense tensor (the same values). An item
/// table looked up with models::item_lookup and scored against receives one dense gradient (autograd adds the
/// sparse rows into the scores' gradient); one that was only looked up would reach the reducer and the step
/// sparse, which neither takes. The trainer calls it after every backward pass; FusedAdam::step calls it too.
void densify_gradients(torch::optim::Optimizer& optimizer);

}  // namespace llm4sbr::train
