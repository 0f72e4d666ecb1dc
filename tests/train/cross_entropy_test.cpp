// The fused next-item loss against F::cross_entropy: the same loss and gradient (float rounding aside) on
// scores of several scales, a loss scaled after it (the distributed trainer weights a shard's loss), the
// fallback for other dtypes, and a target outside the catalogue refused.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "llm4sbr/train/cross_entropy.hpp"

namespace {

// {loss, ∂(weight · loss)/∂scores} of `loss_of` on a copy of scores.
template <typename Loss>
std::pair<torch::Tensor, torch::Tensor> loss_and_gradient(Loss loss_of, const torch::Tensor& scores,
                                                           const torch::Tensor& targets, double weight = 1) {
  auto s = scores.detach().clone().requires_grad_();
  auto loss = loss_of(s, targets);
  (loss * weight).backward();
  return {loss.detach(), s.grad()};
}

torch::Tensor torch_loss(const torch::Tensor& s, const torch::Tensor& t) {
  return torch::nn::functional::cross_entropy(s, t);
}

torch::Tensor fused_loss(const torch::Tensor& s, const torch::Tensor& t) { return llm4sbr::train::cross_entropy(s, t); }

// Scores of order `scale` over a catalogue of n items, with repeated targets and the first and last item.
std::pair<torch::Tensor, torch::Tensor> batch(double scale, std::int64_t n = 1001) {
  torch::manual_seed(3);
  auto targets = torch::randint(0, n, {37}, torch::kLong);
  targets[0] = 0, targets[1] = n - 1, targets[2] = targets[3];
  return {torch::randn({37, n}) * scale, targets};
}

}  // namespace

// A loss of order log N ≈ 7 (scale 1) to ~100 (scale 50, where exp without the row maximum would overflow).
// Its float ulp is ~1e-6..1e-5, and torch's exp(s − log-sum-exp) inherits that relative error: gradient
// values are ≤ 1/B, so they may differ by ~1e-5/B ≈ 3e-7, while a wrong term (a softmax not normalised, the
// target's −1/B missing) is off by ~1/(B·N) ≈ 3e-5 or 1/B ≈ 0.03.
TEST(CrossEntropy, FusedEqualsTorchsLossAndGradient) {
  for (double scale : {1.0, 10.0, 50.0}) {
    auto [scores, targets] = batch(scale);
    auto [torch_value, torch_grad] = loss_and_gradient(torch_loss, scores, targets);
    auto [fused_value, fused_grad] = loss_and_gradient(fused_loss, scores, targets);
    const double loss = torch_value.item<double>();
    EXPECT_NEAR(fused_value.item<double>(), loss, 2e-6 * std::max(1.0, loss)) << "scale " << scale;
    EXPECT_LT((fused_grad - torch_grad).abs().max().item<double>(), 1e-5 / 37) << "scale " << scale;
    EXPECT_NEAR(fused_grad.sum().item<double>(), 0, 1e-6);  // softmax − one-hot sums to 0 in each row
  }
}

// 30,001 items: rows larger than a core's L1 cache, and a length that is not a multiple of the 16 lanes.
TEST(CrossEntropy, ALargeCatalogueEqualsTorchs) {
  auto [scores, targets] = batch(10, 30001);
  auto [torch_value, torch_grad] = loss_and_gradient(torch_loss, scores, targets);
  auto [fused_value, fused_grad] = loss_and_gradient(fused_loss, scores, targets);
  EXPECT_NEAR(fused_value.item<double>(), torch_value.item<double>(), 2e-6 * torch_value.item<double>());
  EXPECT_LT((fused_grad - torch_grad).abs().max().item<double>(), 1e-5 / 37);
}

// The gradient handed back is the one the forward pass made: a second backward (retain_graph) must find it as
// the first left it, even when the first accumulated it into the scores' .grad.
TEST(CrossEntropy, ASecondBackwardGivesTheSameGradient) {
  auto [scores, targets] = batch(1);
  auto s = scores.clone().requires_grad_();
  auto loss = fused_loss(s, targets);
  loss.backward({}, /*retain_graph=*/true);
  const auto first = s.grad().clone();
  loss.backward();
  EXPECT_TRUE(torch::allclose(s.grad(), 2 * first, 0, 1e-9));
  auto [torch_value, torch_grad] = loss_and_gradient(torch_loss, scores, targets);
  EXPECT_LT((first - torch_grad).abs().max().item<double>(), 1e-5 / 37);
}

// The trainer stops on a loss that is not finite: a NaN or infinite score must not vanish in the fused pass.
TEST(CrossEntropy, ANonFiniteScoreGivesANonFiniteLoss) {
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    auto [scores, targets] = batch(1);
    scores[7][500] = bad;
    EXPECT_FALSE(std::isfinite(fused_loss(scores, targets).item<float>())) << bad;
  }
}

TEST(CrossEntropy, AWeightedLossScalesTheGradient) {
  auto [scores, targets] = batch(1);
  auto [torch_value, torch_grad] = loss_and_gradient(torch_loss, scores, targets, 0.25);
  auto [fused_value, fused_grad] = loss_and_gradient(fused_loss, scores, targets, 0.25);
  EXPECT_LT((fused_grad - torch_grad).abs().max().item<double>(), 0.25e-5 / 37);
  EXPECT_NEAR(fused_value.item<double>(), torch_value.item<double>(), 2e-5);  // the loss itself is not weighted
}

TEST(CrossEntropy, OtherDtypesGoToTorchsLoss) {
  auto [scores, targets] = batch(1);
  auto [torch_value, torch_grad] = loss_and_gradient(torch_loss, scores.to(torch::kDouble), targets);
  auto [fused_value, fused_grad] = loss_and_gradient(fused_loss, scores.to(torch::kDouble), targets);
  EXPECT_EQ(fused_value.item<double>(), torch_value.item<double>());  // the same computation: equal by construction
  EXPECT_TRUE(torch::equal(fused_grad, torch_grad));
}

TEST(CrossEntropy, ATargetOutsideTheCatalogueIsRefused) {
  auto [scores, targets] = batch(1);
  targets[5] = 1001;
  EXPECT_THROW(fused_loss(scores, targets), c10::Error);
  targets[5] = -1;
  EXPECT_THROW(fused_loss(scores, targets), c10::Error);
}
