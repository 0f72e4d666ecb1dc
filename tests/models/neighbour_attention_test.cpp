// GCE-GNN's fused global attention (models/neighbour_attention.hpp) against the composed LibTorch operations it
// replaces: values and the gradients of all five inputs, in float64 and float32, with negative and positive
// pre-activations (both sides of the LeakyReLU) and weights of the sizes of raw pair counts.
#include "llm4sbr/models/neighbour_attention.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "llm4sbr/core/error.hpp"

namespace llm4sbr::models {
namespace {

void expect_node_equals_composed(torch::Dtype dtype, double rtol, double atol) {
  auto gen = at::detail::createCPUGenerator(11);
  for (const std::int64_t k : {1, 3, 12}) {
    const std::int64_t n = 7, d = 37;  // two blocks of the 16-lane sums and a tail
    auto leaf = [&](std::vector<std::int64_t> sizes, double scale) {
      return (scale * torch::randn(sizes, gen, dtype)).requires_grad_(true);
    };
    const auto session = leaf({n, d}, 1.0), neighbours = leaf({n, k, d}, 1.0), w_1 = leaf({d + 1, d}, 0.5),
               w_2 = leaf({d, 1}, 1.0);
    const auto weights = torch::randint(1, 20, {n, k}, gen, dtype).requires_grad_(true);
    const auto upstream = torch::randn({n, d}, gen, dtype);
    const std::vector<torch::Tensor> inputs = {session, neighbours, weights, w_1, w_2};
    const auto run = [&](bool fused) {
      const auto out = fused ? neighbour_attention(session, neighbours, weights, w_1, w_2)
                             : composed_neighbour_attention(session, neighbours, weights, w_1, w_2);
      auto grads = torch::autograd::grad({(out * upstream).sum()}, inputs);
      grads.insert(grads.begin(), out.detach());
      return grads;
    };
    const auto got = run(true), want = run(false);
    const char* names[] = {"out", "d_session", "d_neighbours", "d_weights", "d_w_1", "d_w_2"};
    for (std::size_t i = 0; i < got.size(); ++i)
      EXPECT_TRUE(torch::allclose(got[i], want[i], rtol, atol))
          << names[i] << " (K " << k << ", " << dtype << ")\n" << got[i] << "\n" << want[i];
  }
}

TEST(NeighbourAttention, EqualsTheComposedOperationsInDouble) {
  expect_node_equals_composed(torch::kFloat64, 1e-10, 1e-12);
}

TEST(NeighbourAttention, EqualsTheComposedOperationsInFloat) {
  expect_node_equals_composed(torch::kFloat32, 1e-4, 1e-5);
}

TEST(NeighbourAttention, RefusesMismatchedShapes) {
  const auto s = torch::randn({4, 5}), h = torch::randn({4, 3, 5}), w = torch::randn({4, 3});
  const auto w_1 = torch::randn({6, 5}), w_2 = torch::randn({5, 1});
  EXPECT_NO_THROW(neighbour_attention(s, h, w, w_1, w_2));
  EXPECT_THROW(neighbour_attention(s, h, w, torch::randn({5, 5}), w_2), Error);  // W1 without the weight's row
  EXPECT_THROW(neighbour_attention(s, h, torch::randn({4, 2}), w_1, w_2), Error);
  EXPECT_THROW(neighbour_attention(torch::randn({3, 5}), h, w, w_1, w_2), Error);
}

}  // namespace
}  // namespace llm4sbr::models
