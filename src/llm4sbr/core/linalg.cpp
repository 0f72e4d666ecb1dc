#include "llm4sbr/core/linalg.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdint>
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

/// A float32 table: 16 values are two vectors in order.
struct Float32Table {
  using Value = float;
  [[gnu::always_inline]] static void chunk(const float* p, Floats8& first, Floats8& second) {
    first = load8(p);
    second = load8(p + 8);
  }
  [[gnu::always_inline]] static float one(float v) { return v; }
};

/// A bfloat16 table. A bfloat16 is the upper half of a float32's bits, so 16 of them loaded as 8 32-bit words
/// are 8 floats twice over: word << 16 holds the even values, word & 0xffff0000 the odd ones, two instructions
/// for 16 values. The rows of a are reordered to match (deinterleave16).
struct Bfloat16Table {
  using Value = std::uint16_t;
  [[gnu::always_inline]] static void chunk(const std::uint16_t* p, Floats8& even, Floats8& odd) {
    Words8 w;
    __builtin_memcpy(&w, p, sizeof w);
    even = as_floats(w << 16);
    odd = as_floats(w & 0xffff0000u);
  }
  [[gnu::always_inline]] static float one(std::uint16_t v) {
    return static_cast<float>(c10::BFloat16(v, c10::BFloat16::from_bits()));
  }
};

/// a's rows with each 16 values as the 8 even then the 8 odd (the order of Bfloat16Table::chunk).
std::vector<float> deinterleave16(const float* a, std::int64_t m, std::int64_t d) {
  std::vector<float> out(static_cast<std::size_t>(m * d));
  const std::int64_t d16 = d / kChunk * kChunk;
  for (std::int64_t i = 0; i < m; ++i) {
    const float* ai = a + i * d;
    float* oi = out.data() + i * d;
    for (std::int64_t t = 0; t < d16; t += kChunk)
      for (int k = 0; k < 8; ++k) {
        oi[t + k] = ai[t + 2 * k];
        oi[t + 8 + k] = ai[t + 2 * k + 1];
      }
    std::copy(ai + d16, ai + d, oi + d16);
  }
  return out;
}

/// out[i, j] for Q rows of a against table rows [j0, j1). Eight accumulators in all: an FMA waits ~4 cycles
/// for the previous one into the same register, so fewer chains leave the FPU idle.
template <class Table, int Q>
[[gnu::always_inline]] inline void rows_against(const float* a, const typename Table::Value* h, std::int64_t j0,
                                                std::int64_t j1, std::int64_t n, std::int64_t d, float* out) {
  constexpr int kUnroll = Q >= 4 ? 1 : 4 / Q;  // chunks a step, two accumulators a chunk
  constexpr std::int64_t kStep = kChunk * kUnroll;
  const std::int64_t d_step = d / kStep * kStep, d16 = d / kChunk * kChunk;
  auto chunk = [&](const typename Table::Value* hj, std::int64_t t, Floats8* acc_first, Floats8* acc_second) {
    Floats8 first, second;
    Table::chunk(hj + t, first, second);
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
      for (std::int64_t t = d16; t < d; ++t) s += a[i * d + t] * Table::one(hj[t]);
      out[i * n + j] = s;
    }
  }
}

/// Table rows in blocks that stay in L1 while every group of 4 rows of a passes over them: the table is read
/// from memory once whatever m is.
template <class Table>
[[gnu::always_inline]] inline void one_pass(const float* a, std::int64_t m, const typename Table::Value* h,
                                            std::int64_t n, std::int64_t d, float* out) {
  const std::int64_t row_bytes = static_cast<std::int64_t>(sizeof(typename Table::Value)) * std::max<std::int64_t>(d, 1);
  const std::int64_t block = std::max<std::int64_t>(1, 16384 / row_bytes);  // 16 KB of table rows: half of L1
  for (std::int64_t j0 = 0; j0 < n; j0 += block) {
    const auto j1 = std::min(n, j0 + block);
    for (std::int64_t i = 0; i < m; i += 4) {
      const float* ai = a + i * d;
      float* oi = out + i * n;
      switch (std::min<std::int64_t>(4, m - i)) {
        case 4: rows_against<Table, 4>(ai, h, j0, j1, n, d, oi); break;
        case 3: rows_against<Table, 3>(ai, h, j0, j1, n, d, oi); break;
        case 2: rows_against<Table, 2>(ai, h, j0, j1, n, d, oi); break;
        default: rows_against<Table, 1>(ai, h, j0, j1, n, d, oi); break;
      }
    }
  }
}

// The kernels, cloned per ISA level, which GCC picks by the CPU's features (8-wide FMA from x86-64-v3, AVX2;
// the default clone runs the same code on SSE2 pairs).
[[gnu::target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")]]
void float32_kernel(const float* a, std::int64_t m, const float* h, std::int64_t n, std::int64_t d, float* out) {
  one_pass<Float32Table>(a, m, h, n, d, out);
}

[[gnu::target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")]]
void bfloat16_kernel(const float* a, std::int64_t m, const std::uint16_t* h, std::int64_t n, std::int64_t d,
                     float* out) {
  one_pass<Bfloat16Table>(a, m, h, n, d, out);
}

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

at::Tensor times_transposed_bf16(const at::Tensor& a, const at::Tensor& h) {
  check_operands(a, h, "times_transposed_bf16");
  TORCH_CHECK(a.scalar_type() == at::kFloat && h.scalar_type() == at::kBFloat16 && a.is_cpu() && h.is_cpu(),
              "times_transposed_bf16: float32 a and bfloat16 h on the CPU");
  const auto ac = a.contiguous();
  const auto hc = h.contiguous();
  const auto m = a.size(0), d = a.size(1);
  const auto reordered = deinterleave16(ac.data_ptr<float>(), m, d);
  auto out = at::empty({m, h.size(0)}, a.options());
  bfloat16_kernel(reordered.data(), m, reinterpret_cast<const std::uint16_t*>(hc.data_ptr<at::BFloat16>()), h.size(0),
                  d, out.data_ptr<float>());
  return out;
}

}  // namespace llm4sbr
