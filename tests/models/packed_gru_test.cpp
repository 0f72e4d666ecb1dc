// packed_gru_layer against torch::nn::GRU on the same packed sequences: the same states and the same gradients
// of the input and of the four parameters (float rounding aside), and its refusals.
#include "llm4sbr/models/packed_gru.hpp"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "llm4sbr/core/error.hpp"
#include "models/kernel_testing.hpp"

namespace llm4sbr::models {
namespace {

namespace rnn = torch::nn::utils::rnn;

using testing::relative_difference;

// Sequences of the given lengths (at most 5), d_in 6, d 4, non-zero biases; the loss weighs every state
// differently so that each row's gradient matters. The parameters must not change (a scratch buffer that
// aliased b_hh once overwrote it when a step had one row). With `initial`, both start from the same random
// h_0 (torch's in the sequences' order, ours in the packed order) and its gradients must agree too.
void expect_equal_to_torchs_gru(torch::Dtype dtype, double tolerance, const std::vector<std::int64_t>& lengths_of,
                                double input_scale = 1, bool initial = false) {
  torch::manual_seed(5);
  torch::nn::GRU gru(torch::nn::GRUOptions(6, 4).batch_first(true));
  gru->to(dtype);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : gru->parameters()) p.uniform_(-0.8, 0.8);
  }
  std::vector<torch::Tensor> before;
  for (auto& p : gru->parameters()) before.push_back(p.detach().clone());
  const auto batch = static_cast<std::int64_t>(lengths_of.size());
  const auto lengths = torch::tensor(lengths_of, torch::kLong);
  const auto input = torch::randn({batch, 5, 6}, dtype) * input_scale;
  const auto weights = torch::randn({batch, 5, 4}, dtype);
  const auto h_0 = torch::randn({1, batch, 4}, dtype);

  auto loss_of = [&](const rnn::PackedSequence& states) {
    const auto padded = std::get<0>(rnn::pad_packed_sequence(states, true, 0.0, 5));
    return (padded * weights).sum();
  };
  auto x1 = input.clone().requires_grad_();
  auto h1 = h_0.clone().requires_grad_();
  const auto packed1 = rnn::pack_padded_sequence(x1, lengths, true, false);
  const auto theirs = std::get<0>(gru->forward_with_packed_input(packed1, initial ? h1 : torch::Tensor()));
  loss_of(theirs).backward();
  std::vector<torch::Tensor> their_grads;
  for (auto& p : gru->parameters()) their_grads.push_back(p.grad().clone()), p.mutable_grad().reset();

  auto x2 = input.clone().requires_grad_();
  auto h2 = h_0.clone().requires_grad_();
  const auto packed2 = rnn::pack_padded_sequence(x2, lengths, true, false);
  auto params = gru->named_parameters();
  const auto h2_packed = initial ? h2[0].index_select(0, packed2.sorted_indices()) : torch::Tensor();
  const auto mine_data =
      packed_gru_layer(packed2.data(), packed2.batch_sizes(), params["weight_ih_l0"], params["weight_hh_l0"],
                       params["bias_ih_l0"], params["bias_hh_l0"], h2_packed);
  const rnn::PackedSequence mine(mine_data, packed2.batch_sizes(), packed2.sorted_indices(),
                                 packed2.unsorted_indices());
  loss_of(mine).backward();

  EXPECT_LT(relative_difference(mine.data(), theirs.data()), tolerance);
  EXPECT_LT(relative_difference(x2.grad(), x1.grad()), tolerance);
  if (initial) EXPECT_LT(relative_difference(h2.grad(), h1.grad()), tolerance);
  std::size_t i = 0;
  for (const auto& item : gru->named_parameters())
    EXPECT_LT(relative_difference(item.value().grad(), their_grads[i++]), tolerance) << item.key();
  i = 0;
  for (const auto& item : gru->named_parameters()) EXPECT_TRUE(torch::equal(item.value(), before[i++])) << item.key();
}

// Float64: the same sums in another order agree to ~1e-15; a wrong term would be off by ~1e-1.
// Lengths 5, 1, 3, 5, 2: unsorted, with a tie; then one sequence alone (one row a step).
TEST(PackedGru, EqualsTorchsGruInDouble) {
  expect_equal_to_torchs_gru(torch::kFloat64, 1e-12, {5, 1, 3, 5, 2});
  expect_equal_to_torchs_gru(torch::kFloat64, 1e-12, {4});
}

// Float32: a few ulps (1.2e-7) of rounding through five steps; the loop's own exp, σ and tanh among them.
TEST(PackedGru, EqualsTorchsGruInFloat) {
  expect_equal_to_torchs_gru(torch::kFloat32, 1e-5, {5, 1, 3, 5, 2});
  expect_equal_to_torchs_gru(torch::kFloat32, 1e-5, {4});
  expect_equal_to_torchs_gru(torch::kFloat32, 1e-5, {5, 1, 3, 5, 2}, 40);  // pre-activations up to ~±150: saturated
}

// From a given h_0 (a GRU cell when there is one step, as SR-GNN's gated graph uses it).
TEST(PackedGru, EqualsTorchsGruFromAnInitialState) {
  expect_equal_to_torchs_gru(torch::kFloat64, 1e-12, {5, 1, 3, 5, 2}, 1, /*initial=*/true);
  expect_equal_to_torchs_gru(torch::kFloat64, 1e-12, {1, 1, 1}, 1, /*initial=*/true);  // one step: a cell
  expect_equal_to_torchs_gru(torch::kFloat32, 1e-5, {5, 1, 3, 5, 2}, 1, /*initial=*/true);
  expect_equal_to_torchs_gru(torch::kFloat32, 1e-5, {1, 1, 1, 1}, 40, /*initial=*/true);
}

TEST(PackedGru, RefusesWhatItCannotRun) {
  const auto x = torch::randn({6, 3});
  const auto w_ih = torch::randn({12, 3}), w_hh = torch::randn({12, 4}), b = torch::randn({12});
  const auto sizes = torch::tensor({3, 2, 1}, torch::kLong);
  EXPECT_NO_THROW(packed_gru_layer(x, sizes, w_ih, w_hh, b, b));
  EXPECT_THROW(packed_gru_layer(x, torch::tensor({3, 2}, torch::kLong), w_ih, w_hh, b, b), Error);     // 5 rows, not 6
  EXPECT_THROW(packed_gru_layer(x, torch::tensor({2, 3, 1}, torch::kLong), w_ih, w_hh, b, b), Error);  // increasing
  EXPECT_THROW(packed_gru_layer(x, sizes, torch::randn({12, 4}), w_hh, b, b), Error);                  // d_in 4 ≠ 3
  EXPECT_THROW(packed_gru_layer(x.to(torch::kHalf), sizes, w_ih, w_hh, b, b), Error);
  EXPECT_THROW(packed_gru_layer(x, sizes.to(torch::kInt), w_ih, w_hh, b, b), Error);
  EXPECT_NO_THROW(packed_gru_layer(x, sizes, w_ih, w_hh, b, b, torch::randn({3, 4})));
  EXPECT_THROW(packed_gru_layer(x, sizes, w_ih, w_hh, b, b, torch::randn({2, 4})), Error);  // not step 0's 3 rows
  EXPECT_THROW(packed_gru_layer(x, sizes, w_ih, w_hh, b, b, torch::randn({3, 4}, torch::kFloat64)), Error);
}

}  // namespace
}  // namespace llm4sbr::models
