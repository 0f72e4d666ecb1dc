// Matrix products that LibTorch's default dispatch makes slow on the shapes of serving: a few rows against a
// catalogue-sized table.
#pragma once

#include <cstdint>
#include <vector>

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

/// A bfloat16 table h [n, d], packed once for products with float32 rows: a · float(h)ᵀ without the
/// per-call packing of GEMM (OpenBLAS packs the whole table on every call), reading half the bytes of a
/// float32 table. Localization screens its candidates with it (intent/localizer.hpp).
class Bf16Table {
 public:
  /// h: [n, d] bfloat16 on the CPU; Error (c10) otherwise. Keeps 2·n·d bytes (n rounded up to 16).
  explicit Bf16Table(const at::Tensor& h);

  /// a [m, d] float32 on the CPU → [m, n] float32, one thread. Each entry is a float32 sum of the products in
  /// the order of t: |out - a·float(h)ᵀ| <= γ_d Σ|a||h|, γ_d = d·2⁻²⁴/(1 - d·2⁻²⁴). Error (c10) for another
  /// width, dtype or device.
  at::Tensor times_transposed(const at::Tensor& a) const;

  std::int64_t rows() const { return n_; }
  std::int64_t width() const { return d_; }

 private:
  std::vector<std::uint32_t> packed_;  ///< [⌈n/16⌉, d, 8]: word k of a column holds rows k and 8 + k
  std::int64_t n_ = 0;
  std::int64_t d_ = 0;
};

}  // namespace llm4sbr
