#include "llm4sbr/core/linalg.hpp"

#include <ATen/ATen.h>
#include <c10/util/BFloat16.h>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

// GCC warns that passing 8-float vectors by value has another ABI without AVX; every function taking them is
// inlined into one clone of a kernel, so no call passes them.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace llm4sbr {

// --- one pass over a table for a few rows ----------------------------------------------------------------------
//
// A few rows of a against a catalogue-sized table are bound by memory: OpenBLAS's GEMM first packs the whole
// table (reading and writing it) and m matrix-vector products read it m times, where these kernels read it
// once and keep every row of a in registers against each table row.

namespace {

using Floats8 = float __attribute__((vector_size(32)));
using Words8 = std::uint32_t __attribute__((vector_size(32)));

constexpr std::int64_t kChunk = 16;  ///< table values per step of a kernel: two vectors of 8

[[gnu::always_inline]] inline Floats8 load8(const float* p) {
  Floats8 v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}

[[gnu::always_inline]] inline Floats8 as_floats(Words8 w) {
  Floats8 f;
  __builtin_memcpy(&f, &w, sizeof f);
  return f;
}

/// The 8 lanes' sum as a tree (3 dependent additions, not 8).
[[gnu::always_inline]] inline float lane_sum(Floats8 v) {
  return ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]));
}

/// out[i, j] for Q rows of a against table rows [j0, j1). Eight accumulators in all: an FMA waits ~4 cycles
/// for the previous one into the same register, so fewer chains leave the FPU idle.
template <int Q>
[[gnu::always_inline]] inline void rows_against(const float* a, const float* h, std::int64_t j0, std::int64_t j1,
                                                std::int64_t n, std::int64_t d, float* out) {
  constexpr int kUnroll = Q >= 4 ? 1 : 4 / Q;  // chunks a step, two accumulators a chunk
  constexpr std::int64_t kStep = kChunk * kUnroll;
  const std::int64_t d_step = d / kStep * kStep, d16 = d / kChunk * kChunk;
  auto chunk = [&](const float* hj, std::int64_t t, Floats8* acc_first, Floats8* acc_second) {
    const Floats8 first = load8(hj + t), second = load8(hj + t + 8);
    for (int i = 0; i < Q; ++i) {
      acc_first[i] += first * load8(a + i * d + t);
      acc_second[i] += second * load8(a + i * d + t + 8);
    }
  };
  for (std::int64_t j = j0; j < j1; ++j) {
    const auto* hj = h + j * d;
    Floats8 acc[kUnroll][2][Q] = {};
    for (std::int64_t t = 0; t < d_step; t += kStep)
      for (int u = 0; u < kUnroll; ++u) chunk(hj, t + kChunk * u, acc[u][0], acc[u][1]);
    for (std::int64_t t = d_step; t < d16; t += kChunk) chunk(hj, t, acc[0][0], acc[0][1]);
    for (int i = 0; i < Q; ++i) {
      Floats8 total = acc[0][0][i] + acc[0][1][i];
      for (int u = 1; u < kUnroll; ++u) total += acc[u][0][i] + acc[u][1][i];
      float s = lane_sum(total);
      for (std::int64_t t = d16; t < d; ++t) s += a[i * d + t] * hj[t];
      out[i * n + j] = s;
    }
  }
}

// The kernels below are cloned per ISA level, which GCC picks by the CPU's features (8-wide FMA from
// x86-64-v3, AVX2; the default clone runs the same code on SSE2 pairs).

/// Table rows in blocks that stay in L1 while every group of 4 rows of a passes over them: the table is read
/// from memory once whatever m is.
[[gnu::target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")]]
void float32_kernel(const float* a, std::int64_t m, const float* h, std::int64_t n, std::int64_t d, float* out) {
  const std::int64_t block = std::max<std::int64_t>(1, 16384 / (4 * std::max<std::int64_t>(d, 1)));  // 16 KB: half of L1
  for (std::int64_t j0 = 0; j0 < n; j0 += block) {
    const auto j1 = std::min(n, j0 + block);
    for (std::int64_t i = 0; i < m; i += 4) {
      const float* ai = a + i * d;
      float* oi = out + i * n;
      switch (std::min<std::int64_t>(4, m - i)) {
        case 4: rows_against<4>(ai, h, j0, j1, n, d, oi); break;
        case 3: rows_against<3>(ai, h, j0, j1, n, d, oi); break;
        case 2: rows_against<2>(ai, h, j0, j1, n, d, oi); break;
        default: rows_against<1>(ai, h, j0, j1, n, d, oi); break;
      }
    }
  }
}

// --- a packed bfloat16 table --------------------------------------------------------------------------------
//
// Bf16Table keeps the table in blocks of 16 rows, and each column of a block as 8 32-bit words: word k holds
// row k in its low half and row 8 + k in its high half. A bfloat16 is the upper half of a float32's bits, so
// one 32-byte load is two vectors of 8 floats (w << 16: rows 0-7; w & 0xffff0000: rows 8-15), and the kernel
// is a GEMM micro-kernel: each value of a is broadcast against 16 table rows at once, no horizontal sums, and
// no packing per call (GEMM packs the whole table every time).

constexpr std::int64_t kBlockRows = 16;  ///< table rows a block
constexpr int kRowsOfA = 6;              ///< rows of a a kernel call: 12 accumulators + 4 registers = AVX2's 16

/// out[i, j0 + 16b + 0..16) = a[i] · float(rows of block b) for Q rows of a and NB consecutive blocks from row j0
/// (blocks past n are not written; the last one may be partial). The blocks' d columns of 8 words are read once
/// for all Q rows; each row's sum runs over t in order, in float32, so NB changes the speed, not the sums.
template <int Q, int NB>
[[gnu::always_inline]] inline void blocks_against(const float* a, std::int64_t d, const std::uint32_t* words,
                                                  std::int64_t j0, std::int64_t n, float* out) {
  Floats8 low[NB][Q] = {}, high[NB][Q] = {};
  for (std::int64_t t = 0; t < d; ++t) {
    for (int b = 0; b < NB; ++b) {
      Words8 w;
      __builtin_memcpy(&w, words + (b * d + t) * 8, sizeof w);
      const Floats8 rows_low = as_floats(w << 16), rows_high = as_floats(w & 0xffff0000u);
      for (int i = 0; i < Q; ++i) {
        const float s = a[i * d + t];
        low[b][i] += rows_low * s;
        high[b][i] += rows_high * s;
      }
    }
  }
  for (int b = 0; b < NB; ++b) {
    const auto row = j0 + b * kBlockRows;
    const auto width = std::min(kBlockRows, n - row);
    for (int i = 0; i < Q; ++i) {
      float sums[kBlockRows];
      __builtin_memcpy(sums, &low[b][i], sizeof low[b][i]);
      __builtin_memcpy(sums + 8, &high[b][i], sizeof high[b][i]);
      std::copy_n(sums, width, out + i * n + row);
    }
  }
}

/// One or two rows of a (serving's views) against the whole table, NB blocks at a time: with one block, a row
/// has two FMA chains of d steps, each FMA waiting ~4 cycles for the previous one (0.24 ms against 12,101 x
/// 256, slower than the float32 table's 0.17); NB blocks give 2·NB·Q independent chains.
template <int Q, int NB>
[[gnu::always_inline]] inline void few_rows_against(const float* a, const std::uint32_t* packed, std::int64_t n,
                                                    std::int64_t d, float* out) {
  const auto blocks = (n + kBlockRows - 1) / kBlockRows;
  std::int64_t b = 0;
  for (; b + NB <= blocks; b += NB) blocks_against<Q, NB>(a, d, packed + b * d * 8, b * kBlockRows, n, out);
  for (; b < blocks; ++b) blocks_against<Q, 1>(a, d, packed + b * d * 8, b * kBlockRows, n, out);
}

/// Every block of the table against every group of kRowsOfA rows of a: a block (d·64 bytes) stays in L1 while
/// the rows of a pass over it, so the table is read once.
[[gnu::target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")]]
void bfloat16_kernel(const float* a, std::int64_t m, const std::uint32_t* packed, std::int64_t n, std::int64_t d,
                     float* out) {
  if (m == 1) return few_rows_against<1, 4>(a, packed, n, d, out);
  if (m == 2) return few_rows_against<2, 2>(a, packed, n, d, out);
  for (std::int64_t j0 = 0; j0 < n; j0 += kBlockRows) {
    const std::uint32_t* words = packed + j0 / kBlockRows * d * 8;
    for (std::int64_t i = 0; i < m; i += kRowsOfA) {
      const float* ai = a + i * d;
      float* oi = out + i * n;
      switch (std::min<std::int64_t>(kRowsOfA, m - i)) {
        case 6: blocks_against<6, 1>(ai, d, words, j0, n, oi); break;
        case 5: blocks_against<5, 1>(ai, d, words, j0, n, oi); break;
        case 4: blocks_against<4, 1>(ai, d, words, j0, n, oi); break;
        case 3: blocks_against<3, 1>(ai, d, words, j0, n, oi); break;
        case 2: blocks_against<2, 1>(ai, d, words, j0, n, oi); break;
        default: blocks_against<1, 1>(ai, d, words, j0, n, oi); break;
      }
    }
  }
}

// --- the same with AVX512-BF16's dot products ------------------------------------------------------------------
//
// VDPBF16PS multiplies 16 pairs of bfloat16 by 16 pairs and adds both products of each pair into a float32
// lane: 32 multiply-adds an instruction, with no widening of the table (the portable kernel spends a shift or a
// mask and two 8-wide FMAs on 16 of them). The table is packed by pairs of columns (word k of a block's pair p
// holds row k's columns 2p and 2p + 1), and each row of a is split into bfloat16 parts hi and lo, so the
// products lose only lo's rounding (2⁻¹⁷ of a value) where rounding a to bfloat16 would lose 2⁻⁹.

constexpr int kPairBlocks = 4;  ///< blocks of 16 rows a pass of the dot-product kernel: 4 x 4 accumulators at most

/// out[i, j0 + 16b + 0..16) for Q rows of a (their hi and lo pairs, [Q, pairs] words each) and NB consecutive
/// blocks of the pair layout from row j0.
template <int Q, int NB>
[[gnu::always_inline, gnu::target("avx512f,avx512bf16")]] inline void pair_blocks_against(
    const std::uint32_t* hi, const std::uint32_t* lo, std::int64_t pairs, const std::uint32_t* words, std::int64_t j0,
    std::int64_t n, float* out) {
  __m512 acc[NB][Q];
  for (int b = 0; b < NB; ++b)
    for (int i = 0; i < Q; ++i) acc[b][i] = _mm512_setzero_ps();
  for (std::int64_t p = 0; p < pairs; ++p) {
    for (int b = 0; b < NB; ++b) {
      const auto w = reinterpret_cast<__m512bh>(_mm512_loadu_si512(words + (b * pairs + p) * kBlockRows));
      for (int i = 0; i < Q; ++i) {
        const auto h_part = reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(hi[i * pairs + p])));
        const auto l_part = reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(lo[i * pairs + p])));
        acc[b][i] = _mm512_dpbf16_ps(_mm512_dpbf16_ps(acc[b][i], w, l_part), w, h_part);
      }
    }
  }
  for (int b = 0; b < NB; ++b) {
    const auto row = j0 + b * kBlockRows;
    if (row >= n) break;
    const auto width = std::min(kBlockRows, n - row);
    const auto mask = static_cast<__mmask16>((1u << width) - 1u);
    for (int i = 0; i < Q; ++i) _mm512_mask_storeu_ps(out + i * n + row, mask, acc[b][i]);
  }
}

template <int NB>
[[gnu::always_inline, gnu::target("avx512f,avx512bf16")]] inline void pair_rows_against(
    const std::uint32_t* hi, const std::uint32_t* lo, std::int64_t q, std::int64_t pairs, const std::uint32_t* words,
    std::int64_t j0, std::int64_t n, float* out) {
  switch (q) {
    case 4: return pair_blocks_against<4, NB>(hi, lo, pairs, words, j0, n, out);
    case 3: return pair_blocks_against<3, NB>(hi, lo, pairs, words, j0, n, out);
    case 2: return pair_blocks_against<2, NB>(hi, lo, pairs, words, j0, n, out);
    default: return pair_blocks_against<1, NB>(hi, lo, pairs, words, j0, n, out);
  }
}

/// Every group of 4 blocks against every group of up to 4 rows of a (the group's 4 · 16 · d bytes stay in L1
/// while the rows pass over it).
[[gnu::target("avx512f,avx512bf16")]] void dot_pairs_kernel(const std::uint32_t* hi, const std::uint32_t* lo,
                                                             std::int64_t m, const std::uint32_t* packed,
                                                             std::int64_t n, std::int64_t pairs, float* out) {
  const auto blocks = (n + kBlockRows - 1) / kBlockRows;
  for (std::int64_t b = 0; b < blocks; b += kPairBlocks) {
    const std::uint32_t* words = packed + b * pairs * kBlockRows;
    const bool whole = b + kPairBlocks <= blocks;
    for (std::int64_t i = 0; i < m; i += 4) {
      const auto q = std::min<std::int64_t>(4, m - i);
      if (whole)
        pair_rows_against<kPairBlocks>(hi + i * pairs, lo + i * pairs, q, pairs, words, b * kBlockRows, n, out + i * n);
      else
        for (std::int64_t c = b; c < blocks; ++c)
          pair_rows_against<1>(hi + i * pairs, lo + i * pairs, q, pairs, packed + c * pairs * kBlockRows,
                               c * kBlockRows, n, out + i * n);
    }
  }
}

bool cpu_has_avx512_bf16() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
}

std::uint32_t bfloat16_pair(std::uint16_t low, std::uint16_t high) {
  return static_cast<std::uint32_t>(low) | static_cast<std::uint32_t>(high) << 16;
}

/// Row i of a as two bfloat16 parts, hi = bf16(a) and lo = bf16(a - float(hi)) (a - float(hi) is exact in
/// float32), packed by pairs of columns into hi/lo [m, pairs].
void split_rows(const float* a, std::int64_t m, std::int64_t d, std::vector<std::uint32_t>& hi,
                std::vector<std::uint32_t>& lo) {
  const auto pairs = (d + 1) / 2;
  hi.assign(static_cast<std::size_t>(m * pairs), 0);
  lo.assign(hi.size(), 0);
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t t = 0; t < d; ++t) {
      const float x = a[i * d + t];
      const auto h = c10::detail::round_to_nearest_even(x);
      const auto l = c10::detail::round_to_nearest_even(x - c10::detail::f32_from_bits(h));
      const auto shift = t % 2 == 0 ? 0 : 16;
      hi[static_cast<std::size_t>(i * pairs + t / 2)] |= static_cast<std::uint32_t>(h) << shift;
      lo[static_cast<std::size_t>(i * pairs + t / 2)] |= static_cast<std::uint32_t>(l) << shift;
    }
}

/// Below this largest |value| a row of a is summed exactly (float64) instead: the dot-product instruction
/// flushes subnormals, an absolute loss that must stay negligible against ||a||.
constexpr double kTinyRow = 0x1p-40;

// Up to 4 rows take one pass. From memory (bench/times_transposed_bench --cold), against 12,101 x 100 (the
// item table of serving): 1 row 0.10 ms against GEMM's 0.35, 2 rows 0.16 against 0.35, 4 rows 0.25 against
// 0.33, 8 rows 0.55 against 0.44; against 12,101 x 256 the one pass still wins at 8 rows (1.14 against 1.39).
constexpr std::int64_t kMaxRowsOnePass = 4;
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

/// Both functions' operands: matrices of one width (the one-pass kernels trust it to index the table).
void check_operands(const at::Tensor& a, const at::Tensor& b, const char* what) {
  TORCH_CHECK(a.dim() == 2 && b.dim() == 2 && a.size(1) == b.size(1), what, ": a [m, d] and a table [n, d], got ",
              a.sizes(), " and ", b.sizes());
}

/// The one-pass kernels need plain float32 CPU tensors and no gradient (they are not differentiable).
bool one_pass_applies(const at::Tensor& a, const at::Tensor& b) {
  return a.is_cpu() && b.is_cpu() && a.scalar_type() == at::kFloat && b.scalar_type() == at::kFloat &&
         a.size(0) >= 1 && a.size(0) <= kMaxRowsOnePass &&
         !(at::GradMode::is_enabled() && (a.requires_grad() || b.requires_grad()));
}
}  // namespace

at::Tensor times_transposed(const at::Tensor& a, const at::Tensor& b) {
  check_operands(a, b, "times_transposed");
  if (!one_pass_applies(a, b)) return gemm_times_transposed(a, b);
  const auto ac = a.contiguous();
  const auto bc = b.contiguous();
  auto out = at::empty({a.size(0), b.size(0)}, a.options());
  float32_kernel(ac.data_ptr<float>(), a.size(0), bc.data_ptr<float>(), b.size(0), a.size(1), out.data_ptr<float>());
  return out;
}

Bf16Table::Bf16Table(const at::Tensor& h, Kernel kernel) {
  TORCH_CHECK(h.dim() == 2 && h.scalar_type() == at::kBFloat16 && h.is_cpu(),
              "Bf16Table: a bfloat16 CPU matrix [n, d], got ", h.scalar_type(), " ", h.sizes());
  n_ = h.size(0);
  d_ = h.size(1);
  dot_pairs_ = kernel == Kernel::automatic && cpu_has_avx512_bf16();
  const auto hc = h.contiguous();
  max_abs_ = n_ * d_ == 0 ? 0.0 : hc.abs().max().item<double>();
  const auto* bits = reinterpret_cast<const std::uint16_t*>(hc.data_ptr<at::BFloat16>());
  const auto blocks = (n_ + kBlockRows - 1) / kBlockRows;
  auto value = [&](std::int64_t row, std::int64_t t) -> std::uint16_t {
    return row < n_ && t < d_ ? bits[row * d_ + t] : 0;
  };
  if (dot_pairs_) {
    const auto pairs = (d_ + 1) / 2;
    packed_.assign(static_cast<std::size_t>(blocks * pairs * kBlockRows), 0);  // rows past n, column d: zero
    for (std::int64_t b = 0; b < blocks; ++b)
      for (std::int64_t p = 0; p < pairs; ++p)
        for (std::int64_t k = 0; k < kBlockRows; ++k)
          packed_[static_cast<std::size_t>((b * pairs + p) * kBlockRows + k)] =
              bfloat16_pair(value(b * kBlockRows + k, 2 * p), value(b * kBlockRows + k, 2 * p + 1));
    return;
  }
  packed_.assign(static_cast<std::size_t>(blocks * d_ * 8), 0);  // rows past n stay zero
  for (std::int64_t b = 0; b < blocks; ++b)
    for (std::int64_t t = 0; t < d_; ++t)
      for (std::int64_t k = 0; k < 8; ++k)
        packed_[static_cast<std::size_t>((b * d_ + t) * 8 + k)] =
            bfloat16_pair(value(b * kBlockRows + k, t), value(b * kBlockRows + 8 + k, t));
}

double Bf16Table::error_factor() const {
  auto gamma = [](double k) { return k * 0x1p-24 / (1.0 - k * 0x1p-24); };
  const auto d = static_cast<double>(d_);
  return dot_pairs_ ? gamma(2 * d + 2) + 0x1p-16 : gamma(d);
}

double Bf16Table::tiny_error() const {
  // Each of the 2d + 2 additions of an entry flushes at most 2⁻¹²⁶ (1 + max|h| + |a_t|), and ||a||₂ >= 2⁻⁴⁰.
  return dot_pairs_ ? (2.0 * static_cast<double>(d_) + 2.0) * 0x1p-86 * (2.0 + max_abs_) : 0.0;
}

at::Tensor Bf16Table::times_transposed(const at::Tensor& a) const {
  TORCH_CHECK(a.dim() == 2 && a.size(1) == d_ && a.scalar_type() == at::kFloat && a.is_cpu(),
              "Bf16Table::times_transposed: float32 CPU rows [m, ", d_, "], got ", a.scalar_type(), " ", a.sizes());
  const auto ac = a.contiguous();
  auto out = at::empty({a.size(0), n_}, a.options());
  if (!dot_pairs_) {
    bfloat16_kernel(ac.data_ptr<float>(), a.size(0), packed_.data(), n_, d_, out.data_ptr<float>());
    return out;
  }
  const auto m = a.size(0), pairs = (d_ + 1) / 2;
  thread_local std::vector<std::uint32_t> hi, lo;
  split_rows(ac.data_ptr<float>(), m, d_, hi, lo);
  dot_pairs_kernel(hi.data(), lo.data(), m, packed_.data(), n_, pairs, out.data_ptr<float>());
  for (std::int64_t i = 0; i < m; ++i) {
    const float* ai = ac.data_ptr<float>() + i * d_;
    double largest = 0;
    for (std::int64_t t = 0; t < d_; ++t) largest = std::max(largest, std::abs(static_cast<double>(ai[t])));
    if (largest >= kTinyRow || largest == 0) continue;
    float* oi = out.data_ptr<float>() + i * n_;
    for (std::int64_t j = 0; j < n_; ++j) {  // row j's pairs, a block's 16 words apart
      const std::uint32_t* words = packed_.data() + j / kBlockRows * pairs * kBlockRows + j % kBlockRows;
      double sum = 0;
      for (std::int64_t t = 0; t < d_; ++t) {
        const auto half = static_cast<std::uint16_t>(words[t / 2 * kBlockRows] >> (t % 2 == 0 ? 0 : 16));
        sum += static_cast<double>(ai[t]) * static_cast<double>(c10::detail::f32_from_bits(half));
      }
      oi[j] = static_cast<float>(sum);
    }
  }
  return out;
}

std::int64_t first_non_finite_row(const at::Tensor& t) {
  TORCH_CHECK(t.dim() >= 1 && t.is_contiguous() && t.device().is_cpu(),
              "first_non_finite_row: a contiguous CPU tensor of at least one dimension");
  if (t.numel() == 0) return -1;
  const float* p = t.data_ptr<float>();
  const auto* bad = std::find_if(p, p + t.numel(), [](float v) { return !std::isfinite(v); });
  return bad == p + t.numel() ? -1 : (bad - p) / (t.numel() / t.size(0));
}

std::vector<std::int64_t> top_k(const float* values, std::int64_t n, std::int64_t k) {
  k = std::clamp<std::int64_t>(k, 0, std::max<std::int64_t>(n, 0));
  std::vector<std::int64_t> out;
  if (k == 0) return out;
  struct Entry {
    float value;
    std::int64_t index;
  };
  const auto better = [](const Entry& a, const Entry& b) {
    return a.value > b.value || (a.value == b.value && a.index < b.index);
  };
  // Kept: at most `capacity` entries, among them the k best so far. When full it shrinks to those k, and the
  // k-th's value becomes the bar: a later equal value has a higher index, so it loses to the k kept ones.
  const auto capacity = std::max<std::int64_t>(2 * k, 64);
  std::vector<Entry> kept;
  kept.reserve(static_cast<std::size_t>(capacity));
  float bar = -std::numeric_limits<float>::infinity();
  const auto consider = [&](std::int64_t i) {
    if (!(values[i] > bar)) return;
    kept.push_back({values[i], i});
    if (static_cast<std::int64_t>(kept.size()) < capacity) return;
    std::nth_element(kept.begin(), kept.begin() + (k - 1), kept.end(), better);
    kept.resize(static_cast<std::size_t>(k));
    bar = kept.back().value;
  };
  constexpr std::int64_t kBlock = 16;
  std::int64_t i = 0;
  for (; i + kBlock <= n; i += kBlock) {
    bool any = false;  // vectorised: a block whose values are all at or below the bar needs no more look
    for (std::int64_t j = 0; j < kBlock; ++j) any |= values[i + j] > bar;
    if (any)
      for (std::int64_t j = 0; j < kBlock; ++j) consider(i + j);
  }
  for (; i < n; ++i) consider(i);
  std::sort(kept.begin(), kept.end(), better);
  for (std::size_t j = 0; j < kept.size() && static_cast<std::int64_t>(j) < k; ++j) out.push_back(kept[j].index);
  return out;
}

}  // namespace llm4sbr
