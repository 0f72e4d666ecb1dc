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

// The packed bfloat16 product is a float32 sum of a · float(h): within γ_d Σ|a||h| of the float64 product,
// for row counts of a around the kernel's 6 rows a call, table rows around its blocks of 16 (full blocks, a
// partial last block, fewer than one block, a partial block among the four that one or two rows take at once)
// and any width.
TEST(Linalg, Bf16TableTimesTransposedIsTheProductWithTheWidenedTable) {
  for (const std::int64_t n : {5, 16, 60, 203}) {
    for (const std::int64_t d : {1, 7, 8, 17, 100, 256}) {
      const auto h = normal(n, d, 3).to(torch::kBFloat16);
      const auto widened = h.to(torch::kFloat64);
      const Bf16Table table(h);
      ASSERT_EQ(table.rows(), n);
      ASSERT_EQ(table.width(), d);
      for (const std::int64_t m : {0, 1, 2, 5, 6, 7, 13}) {
        const auto a = normal(m, d, 10 + static_cast<std::uint64_t>(m * d));
        const auto got = table.times_transposed(a);
        ASSERT_EQ(got.sizes(), (std::vector<std::int64_t>{m, n}));
        const auto a64 = a.to(torch::kFloat64);
        const auto want = a64.matmul(widened.t());
        const double unit = std::ldexp(1.0, -24);
        const double gamma = static_cast<double>(d) * unit / (1.0 - static_cast<double>(d) * unit);
        const auto bound = gamma * a64.abs().matmul(widened.abs().t());
        EXPECT_TRUE(((got.to(torch::kFloat64) - want).abs() <= bound).all().item<bool>())
            << "n " << n << " d " << d << " m " << m;
      }
    }
  }
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

}  // namespace
}  // namespace llm4sbr
