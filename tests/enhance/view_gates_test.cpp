// The head's gates and DirectAU in one autograd node (gate_views) against the same computation by LibTorch
// operations (composed_gate_views): values and the gradients of every input, for one and two views, float32
// and float64, batches with no pair, zero rows and repeated rows, outputs left unused, and bad shapes.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "llm4sbr/core/error.hpp"
#include "llm4sbr/enhance/view_gates.hpp"

using namespace llm4sbr;

namespace {

struct Inputs {
  torch::Tensor projected;
  std::vector<torch::Tensor> anchors, weights;
};

Inputs inputs(std::int64_t b, std::int64_t v, std::int64_t d, torch::Dtype dtype, std::uint64_t seed) {
  torch::manual_seed(seed);
  const auto o = torch::TensorOptions().dtype(dtype);
  Inputs x{torch::randn({b, v, d}, o).requires_grad_(), {}, {}};
  for (std::int64_t i = 0; i < v; ++i) {
    x.anchors.push_back(torch::randn({b, d}, o).requires_grad_());
    x.weights.push_back(torch::randn({1, d}, o).requires_grad_());
  }
  return x;
}

Inputs copy_of(const Inputs& x) {
  Inputs y{x.projected.detach().clone().requires_grad_(), {}, {}};
  for (const auto& a : x.anchors) y.anchors.push_back(a.detach().clone().requires_grad_());
  for (const auto& q : x.weights) y.weights.push_back(q.detach().clone().requires_grad_());
  return y;
}

// A loss that reads every output with its own random weights (fixed by `seed`), so each gradient path counts.
torch::Tensor loss_of(const enhance::GatedViews& out, bool use_gated, bool use_alphas, std::uint64_t seed) {
  torch::manual_seed(seed);
  auto loss = torch::zeros({}, out.alphas.options());
  if (use_gated)
    for (const auto& g : out.gated) loss = loss + (g * torch::randn(g.sizes(), g.options())).sum();
  if (use_alphas) loss = loss + (out.alphas * torch::randn(out.alphas.sizes(), out.alphas.options())).sum();
  if (out.au.defined()) loss = loss + 3.0 * out.au;
  return loss;
}

void expect_close(const torch::Tensor& a, const torch::Tensor& b, double tol, const std::string& what) {
  ASSERT_EQ(a.defined(), b.defined()) << what;
  if (!a.defined()) return;
  ASSERT_EQ(a.sizes(), b.sizes()) << what;
  EXPECT_TRUE(torch::allclose(a, b, tol, tol)) << what << ": largest difference "
                                               << (a - b).abs().max().item<double>();
}

// gate_views and composed_gate_views on copies of x: the same outputs and input gradients.
void expect_same(const Inputs& x, double au_weight, double tol, bool use_gated = true, bool use_alphas = true) {
  const auto fused_in = copy_of(x), composed_in = copy_of(x);
  const auto fused = enhance::gate_views(fused_in.projected, fused_in.anchors, fused_in.weights, au_weight);
  const auto composed =
      enhance::composed_gate_views(composed_in.projected, composed_in.anchors, composed_in.weights, au_weight);
  ASSERT_EQ(fused.gated.size(), composed.gated.size());
  for (std::size_t v = 0; v < fused.gated.size(); ++v) expect_close(fused.gated[v], composed.gated[v], tol, "gated");
  expect_close(fused.alphas, composed.alphas, tol, "alphas");
  expect_close(fused.au, composed.au, tol, "au");
  loss_of(fused, use_gated, use_alphas, 5).backward();
  loss_of(composed, use_gated, use_alphas, 5).backward();
  expect_close(fused_in.projected.grad(), composed_in.projected.grad(), tol, "d projected");
  for (std::size_t v = 0; v < x.anchors.size(); ++v) {
    expect_close(fused_in.anchors[v].grad(), composed_in.anchors[v].grad(), tol, "d anchor");
    expect_close(fused_in.weights[v].grad(), composed_in.weights[v].grad(), tol, "d gate");
  }
}

}  // namespace

TEST(ViewGates, EqualsTheComposedComputationWithGradients) {
  for (const std::int64_t v : {1, 2})
    for (const double w : {0.1, 0.05}) {
      SCOPED_TRACE("views " + std::to_string(v) + ", au_weight " + std::to_string(w));
      expect_same(inputs(9, v, 7, torch::kFloat64, 3 + v), w, 1e-10);
      expect_same(inputs(9, v, 7, torch::kFloat32, 3 + v), w, 2e-5);
    }
}

TEST(ViewGates, TakesTheWrittenOutPathOnCpu) {
  // A broken dispatch decision would pass the comparisons above against itself: name the node.
  auto x = inputs(4, 2, 5, torch::kFloat32, 1);
  const auto out = enhance::gate_views(x.projected, x.anchors, x.weights, 0.1);
  ASSERT_TRUE(out.gated[0].grad_fn());
  EXPECT_NE(out.gated[0].grad_fn()->name().find("ViewGates"), std::string::npos) << out.gated[0].grad_fn()->name();
}

TEST(ViewGates, WithoutDirectAuOnlyTheGates) {
  auto x = inputs(6, 2, 4, torch::kFloat64, 2);
  const auto out = enhance::gate_views(x.projected, x.anchors, x.weights, 0.0);
  EXPECT_FALSE(out.au.defined());
  expect_same(x, 0.0, 1e-10);
}

TEST(ViewGates, BatchesWithoutPairsZeroRowsAndRepeatedRows) {
  expect_same(inputs(1, 2, 5, torch::kFloat64, 4), 0.1, 1e-10);  // no pair: L_u = 0
  auto x = inputs(5, 2, 6, torch::kFloat64, 5);
  {
    torch::NoGradGuard no_grad;
    x.projected[1][0].zero_();  // a zero row: normalized by eps, not by its norm
    x.anchors[1][2].zero_();
    x.anchors[0][3].copy_(x.anchors[0][4]);  // two equal rows: squared distance ~0, clamped
    x.projected[0][1].copy_(x.projected[2][1]);
  }
  expect_same(x, 0.1, 1e-9);
}

TEST(ViewGates, OutputsLeftUnusedHaveNoGradient) {
  const auto x = inputs(7, 2, 5, torch::kFloat64, 6);
  expect_same(x, 0.1, 1e-10, /*use_gated=*/false, /*use_alphas=*/false);  // the DirectAU loss alone
  expect_same(x, 0.1, 1e-10, /*use_gated=*/true, /*use_alphas=*/false);
  expect_same(x, 0.0, 1e-10, /*use_gated=*/false, /*use_alphas=*/true);
}

TEST(ViewGates, WithoutGradientsAsInServing) {
  auto x = inputs(5, 2, 4, torch::kFloat32, 7);
  torch::NoGradGuard no_grad;
  const auto fused = enhance::gate_views(x.projected, x.anchors, x.weights, 0.0);
  const auto composed = enhance::composed_gate_views(x.projected, x.anchors, x.weights, 0.0);
  EXPECT_FALSE(fused.gated[0].requires_grad());
  expect_close(fused.gated[1], composed.gated[1], 1e-6, "gated");
  expect_close(fused.alphas, composed.alphas, 1e-6, "alphas");
}

TEST(ViewGates, BadShapesAreErrors) {
  auto x = inputs(4, 2, 5, torch::kFloat32, 8);
  EXPECT_THROW(enhance::gate_views(x.projected[0], x.anchors, x.weights, 0.1), Error);  // [V, d]
  EXPECT_THROW(enhance::gate_views(x.projected, {x.anchors[0]}, x.weights, 0.1), Error);
  EXPECT_THROW(enhance::gate_views(x.projected, {x.anchors[0], x.anchors[1].narrow(0, 0, 3)}, x.weights, 0.1), Error);
  EXPECT_THROW(enhance::gate_views(x.projected, x.anchors, {x.weights[0], x.weights[1].narrow(1, 0, 4)}, 0.1), Error);
  EXPECT_THROW(enhance::gate_views(x.projected, {x.anchors[0], x.anchors[1].to(torch::kFloat64)}, x.weights, 0.1),
               Error);
  EXPECT_THROW(enhance::gate_views(x.projected, x.anchors, x.weights, -1.0), Error);
}
