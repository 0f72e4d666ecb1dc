#include "llm4sbr/core/linalg.hpp"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace llm4sbr {
namespace {

torch::Tensor normal(std::int64_t rows, std::int64_t cols, std::uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  return torch::randn({rows, cols}, gen, torch::kFloat32);
}

TEST(Linalg, TimesTransposedEqualsTheProductForEveryRowCount) {
  const auto b = normal(301, 37, 1);
  for (const std::int64_t m : {0, 1, 2, 3, 4, 5, 7, 9, 17}) {
    const auto a = normal(m, 37, 2 + static_cast<std::uint64_t>(m));
    const auto got = times_transposed(a, b);
    ASSERT_EQ(got.sizes(), (std::vector<std::int64_t>{m, 301}));
    EXPECT_TRUE(torch::allclose(got.to(torch::kFloat64), a.to(torch::kFloat64).matmul(b.to(torch::kFloat64).t()), 1e-5,
                                1e-4))
        << "m " << m;
  }
}

// The packed bfloat16 product is within the table's stated bound of the float64 product a · float(h), with
// either kernel (the dot-product one where the CPU has AVX512-BF16, else both runs are the portable one), for
// row counts of a around the kernels' rows a call, table rows around their blocks of 16 (full blocks, a
// partial last block, fewer than one block, a partial block among the four taken at once) and any width, odd
// ones included (the dot-product layout pads a column).
TEST(Linalg, Bf16TableTimesTransposedIsTheProductWithTheWidenedTable) {
  for (const auto kernel : {Bf16Table::Kernel::automatic, Bf16Table::Kernel::portable}) {
    for (const std::int64_t n : {5, 16, 60, 203}) {
      for (const std::int64_t d : {1, 7, 8, 17, 100, 256}) {
        const auto h = normal(n, d, 3).to(torch::kBFloat16);
        const auto widened = h.to(torch::kFloat64);
        const Bf16Table table(h, kernel);
        ASSERT_EQ(table.rows(), n);
        ASSERT_EQ(table.width(), d);
        if (kernel == Bf16Table::Kernel::portable) ASSERT_FALSE(table.dot_pairs());
        for (const std::int64_t m : {0, 1, 2, 3, 5, 6, 7, 13}) {
          const auto a = normal(m, d, 10 + static_cast<std::uint64_t>(m * d));
          const auto got = table.times_transposed(a);
          ASSERT_EQ(got.sizes(), (std::vector<std::int64_t>{m, n}));
          const auto a64 = a.to(torch::kFloat64);
          const auto want = a64.matmul(widened.t());
          const auto bound = table.error_factor() * a64.abs().matmul(widened.abs().t()) +
                             table.tiny_error() * a64.norm(2, 1, true);
          EXPECT_TRUE(((got.to(torch::kFloat64) - want).abs() <= bound).all().item<bool>())
              << "dot pairs " << table.dot_pairs() << " n " << n << " d " << d << " m " << m;
        }
      }
    }
  }
}

// The portable kernel's bound is a float32 sum's, γ_d; the dot-product kernel's stays within 2⁻¹⁵ of a value
// (the second bfloat16 part of a keeps the query's rounding far below the table's own 2⁻⁹).
TEST(Linalg, Bf16TableErrorFactorIsTheKernelsRounding) {
  const auto h = normal(20, 100, 4).to(torch::kBFloat16);
  const Bf16Table portable(h, Bf16Table::Kernel::portable);
  EXPECT_DOUBLE_EQ(portable.error_factor(), 100 * std::ldexp(1.0, -24) / (1 - 100 * std::ldexp(1.0, -24)));
  EXPECT_EQ(portable.tiny_error(), 0.0);
  const Bf16Table automatic(h);
  if (!automatic.dot_pairs()) GTEST_SKIP() << "this CPU has no AVX512-BF16";
  EXPECT_LT(automatic.error_factor(), std::ldexp(1.0, -15));
  EXPECT_LT(automatic.tiny_error(), std::ldexp(1.0, -70));
}

// Rows of a whose values are all tiny (below 2⁻⁴⁰) would lose their products to the dot-product instruction's
// flushing of subnormals: they are summed exactly instead, so the result is still a's product, not zero.
TEST(Linalg, Bf16TableKeepsTheProductsOfTinyRows) {
  const auto h = normal(37, 9, 5).to(torch::kBFloat16);
  const Bf16Table table(h);
  const auto a = normal(3, 9, 6) * std::ldexp(1.0, -120);
  const auto got = table.times_transposed(a).to(torch::kFloat64);
  const auto want = a.to(torch::kFloat64).matmul(h.to(torch::kFloat64).t());
  EXPECT_TRUE(torch::allclose(got, want, 1e-5, 0)) << "dot pairs " << table.dot_pairs();
  EXPECT_GT(got.abs().min().item<double>(), 0.0);
}

// The one-pass path indexes the table by a's width: a mismatch is an error, as GEMM's is, not a read past it.
TEST(Linalg, TimesTransposedRefusesMismatchedWidthsOnEveryPath) {
  for (const std::int64_t m : {1, 4, 9})
    EXPECT_THROW(times_transposed(normal(m, 8, 1), normal(5, 7, 2)), c10::Error) << "m " << m;
}

TEST(Linalg, Bf16TableRefusesOtherDtypesAndWidths) {
  EXPECT_THROW(Bf16Table(normal(3, 8, 2)), c10::Error);  // a float32 table
  const Bf16Table table(normal(3, 8, 2).to(torch::kBFloat16));
  EXPECT_THROW(table.times_transposed(normal(2, 7, 1)), c10::Error);                           // widths differ
  EXPECT_THROW(table.times_transposed(normal(2, 8, 1).to(torch::kFloat64)), c10::Error);       // float64 rows
}

// top_k is a selection (no arithmetic), so it must equal a full sort exactly: largest first, equal values by
// lower index, -inf and NaN never chosen. Inputs: many ties (few distinct values), the order that makes the
// bar rise slowest (ascending: every value beats it) and fastest (descending), and sizes around its blocks of 16.
TEST(Linalg, TopKIsTheSortedPrefixWithTiesByLowerIndex) {
  const auto reference = [](const std::vector<float>& v, std::int64_t k) {
    std::vector<std::int64_t> order;
    for (std::int64_t i = 0; i < static_cast<std::int64_t>(v.size()); ++i)
      if (v[static_cast<std::size_t>(i)] > -std::numeric_limits<float>::infinity()) order.push_back(i);
    std::stable_sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) {
      return v[static_cast<std::size_t>(a)] > v[static_cast<std::size_t>(b)];
    });
    order.resize(std::min<std::size_t>(order.size(), static_cast<std::size_t>(std::max<std::int64_t>(k, 0))));
    return order;
  };
  std::mt19937 rng(7);
  for (const std::int64_t n : {0, 1, 15, 16, 17, 100, 12101}) {
    for (const int kind : {0, 1, 2, 3, 4}) {
      std::vector<float> v(static_cast<std::size_t>(n));
      for (std::int64_t i = 0; i < n; ++i) {
        const auto x = static_cast<float>(i);
        v[static_cast<std::size_t>(i)] = kind == 0   ? std::normal_distribution<float>()(rng)
                                         : kind == 1 ? static_cast<float>(rng() % 5)  // ties
                                         : kind == 2 ? x                              // ascending
                                         : kind == 3 ? -x                             // descending
                                                     : static_cast<float>(rng() % 3) - 1.0f;
      }
      if (kind == 4)  // excluded items and a broken score
        for (std::int64_t i = 0; i < n; i += 3)
          v[static_cast<std::size_t>(i)] = i % 2 ? std::numeric_limits<float>::quiet_NaN()
                                                 : -std::numeric_limits<float>::infinity();
      for (const std::int64_t k : {std::int64_t{-1}, std::int64_t{0}, std::int64_t{1}, std::int64_t{5}, std::int64_t{20},
                                   std::int64_t{48}, n, n + 3}) {
        EXPECT_EQ(top_k(v.data(), n, k), reference(v, k)) << "n " << n << " kind " << kind << " k " << k;
      }
    }
  }
}

// The first row along dim 0 with a NaN or an infinity, whatever the other dimensions: -1 when there is none.
TEST(Linalg, FirstNonFiniteRowNamesTheFirstBadRow) {
  EXPECT_EQ(first_non_finite_row(torch::zeros({0, 4})), -1);
  auto m = torch::zeros({5, 3});
  EXPECT_EQ(first_non_finite_row(m), -1);
  m[3][2] = std::numeric_limits<float>::infinity();
  m[4][0] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(first_non_finite_row(m), 3);
  auto cube = torch::zeros({4, 2, 3});
  cube[2][1][0] = -std::numeric_limits<float>::infinity();
  EXPECT_EQ(first_non_finite_row(cube), 2);
  EXPECT_THROW(first_non_finite_row(m.t()), c10::Error) << "not contiguous";
}

}  // namespace
}  // namespace llm4sbr
