// models::layer_norm against torch::layer_norm: the same output and the same gradients of x, weight and bias
// (float rounding aside) for rows of widths on and off the 16-wide lanes, a constant row (zero variance) and a
// 3-D input; the fallback elsewhere; its refusals.
#include "llm4sbr/models/layer_norm.hpp"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "models/kernel_testing.hpp"

namespace llm4sbr::models {
namespace {

using testing::expect_all_close;
using testing::output_and_gradients;

void expect_equal_to_torchs(std::vector<std::int64_t> shape, torch::Dtype dtype, double eps, double tolerance) {
  torch::manual_seed(3);
  const auto d = shape.back();
  auto x = torch::randn(shape, dtype) * 3 + 1;
  x.view({-1, d})[0].fill_(2.5);  // a constant row: zero variance, rstd = 1/sqrt(eps)
  const auto w = torch::randn({d}, dtype), b = torch::randn({d}, dtype), u = torch::randn(shape, dtype);
  const auto ours = output_and_gradients([&](auto& t) { return layer_norm(t[0], t[1], t[2], eps); }, {x, w, b}, u);
  const auto theirs =
      output_and_gradients([&](auto& t) { return torch::layer_norm(t[0], {d}, t[1], t[2], eps); }, {x, w, b}, u);
  expect_all_close(ours, theirs, tolerance);
}

TEST(LayerNorm, EqualsTorchsInFloat64) {
  for (std::int64_t d : {2, 7, 16, 100}) {
    SCOPED_TRACE(d);
    expect_equal_to_torchs({37, d}, torch::kFloat64, 1e-5, 1e-10);
  }
}

TEST(LayerNorm, EqualsTorchsInFloat32) {
  for (std::int64_t d : {5, 16, 33, 100}) {
    SCOPED_TRACE(d);
    expect_equal_to_torchs({850, d}, torch::kFloat32, 1e-8, 1e-4);
  }
  expect_equal_to_torchs({4, 9, 100}, torch::kFloat32, 1e-5, 1e-4);  // SASRec's eps is 1e-8; rows of a 3-D input
}

TEST(LayerNorm, OtherTypesGoThroughTorch) {
  const auto x = torch::randn({6, 10}).to(torch::kBFloat16);
  const auto w = torch::ones({10}, torch::kBFloat16), b = torch::zeros({10}, torch::kBFloat16);
  EXPECT_TRUE(torch::equal(layer_norm(x, w, b, 1e-5), torch::layer_norm(x, {10}, w, b, 1e-5)));
}

TEST(LayerNorm, RejectsParametersOfAnotherWidth) {
  const auto x = torch::randn({3, 8});
  EXPECT_THROW(layer_norm(x, torch::ones({7}), torch::zeros({8}), 1e-5), c10::Error);
  EXPECT_THROW(layer_norm(x, torch::ones({8}), torch::zeros({2, 4}), 1e-5), c10::Error);
}

}  // namespace
}  // namespace llm4sbr::models
