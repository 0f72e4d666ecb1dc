#include "llm4sbr/core/linalg.hpp"

#include <ATen/ATen.h>

#include <vector>

namespace llm4sbr {

namespace {
constexpr std::int64_t kMaxRowsByGemv = 2;  // measured crossover: 0.39 vs 0.96 ms at m = 2, 0.75 vs 0.78 at 4
// OpenBLAS's GEMM runs a row count that is not a multiple of its 4-wide micro-kernel through slower edge
// code: against 12,101 x 256, 3 rows took 1.69 ms and 4 rows 1.03, 7 rows 2.10 and 8 rows 1.31
// (bench/times_transposed_bench), so a's rows are padded with zero rows up to a multiple of 4.
constexpr std::int64_t kGemmRowMultiple = 4;

at::Tensor gemm_times_transposed(const at::Tensor& a, const at::Tensor& b) {
  const auto m = a.size(0);
  const auto padded = (m + kGemmRowMultiple - 1) / kGemmRowMultiple * kGemmRowMultiple;
  if (!a.is_cpu() || padded == m) return at::matmul(a, b.t());
  const auto zeros = at::zeros({padded - m, a.size(1)}, a.options());
  return at::matmul(at::cat({a, zeros}), b.t()).narrow(0, 0, m);
}
}  // namespace

at::Tensor times_transposed(const at::Tensor& a, const at::Tensor& b) {
  const auto m = a.size(0);
  if (!a.is_cpu() || m > kMaxRowsByGemv || m == 0) return gemm_times_transposed(a, b);
  if (m == 1) return b.mv(a[0]).unsqueeze(0);
  std::vector<at::Tensor> rows;
  for (std::int64_t i = 0; i < m; ++i) rows.push_back(b.mv(a[i]));
  return at::stack(rows);
}

}  // namespace llm4sbr
