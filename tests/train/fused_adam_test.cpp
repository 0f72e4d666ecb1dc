// FusedAdam against torch::optim::Adam: the same parameters and moments after several steps (float rounding
// aside), states that load into each other, and torch's own step where the fused loop does not apply.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <sstream>
#include <vector>

#include "llm4sbr/train/fused_adam.hpp"

namespace {

// An embedding-like table (more values than one parallel task), a bias, and a parameter that never gets a
// gradient.
std::vector<torch::Tensor> parameters() {
  torch::manual_seed(7);
  return {torch::randn({1200, 40}).requires_grad_(), torch::randn({17}).requires_grad_(),
          torch::randn({3, 3}).requires_grad_()};
}

// Sets seeded gradients (large and tiny values, zeros) on the first two parameters of `params`.
void set_gradients(std::vector<torch::Tensor>& params, int step) {
  torch::manual_seed(100 + step);
  for (std::size_t i = 0; i < 2; ++i) {
    auto g = torch::randn(params[i].sizes()) * (i == 0 ? 1e-3 : 10.0);
    g.index_put_({torch::indexing::Slice(0, 5)}, 0);  // rows no sample touched: zero gradient, decaying moments
    params[i].mutable_grad() = g;
  }
}

// Largest |a - b| over the values of two parameter lists.
double max_difference(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, (a[i] - b[i]).abs().max().item<double>());
  return worst;
}

// The parameters are of order 1 (randn), where a float's ulp is 1.2e-7: 1e-6 allows a few ulps of rounding
// (torch computes m + (1-β1)·g with a fused multiply-add, the loop may not). A step moves a value by about
// lr = 1e-2, so a wrong update, or a moment lost on the way, is thousands of times larger.
constexpr double kRounding = 1e-6;

template <typename Optimizer>
void run_steps(Optimizer& optimizer, std::vector<torch::Tensor>& params, int from, int to) {
  for (int step = from; step < to; ++step) {
    set_gradients(params, step);
    if (step >= 3)  // the trainer's learning-rate decay, set before each step as the trainer does each epoch
      for (auto& group : optimizer.param_groups()) static_cast<torch::optim::AdamOptions&>(group.options()).lr(1e-4);
    optimizer.step();
  }
}

// `to` continues from `from`'s state, through the bytes a state.pt holds.
void copy_state(const torch::optim::Optimizer& from, torch::optim::Optimizer& to) {
  std::stringstream bytes;
  torch::serialize::OutputArchive out;
  from.save(out);
  out.save_to(bytes);
  torch::serialize::InputArchive in;
  in.load_from(bytes);
  to.load(in);
}

const auto kOptions = torch::optim::AdamOptions(1e-2).weight_decay(1e-5);

}  // namespace

TEST(FusedAdam, SixStepsGiveTorchAdamsParametersAndMoments) {
  auto fused_params = parameters(), torch_params = parameters();
  llm4sbr::train::FusedAdam fused(fused_params, kOptions);
  torch::optim::Adam reference(torch_params, kOptions);
  run_steps(fused, fused_params, 0, 6);
  run_steps(reference, torch_params, 0, 6);
  EXPECT_LT(max_difference(fused_params, torch_params), kRounding);
  EXPECT_FALSE(torch::equal(fused_params[0], parameters()[0])) << "the parameters did not move";
  EXPECT_TRUE(torch::equal(fused_params[2], parameters()[2])) << "a parameter without a gradient moved";
  EXPECT_EQ(fused.state().size(), 2u) << "a state for the parameter without a gradient";
}

// A state saved by one optimizer continues in the other: the same keys and the same AdamParamState.
TEST(FusedAdam, StatesLoadIntoTorchAdamAndBack) {
  auto whole_params = parameters();
  torch::optim::Adam whole(whole_params, kOptions);
  run_steps(whole, whole_params, 0, 6);

  auto params = parameters();
  llm4sbr::train::FusedAdam first(params, kOptions);
  run_steps(first, params, 0, 2);
  torch::optim::Adam second(params, kOptions);
  copy_state(first, second);
  run_steps(second, params, 2, 4);
  llm4sbr::train::FusedAdam third(params, kOptions);
  copy_state(second, third);
  run_steps(third, params, 4, 6);
  // A state under another key would start from zero moments: the parameters would end ~lr away.
  EXPECT_LT(max_difference(params, whole_params), kRounding);
}

// amsgrad is not fused: the step is torch's own, so the result is torch's exactly.
TEST(FusedAdam, WhatItDoesNotFuseIsTorchsStep) {
  auto fused_params = parameters(), torch_params = parameters();
  const auto options = torch::optim::AdamOptions(1e-2).amsgrad(true);
  llm4sbr::train::FusedAdam fused(fused_params, options);
  torch::optim::Adam reference(torch_params, options);
  run_steps(fused, fused_params, 0, 4);
  run_steps(reference, torch_params, 0, 4);
  for (std::size_t i = 0; i < fused_params.size(); ++i) EXPECT_TRUE(torch::equal(fused_params[i], torch_params[i])) << i;
}

// clear_gradients then backward-made gradients, against torch's zero_grad() then the same: the same steps,
// also when a parameter that had gradients gets none in a step (zero_grad leaves it zero, and Adam still moves
// it by its moments and weight decay) and for a parameter that never gets one (no state, no move).
TEST(FusedAdam, ClearedGradientsStepAsZeroGradDoes) {
  auto fused_params = parameters(), torch_params = parameters();
  llm4sbr::train::FusedAdam fused(fused_params, kOptions);
  torch::optim::Adam reference(torch_params, kOptions);
  for (int step = 0; step < 5; ++step) {
    llm4sbr::train::clear_gradients(fused);
    reference.zero_grad();
    for (auto* params : {&fused_params, &torch_params}) {
      torch::manual_seed(200 + step);
      auto loss = ((*params)[0] * torch::randn({1200, 40})).sum();
      if (step != 2) loss = loss + ((*params)[1] * torch::randn({17})).sum();  // the bias gets none at step 2
      loss.backward();
    }
    EXPECT_FALSE(fused_params[2].grad().defined());
    if (step == 2) EXPECT_FALSE(fused_params[1].grad().defined());
    fused.step();
    reference.step();
  }
  EXPECT_LT(max_difference(fused_params, torch_params), kRounding);
  EXPECT_TRUE(torch::equal(fused_params[2], parameters()[2])) << "a parameter without a gradient moved";
}

// A table that was only looked up (models::item_lookup, nothing scored against it) gets a sparse gradient:
// densify_gradients makes it the dense tensor of the same values, and FusedAdam steps it as the dense gradient.
TEST(FusedAdam, SparseGradientsAreDensifiedAndStepped) {
  torch::manual_seed(9);
  const auto start = torch::randn({10, 4});
  auto sparse_table = start.clone().requires_grad_(), dense_table = start.clone().requires_grad_();
  const auto ids = torch::tensor({2L, 5L, 2L});
  namespace F = torch::nn::functional;
  (F::embedding(ids, sparse_table, F::EmbeddingFuncOptions().sparse(true)) * 3).sum().backward();
  (F::embedding(ids, dense_table) * 3).sum().backward();
  ASSERT_TRUE(sparse_table.grad().is_sparse());
  llm4sbr::train::FusedAdam sparse_adam(std::vector<torch::Tensor>{sparse_table}, kOptions);
  llm4sbr::train::densify_gradients(sparse_adam);
  ASSERT_FALSE(sparse_table.grad().is_sparse());
  EXPECT_TRUE(torch::equal(sparse_table.grad(), dense_table.grad()));
  // FusedAdam::step densifies by itself: the sparse gradient again, then one step of each.
  sparse_table.mutable_grad() = torch::Tensor();
  (F::embedding(ids, sparse_table, F::EmbeddingFuncOptions().sparse(true)) * 3).sum().backward();
  ASSERT_TRUE(sparse_table.grad().is_sparse());
  llm4sbr::train::FusedAdam dense_adam(std::vector<torch::Tensor>{dense_table}, kOptions);
  sparse_adam.step();
  dense_adam.step();
  EXPECT_TRUE(torch::equal(sparse_table, dense_table));
}
