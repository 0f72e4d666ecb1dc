// Matrix products that LibTorch's default dispatch makes slow on the shapes of serving: a few rows against a
// catalogue-sized table.
#pragma once

namespace at {
class Tensor;
}

namespace llm4sbr {

/// a · bᵀ: a [m, d], b [n, d] → [m, n] (float, same device; differentiable). For 1 to 4 rows of float32 on
/// the CPU without a gradient to record (serving, evaluation of a few sessions), one pass over b computes
/// every row's products: OpenBLAS's GEMM packs all of b (n·d floats) on every call, and m matrix-vector
/// products read b m times (bench/times_transposed_bench). Otherwise GEMM (on the CPU with a padded to a
/// multiple of 4 rows: OpenBLAS runs other counts through slower edge code). The two paths round differently
/// (float32 sums in another order). Error (c10) unless a and b are matrices of one width.
at::Tensor times_transposed(const at::Tensor& a, const at::Tensor& b);

/// a · float(h)ᵀ for a bfloat16 table: a [m, d] float32, h [n, d] bfloat16, both on the CPU → [m, n] float32.
/// One pass over h for all m rows: a few rows against a catalogue-sized table are bound by memory, and h is
/// half the bytes of a float32 table, read once where m matrix-vector products read a float32 one m times.
/// Each entry is a float32 sum of the products in an order of its own: |out - a·float(h)ᵀ| <= γ_d Σ|a||h|,
/// γ_d = d·2⁻²⁴/(1 - d·2⁻²⁴). Error (c10) for other shapes, dtypes or devices.
at::Tensor times_transposed_bf16(const at::Tensor& a, const at::Tensor& h);

}  // namespace llm4sbr
