// Matrix products that LibTorch's default dispatch makes slow on the shapes of serving: a few rows against a
// catalogue-sized table.
#pragma once

namespace at {
class Tensor;
}

namespace llm4sbr {

/// a · bᵀ: a [m, d], b [n, d] → [m, n] (float, same device; differentiable). For m ≤ 2 rows on the CPU it is
/// one matrix-vector product per row: OpenBLAS's GEMM packs all of b (n·d floats) on every call, which for a
/// session's scores against 12,101 items costs 4x the product itself (bench/times_transposed_bench). Larger
/// m, and other devices, take GEMM (on the CPU with a padded to a multiple of 4 rows: OpenBLAS runs other counts
/// through slower edge code). The two paths round differently (float32 sums in another order).
at::Tensor times_transposed(const at::Tensor& a, const at::Tensor& b);

}  // namespace llm4sbr
