#include "llm4sbr/core/linalg.hpp"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

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

// The bfloat16 product is a float32 sum of a · float(h): within γ_d Σ|a||h| of the float64 product, for
// every row count (1-4 rows share a pass; more take several) and widths with and without 8- and 64-wide tails.
TEST(Linalg, TimesTransposedBf16IsTheProductWithTheWidenedTable) {
  for (const std::int64_t d : {1, 7, 8, 17, 64, 100, 256}) {
    const auto h = normal(203, d, 3).to(torch::kBFloat16);
    const auto widened = h.to(torch::kFloat64);
    for (const std::int64_t m : {1, 2, 3, 4, 5, 9}) {
      const auto a = normal(m, d, 10 + static_cast<std::uint64_t>(m * d));
      const auto got = times_transposed_bf16(a, h);
      ASSERT_EQ(got.sizes(), (std::vector<std::int64_t>{m, 203}));
      const auto a64 = a.to(torch::kFloat64);
      const auto want = a64.matmul(widened.t());
      const double unit = std::ldexp(1.0, -24);
      const double gamma = static_cast<double>(d) * unit / (1.0 - static_cast<double>(d) * unit);
      const auto bound = gamma * a64.abs().matmul(widened.abs().t());
      EXPECT_TRUE(((got.to(torch::kFloat64) - want).abs() <= bound).all().item<bool>()) << "d " << d << " m " << m;
    }
  }
}

// The one-pass path indexes the table by a's width: a mismatch is an error, as GEMM's is, not a read past it.
TEST(Linalg, TimesTransposedRefusesMismatchedWidthsOnEveryPath) {
  for (const std::int64_t m : {1, 4, 9})
    EXPECT_THROW(times_transposed(normal(m, 8, 1), normal(5, 7, 2)), c10::Error) << "m " << m;
}

TEST(Linalg, TimesTransposedBf16RefusesOtherDtypes) {
  const auto a = normal(2, 8, 1);
  EXPECT_THROW(times_transposed_bf16(a, normal(3, 8, 2)), c10::Error);                        // float32 table
  EXPECT_THROW(times_transposed_bf16(a, normal(3, 7, 2).to(torch::kBFloat16)), c10::Error);  // widths differ
}

}  // namespace
}  // namespace llm4sbr
