// The packed-click operations of models/segments.hpp: the segment softmax against a dense, padded
// softmax, and packing padded states into clicks.
#include "llm4sbr/models/segments.hpp"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace llm4sbr::models {
namespace {

// ---------------------------------------------------------------------------------------------------
// The segment softmax against a dense, padded softmax.

TEST(Segments, SoftmaxSumMatchesDenseSoftmaxPerSegment) {
  const auto logits = torch::randn({6, 3}, torch::kFloat64);
  const auto values = torch::randn({6, 3}, torch::kFloat64);
  const auto segments = torch::tensor({0L, 0L, 1L, 2L, 2L, 2L});
  const std::vector<std::pair<std::int64_t, std::int64_t>> rows = {{0, 2}, {2, 3}, {3, 6}};
  // Dense: each segment's softmax over its rows (plus `pad` rows of logit p and value 0), then Σ w v.
  const auto dense = [&](std::int64_t s, const torch::Tensor& l, const torch::Tensor& v, std::int64_t pad,
                         const torch::Tensor& p) {
    auto ls = l.slice(0, rows[s].first, rows[s].second);
    auto vs = v.slice(0, rows[s].first, rows[s].second);
    if (pad > 0) {
      ls = torch::cat({ls, p.expand({pad, ls.size(1)})});
      vs = torch::cat({vs, torch::zeros({pad, vs.size(1)}, vs.options())});
    }
    return (torch::softmax(ls, 0) * vs).sum(0);
  };
  const auto out = segment_softmax_sum(logits, values, segments, 3);
  ASSERT_EQ(out.sizes(), (std::vector<std::int64_t>{3, 3}));
  for (std::int64_t s = 0; s < 3; ++s) EXPECT_TRUE(torch::allclose(out[s], dense(s, logits, values, 0, {})));
  const auto ones = torch::ones({6, 3}, torch::kFloat64);
  EXPECT_TRUE(torch::allclose(segment_softmax_sum(logits, ones, segments, 3), torch::ones({3, 3}, torch::kFloat64)));

  // One weight per row (K = 1) over vectors of width 4.
  const auto vectors = torch::randn({6, 4}, torch::kFloat64);
  const auto single = segment_softmax_sum(logits.slice(1, 0, 1), vectors, segments, 3);
  ASSERT_EQ(single.sizes(), (std::vector<std::int64_t>{3, 4}));
  for (std::int64_t s = 0; s < 3; ++s)
    EXPECT_TRUE(torch::allclose(single[s], dense(s, logits.slice(1, 0, 1).expand({6, 4}), vectors, 0, {})));

  // With padding: segment 0 gets 3 virtual rows of logit p, segment 1 none, segment 2 one.
  const auto pad_logit = torch::randn({3, 3}, torch::kFloat64);
  const auto pad_count = torch::tensor({3L, 0L, 1L});
  const auto padded = segment_softmax_sum(logits, values, segments, 3, pad_logit, pad_count);
  for (std::int64_t s = 0; s < 3; ++s)
    EXPECT_TRUE(torch::allclose(padded[s], dense(s, logits, values, pad_count[s].item<std::int64_t>(), pad_logit[s])));
  const auto sums = segment_softmax_sum(logits, ones, segments, 3, pad_logit, pad_count);
  EXPECT_TRUE(sums[0].lt(1).all().item<bool>());
  EXPECT_TRUE(torch::allclose(sums[1], torch::ones({3}, torch::kFloat64)));
  EXPECT_TRUE(sums[2].lt(1).all().item<bool>());

  // Stable for huge logits, and segment 1 (no padding, logits far below the pad logit 0) gives no
  // 0 · exp(+large) = NaN, in the value or the gradient; a broadcast [n, 1] pad logit works.
  const auto big = (logits * 1e4).detach().requires_grad_(true);
  const auto huge = segment_softmax_sum(big, values, segments, 3, torch::zeros({3, 1}, torch::kFloat64), pad_count);
  EXPECT_TRUE(torch::isfinite(huge).all().item<bool>()) << huge;
  (huge * torch::randn_like(huge)).sum().backward();
  EXPECT_TRUE(torch::isfinite(big.grad()).all().item<bool>());
  const auto low = segment_softmax_sum(-1e4 - logits.abs(), ones, segments, 3, torch::zeros({3, 1}, torch::kFloat64), pad_count);
  EXPECT_TRUE(torch::allclose(low[1], torch::ones({3}, torch::kFloat64)));
}

// The fused path (float32 on the CPU, K = D, each segment's rows back to back: TAGNN's target attention)
// against the composed LibTorch operations, forward and both gradients, with and without padding rows, for
// widths with and without a vector tail, logits spread wide enough that the shift matters.
TEST(Segments, FusedSoftmaxSumEqualsTheComposedOperations) {
  auto gen = at::detail::createCPUGenerator(7);
  const auto segments = torch::tensor({0L, 0L, 0L, 1L, 2L, 2L, 3L, 3L, 3L, 3L, 3L});
  const auto pad_count = torch::tensor({2L, 0L, 1L, 0L});
  for (const std::int64_t k : {1, 5, 8, 37}) {
    for (const int variant : {0, 1, 2}) {  // no padding; a zero [S, 1] pad logit (TAGNN's); a [S, K] pad logit
      const auto logits = (8 * torch::randn({11, k}, gen, torch::kFloat32)).requires_grad_(true);
      const auto values = torch::randn({11, k}, gen, torch::kFloat32).requires_grad_(true);
      const auto pad_logit = variant == 0   ? torch::Tensor()
                             : variant == 1 ? torch::zeros({4, 1}, torch::kFloat32)
                                            : torch::randn({4, k}, gen, torch::kFloat32);
      const auto counts = variant == 0 ? torch::Tensor() : pad_count;
      const auto weights = torch::randn({4, k}, gen, torch::kFloat32);
      const auto run = [&](bool fused) {
        logits.mutable_grad() = torch::Tensor();
        values.mutable_grad() = torch::Tensor();
        const auto out = fused ? segment_softmax_sum(logits, values, segments, 4, pad_logit, counts)
                               : composed_segment_softmax_sum(logits, values, segments, 4, pad_logit, counts);
        (out * weights).sum().backward();
        return std::make_tuple(out.detach(), logits.grad().clone(), values.grad().clone());
      };
      const auto [out, d_logits, d_values] = run(true);
      const auto [want, want_d_logits, want_d_values] = run(false);
      const auto where = "k " + std::to_string(k) + " variant " + std::to_string(variant);
      EXPECT_TRUE(torch::allclose(out, want, 1e-5, 1e-6)) << where << "\n" << out << "\n" << want;
      EXPECT_TRUE(torch::allclose(d_logits, want_d_logits, 1e-4, 1e-6)) << where;
      EXPECT_TRUE(torch::allclose(d_values, want_d_values, 1e-5, 1e-6)) << where;
    }
  }
}

TEST(Segments, SumAddsEachSegmentsRows) {
  const auto values = torch::arange(12, torch::kFloat64).view({6, 2});
  const auto sums = segment_sum(values, torch::tensor({2L, 0L, 0L, 2L, 2L, 0L}), 4);
  // Segment 0 = rows 1, 2, 5; segment 2 = rows 0, 3, 4; segments 1 and 3 have no rows.
  const auto want = torch::tensor({16.0, 19.0, 0.0, 0.0, 14.0, 17.0, 0.0, 0.0}, torch::kFloat64).view({4, 2});
  EXPECT_TRUE(torch::equal(sums, want)) << sums;
}

// dropout_rows draws what at::dropout draws for the padded tensor: from one seed, the packed rows equal the
// padded tensor's dropout read at those rows, so a packed model trains exactly as its padded version.
TEST(Segments, DropoutRowsDropsWhatThePaddedDropoutDrops) {
  const auto padded = torch::randn({6, 5}, torch::kFloat32);
  const auto slots = torch::tensor({0L, 1L, 3L, 4L});
  const auto packed = padded.index_select(0, slots);
  for (const double p : {0.2, 0.5}) {
    torch::manual_seed(42);
    const auto want = torch::nn::functional::dropout(padded, torch::nn::functional::DropoutFuncOptions().p(p).training(true));
    torch::manual_seed(42);
    const auto got = dropout_rows(packed, slots, 6, p, true);
    EXPECT_TRUE(torch::equal(got, want.index_select(0, slots))) << "p " << p << "\n" << got << "\n" << want;
    EXPECT_FALSE(torch::equal(got, packed)) << "p " << p;  // something was dropped
  }
  EXPECT_TRUE(torch::equal(dropout_rows(packed, slots, 6, 0.5, false), packed));
  EXPECT_TRUE(torch::equal(dropout_rows(packed, slots, 6, 1.0, true), torch::zeros_like(packed)));
}

// dropout_packed: with padded masks, dropout_rows's draws; without, at::dropout on the packed rows themselves
// (4 x 5 draws instead of 6 x 5: from one seed, the same values as F::dropout of the packed tensor).
TEST(Segments, DropoutPackedDrawsForThePaddedOrThePackedRows) {
  const auto padded = torch::randn({6, 5}, torch::kFloat32);
  const auto slots = torch::tensor({0L, 1L, 3L, 4L});
  const auto packed = padded.index_select(0, slots);
  namespace F = torch::nn::functional;
  torch::manual_seed(7);
  const auto own = F::dropout(packed, F::DropoutFuncOptions().p(0.5).training(true));
  torch::manual_seed(7);
  const auto padded_masks = dropout_rows(packed, slots, 6, 0.5, true);
  torch::manual_seed(7);
  EXPECT_TRUE(torch::equal(dropout_packed(packed, slots, 6, 0.5, true, false), own));
  torch::manual_seed(7);
  EXPECT_TRUE(torch::equal(dropout_packed(packed, slots, 6, 0.5, true, true), padded_masks));
  EXPECT_FALSE(torch::equal(own, padded_masks));  // the two draw differently from one seed
  EXPECT_TRUE(torch::equal(dropout_packed(packed, slots, 6, 0.5, false, false), packed));
}

TEST(Segments, PackClicksKeepsRealPositionsInOrder) {
  // Rows of 3, 1 and 2 real positions in a [3, 3, 2] padded tensor whose entry (b, t) is (10 b + t, -(10 b + t)).
  const auto code = (torch::arange(3, torch::kFloat64).unsqueeze(1) * 10 + torch::arange(3, torch::kFloat64)).unsqueeze(-1);
  const auto states = torch::cat({code, -code}, -1);
  const auto mask = torch::tensor({1, 1, 1, 1, 0, 0, 1, 1, 0}, torch::kBool).view({3, 3});
  const auto [clicks, sessions] = pack_clicks(states, mask);
  EXPECT_TRUE(torch::equal(clicks.select(1, 0), torch::tensor({0.0, 1.0, 2.0, 10.0, 20.0, 21.0}, torch::kFloat64)));
  EXPECT_TRUE(torch::equal(clicks.select(1, 1), -clicks.select(1, 0)));
  EXPECT_TRUE(torch::equal(sessions, torch::tensor({0L, 0L, 0L, 1L, 2L, 2L})));
}

}  // namespace
}  // namespace llm4sbr::models
