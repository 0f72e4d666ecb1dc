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

/// The indices of the k largest of values[0, n), largest first, equal values by lower index (k is clamped to
/// [0, n]). Values that are not above −∞ (−∞ itself, NaN) are never chosen, so fewer than k come back when
/// fewer are: serving marks excluded items −∞. One pass against the k-th value kept so far, skipped 16 values
/// at a time while none beats it: ~n comparisons, where LibTorch's topk on one row of 12,101 scores spent ~20 µs
/// (serving's ranking and the localizer's screen each called it once a request).
std::vector<std::int64_t> top_k(const float* values, std::int64_t n, std::int64_t k);

/// The first row (index along dim 0) of `t` holding a NaN or an infinity, or -1 if none (or t is empty). t:
/// float32, contiguous, on the CPU, at least one dimension; Error (c10) otherwise. A plain loop: a served
/// request checks a few rows, where isfinite/all/nonzero cost more than the check.
std::int64_t first_non_finite_row(const at::Tensor& t);

/// A bfloat16 table h [n, d], packed once for products with float32 rows: a · float(h)ᵀ without the
/// per-call packing of GEMM (OpenBLAS packs the whole table on every call), reading half the bytes of a
/// float32 table. Localization screens its candidates with it (intent/localizer.hpp).
class Bf16Table {
 public:
  /// automatic: the AVX512-BF16 dot-product kernel where the CPU has it (Intel Cooper Lake and Sapphire Rapids
  /// on, AMD Zen 4 on), else the portable one; portable: always the portable one (tests, comparisons).
  enum class Kernel { automatic, portable };

  /// h: [n, d] bfloat16 on the CPU; Error (c10) otherwise. Keeps 2·n·d bytes (n rounded up to 16, d to 2).
  explicit Bf16Table(const at::Tensor& h, Kernel kernel = Kernel::automatic);

  /// a [m, d] float32 on the CPU → [m, n] float32, one thread. Each entry is within
  /// error_factor()·Σ_t|a_t||float(h_t)| + tiny_error()·||a||₂ of a·float(h)ᵀ. Error (c10) for another width,
  /// dtype or device.
  at::Tensor times_transposed(const at::Tensor& a) const;

  /// The portable kernel sums the products in float32 in the order of t: γ_d = d·2⁻²⁴/(1 - d·2⁻²⁴). The
  /// dot-product kernel splits each row of a into two bfloat16 parts (a = hi + lo + r, |r| <= 2⁻¹⁷|a|), and
  /// sums the exact products pairwise in float32: γ_{2d+2} + 2⁻¹⁶.
  double error_factor() const;
  /// The dot-product instruction flushes subnormal inputs and results to zero; rows of a whose largest
  /// |value| is below 2⁻⁴⁰ are therefore summed exactly instead, which bounds the flushed amounts by this
  /// times ||a||₂. 0 for the portable kernel.
  double tiny_error() const;

  std::int64_t rows() const { return n_; }
  std::int64_t width() const { return d_; }
  /// Whether the AVX512-BF16 kernel computes the products.
  bool dot_pairs() const { return dot_pairs_; }

 private:
  /// Portable layout: [⌈n/16⌉, d, 8], word k of a column holds rows k and 8 + k. Dot-product layout:
  /// [⌈n/16⌉, ⌈d/2⌉, 16], word k of a pair holds row k's columns 2p (low half) and 2p + 1 (high half).
  std::vector<std::uint32_t> packed_;
  std::int64_t n_ = 0;
  std::int64_t d_ = 0;
  bool dot_pairs_ = false;
  double max_abs_ = 0;  ///< largest |float(h)|
};

}  // namespace llm4sbr
