// causal_attention's written-out kernel against the composed computation on the padded window and against a
// session-by-session dense attention: the same outputs and gradients of q, k and v (float rounding aside),
// with and without dropout multipliers, one or more heads; attention_keep's draws; the refusals.
#include "llm4sbr/models/packed_attention.hpp"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "llm4sbr/core/error.hpp"
#include "models/kernel_testing.hpp"

namespace llm4sbr::models {
namespace {

namespace F = torch::nn::functional;

// Session by session, head by head: softmax of the causal-masked q kᵀ / √dh, times the keep multipliers
// (read in the session, head, query, key order), times v.
torch::Tensor dense_reference(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                              const std::vector<std::int64_t>& lengths, std::int64_t heads, const torch::Tensor& keep) {
  const auto d = q.size(1), dh = d / heads;
  std::vector<torch::Tensor> rows;
  std::int64_t row = 0, pair = 0;
  for (const auto m : lengths) {
    std::vector<torch::Tensor> per_head;
    const auto lower = torch::ones({m, m}, torch::kBool).tril();
    for (std::int64_t j = 0; j < heads; ++j) {
      auto slice = [&](const torch::Tensor& t) { return t.narrow(0, row, m).narrow(1, j * dh, dh); };
      const auto logits = slice(q).mm(slice(k).t()) / std::sqrt(static_cast<double>(dh));
      auto weights = torch::softmax(logits.masked_fill(lower.logical_not(), -INFINITY), 1);
      if (keep.defined()) {
        weights = weights * torch::zeros_like(weights).masked_scatter(lower, keep.narrow(0, pair, m * (m + 1) / 2));
        pair += m * (m + 1) / 2;
      }
      per_head.push_back(weights.mm(slice(v)));
    }
    rows.push_back(torch::cat(per_head, 1));
    row += m;
  }
  return torch::cat(rows, 0);
}

// An attention's output and the gradients of q, k and v (testing::output_and_gradients).
template <typename Attention>
std::vector<torch::Tensor> run(Attention attention, const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v, const torch::Tensor& weights) {
  return testing::output_and_gradients([&](auto& t) { return attention(t[0], t[1], t[2]); }, {q, k, v}, weights);
}

void expect_kernel_equals_references(torch::Dtype dtype, double tolerance, std::int64_t heads, bool with_keep) {
  const std::vector<std::int64_t> lengths_of{3, 1, 6, 2, 5};
  const auto lengths = torch::tensor(lengths_of, torch::kLong);
  const std::int64_t rows = 17, d = 8;
  torch::manual_seed(11);
  const auto q = torch::randn({rows, d}, dtype) * 2, k = torch::randn({rows, d}, dtype), v = torch::randn({rows, d}, dtype);
  const auto weights = torch::randn({rows, d}, dtype);
  const auto keep = with_keep ? torch::empty({causal_pairs(lengths, heads)}, dtype).bernoulli_(0.6).div_(0.6)
                              : torch::Tensor();

  const auto kernel = run([&](auto& a, auto& b, auto& c) { return causal_attention(a, b, c, lengths, heads, keep); },
                          q, k, v, weights);
  const auto composed = run(
      [&](auto& a, auto& b, auto& c) { return composed_causal_attention(a, b, c, lengths, heads, keep); }, q, k, v,
      weights);
  const auto dense = run([&](auto& a, auto& b, auto& c) { return dense_reference(a, b, c, lengths_of, heads, keep); },
                         q, k, v, weights);
  testing::expect_all_close(kernel, dense, tolerance);
  testing::expect_all_close(composed, dense, tolerance);
}

TEST(PackedAttention, EqualsTheDenseAndComposedAttentionInDouble) {
  for (const std::int64_t heads : {1, 2})
    for (const bool keep : {false, true}) expect_kernel_equals_references(torch::kFloat64, 1e-12, heads, keep);
}

TEST(PackedAttention, EqualsTheDenseAndComposedAttentionInFloat) {
  for (const std::int64_t heads : {1, 4})
    for (const bool keep : {false, true}) expect_kernel_equals_references(torch::kFloat32, 2e-5, heads, keep);
}

TEST(PackedAttention, CountsTheCausalPairs) {
  EXPECT_EQ(causal_pairs(torch::tensor({3L, 1L, 50L}), 1), 6 + 1 + 1275);
  EXPECT_EQ(causal_pairs(torch::tensor({3L, 1L}), 2), 14);
}

TEST(PackedAttention, RefusesBadShapes) {
  const auto x = torch::randn({4, 6});
  EXPECT_THROW(causal_attention(x, x, x, torch::tensor({3L, 0L, 1L}), 1), Error);  // an empty session
  EXPECT_THROW(causal_attention(x, x, x, torch::tensor({3L, 2L}), 1), Error);      // 5 rows, not 4
  EXPECT_THROW(causal_attention(x, x, x, torch::tensor({4L}), 4), Error);          // 4 does not divide 6
  EXPECT_THROW(causal_attention(x, x.narrow(1, 0, 5), x, torch::tensor({4L}), 1), Error);
  EXPECT_THROW(causal_attention(x, x, x, torch::tensor({4L}), 1, torch::ones({9})), Error);  // 10 pairs
  EXPECT_THROW(causal_attention(x, x, x, torch::tensor({4.0}), 1), Error);
}

// Without padded masks one draw a pair, in order: 0 or 1 / (1 - p). With them, F::dropout's draws over the
// padded [B, h, n, n] tensor read at the allowed pairs of real queries. None when not training.
TEST(PackedAttention, KeepDrawsForThePairsOrThePaddedWindow) {
  const auto lengths = torch::tensor({3L, 1L});  // a window of 4, 2 heads: 2 x (6 + 1) pairs
  const auto options = torch::TensorOptions(torch::kFloat32);
  const double p = 0.5;
  torch::manual_seed(3);
  const auto keep = attention_keep(lengths, 4, 2, p, true, false, options);
  torch::manual_seed(3);
  EXPECT_TRUE(torch::equal(keep, torch::empty({14}).bernoulli_(1 - p).div_(1 - p)));
  EXPECT_TRUE(torch::allclose(keep * (keep - 1 / (1 - p)), torch::zeros({14}), 0, 1e-6)) << keep;

  torch::manual_seed(3);
  const auto whole = F::dropout(torch::ones({2, 2, 4, 4}), F::DropoutFuncOptions().p(p).training(true));
  const auto real = torch::tensor({1, 1, 1, 0, 1, 0, 0, 0}, torch::kBool).view({2, 4});
  const auto allowed = torch::ones({4, 4}, torch::kBool).tril().unsqueeze(0).logical_and(real.unsqueeze(1));
  const auto counted = allowed.logical_and(real.unsqueeze(2)).unsqueeze(1).expand({2, 2, 4, 4});
  torch::manual_seed(3);
  EXPECT_TRUE(torch::equal(attention_keep(lengths, 4, 2, p, true, true, options), whole.masked_select(counted)));

  EXPECT_FALSE(attention_keep(lengths, 4, 2, p, false, false, options).defined());
  EXPECT_FALSE(attention_keep(lengths, 4, 2, 0.0, true, false, options).defined());
  EXPECT_TRUE(torch::equal(attention_keep(lengths, 4, 2, 1.0, true, false, options), torch::zeros({14})));
}

// Over many pairs the kept share is 1 - p (the law of F::dropout).
TEST(PackedAttention, KeepKeepsOneMinusP) {
  torch::manual_seed(5);
  const auto keep = attention_keep(torch::full({64}, 50L), 50, 1, 0.3, true, false, torch::TensorOptions(torch::kFloat32));
  EXPECT_EQ(keep.numel(), 64 * 1275);
  EXPECT_NEAR((keep > 0).to(torch::kFloat64).mean().item<double>(), 0.7, 0.01);
}

}  // namespace
}  // namespace llm4sbr::models
