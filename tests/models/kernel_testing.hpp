// Helpers for the tests of written-out kernels against LibTorch's own computation (packed GRU and attention,
// layer norm): how far apart two results are, and a function's output with the gradients of its inputs.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstddef>
#include <vector>

namespace llm4sbr::testing {

/// Largest |a − b| relative to b's largest value.
inline double relative_difference(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<double>() / std::max(1e-30, b.abs().max().item<double>());
}

/// f(x_1, ..., x_n) on copies of `inputs` that require gradients, and the gradients of Σ f·weights with respect
/// to each copy (random weights give every output value a gradient of its own): {output, dx_1, ..., dx_n}.
/// f takes the copies as a std::vector<torch::Tensor>&.
template <typename F>
std::vector<torch::Tensor> output_and_gradients(F f, const std::vector<torch::Tensor>& inputs,
                                                const torch::Tensor& weights) {
  std::vector<torch::Tensor> leaves;
  for (const auto& x : inputs) leaves.push_back(x.clone().requires_grad_());
  const auto out = f(leaves);
  (out * weights).sum().backward();
  std::vector<torch::Tensor> result{out.detach()};
  for (const auto& leaf : leaves) result.push_back(leaf.grad());
  return result;
}

/// Each tensor of `ours` within `tolerance` of the same one of `theirs` (relative_difference).
inline void expect_all_close(const std::vector<torch::Tensor>& ours, const std::vector<torch::Tensor>& theirs,
                             double tolerance) {
  ASSERT_EQ(ours.size(), theirs.size());
  for (std::size_t i = 0; i < ours.size(); ++i) {
    SCOPED_TRACE(i == 0 ? "output" : "gradient of input " + std::to_string(i));
    EXPECT_LT(relative_difference(ours[i], theirs[i]), tolerance);
  }
}

}  // namespace llm4sbr::testing
