#include "llm4sbr/embed/randomized_svd.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <random>
#include <thread>

#include "llm4sbr/core/prefetch.hpp"

namespace llm4sbr::embed::linalg {

namespace {

torch::Tensor orthonormal_basis(const torch::Tensor& y) { return std::get<0>(torch::linalg_qr(y, "reduced")); }

// The kernel of sparse_row_times_dense, cloned per instruction set. The clones and their resolver stay in
// this file: a caller in another file calls the plain wrapper below (target_clones across files fails to link).
// The clones are ISA levels, which GCC picks by the CPU's features: "arch=haswell" would be picked by the
// CPU's model, so an AMD or a newer Intel CPU ran the default SSE2 clone.
[[gnu::target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")]]
void row_times_dense_kernel(const std::int32_t* cols, const float* vals, std::int64_t nnz, const float* dense,
                            std::int64_t k, float* __restrict out) {
  constexpr std::int64_t kAhead = 8;  // rows are scattered: fetch the row kAhead nonzeros ahead
  for (std::int64_t p = 0; p < nnz; ++p) {
    if (p + kAhead < nnz) prefetch_row(dense + static_cast<std::int64_t>(cols[p + kAhead]) * k, k);
    const float v = vals[p];
    const float* __restrict row = dense + static_cast<std::int64_t>(cols[p]) * k;
    for (std::int64_t c = 0; c < k; ++c) out[c] += v * row[c];
  }
}

}  // namespace

void sparse_row_times_dense(const std::int32_t* cols, const float* vals, std::int64_t nnz, const float* dense,
                            std::int64_t k, float* __restrict out) {
  row_times_dense_kernel(cols, vals, nnz, dense, k, out);
}

int resolve_threads(std::int64_t threads) {
  if (threads > 0) return static_cast<int>(threads);
  // hardware_concurrency() reads /sys on every call: once per process (a served request encodes its texts).
  static const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return cores;
}

/// Runs fn(begin, end) on contiguous slices of [0, n), one per thread (at most one per `grain` items).
/// Each item is handled by exactly one thread, so results never depend on the thread count.
void parallel_for(std::int64_t n, int threads, std::int64_t grain,
                  const std::function<void(std::int64_t, std::int64_t)>& fn) {
  const auto t = static_cast<int>(std::clamp<std::int64_t>(n / std::max<std::int64_t>(grain, 1), 1, threads));
  if (t <= 1) {
    if (n > 0) fn(0, n);
    return;
  }
  std::vector<std::thread> pool;
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(t));
  for (int k = 0; k < t; ++k) {
    pool.emplace_back([&, k] {
      try {
        fn(n * k / t, n * (k + 1) / t);
      } catch (...) {
        errors[static_cast<std::size_t>(k)] = std::current_exception();
      }
    });
  }
  for (auto& th : pool) th.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}


/// a [rows, cols] sparse times b [cols, k] dense -> [rows, k].
torch::Tensor spmm(const Csr& a, const torch::Tensor& b, int threads) {
  const auto k = b.size(1);
  auto bc = b.contiguous();
  auto out = torch::zeros({a.rows, k}, torch::kFloat32);
  const float* bp = bc.data_ptr<float>();
  float* op = out.data_ptr<float>();
  parallel_for(a.rows, threads, 64, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t r = begin; r < end; ++r)
      sparse_row_times_dense(a.idx.data() + a.ptr[r], a.val.data() + a.ptr[r], a.ptr[r + 1] - a.ptr[r], bp, k,
                             op + r * k);
  });
  return out;
}

/// Standard normal matrix from a 64-bit Mersenne twister and Box-Muller in double precision: the same
/// numbers for a seed on every machine and LibTorch build.
torch::Tensor gaussian(std::int64_t rows, std::int64_t cols, std::uint64_t seed) {
  auto out = torch::empty({rows, cols}, torch::kFloat32);
  float* p = out.data_ptr<float>();
  std::mt19937_64 rng(seed);
  const auto n = rows * cols;
  constexpr double kTwoPi = 6.283185307179586476925;
  for (std::int64_t i = 0; i < n; i += 2) {
    // u1 in (0, 1], u2 in [0, 1), 53 random bits each.
    const double u1 = (static_cast<double>(rng() >> 11) + 1.0) * 0x1.0p-53;
    const double u2 = static_cast<double>(rng() >> 11) * 0x1.0p-53;
    const double radius = std::sqrt(-2.0 * std::log(u1));
    p[i] = static_cast<float>(radius * std::cos(kTwoPi * u2));
    if (i + 1 < n) p[i + 1] = static_cast<float>(radius * std::sin(kTwoPi * u2));
  }
  return out;
}

Csr Csr::transpose() const {
  Csr t;
  t.rows = cols;
  t.cols = rows;
  t.ptr.assign(static_cast<std::size_t>(cols) + 1, 0);
  for (const auto c : idx) ++t.ptr[static_cast<std::size_t>(c) + 1];
  for (std::int64_t c = 0; c < cols; ++c) t.ptr[c + 1] += t.ptr[c];
  t.idx.resize(idx.size());
  t.val.resize(val.size());
  std::vector<std::int64_t> next(t.ptr.begin(), t.ptr.end() - 1);
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t p = ptr[r]; p < ptr[r + 1]; ++p) {
      const auto dst = next[static_cast<std::size_t>(idx[p])]++;
      t.idx[dst] = static_cast<std::int32_t>(r);
      t.val[dst] = val[p];
    }
  return t;
}

TruncatedSvd randomized_svd(const Csr& x, std::int64_t dim, std::int64_t oversample, std::int64_t power_iterations,
                            std::uint64_t seed, int threads) {
  const auto t0 = std::chrono::steady_clock::now();
  TruncatedSvd out;
  const Csr xt = x.transpose();
  const std::int64_t k = std::min({dim + oversample, x.rows, x.cols});
  auto timed = [](double& acc, auto&& fn) {
    const auto s = std::chrono::steady_clock::now();
    auto result = fn();
    acc += std::chrono::duration<double>(std::chrono::steady_clock::now() - s).count();
    return result;
  };
  auto gram = [&](const torch::Tensor& q) {  // X Xᵀ q
    return timed(out.sparse_seconds, [&] { return spmm(x, spmm(xt, q, threads), threads); });
  };
  auto basis = [&](const torch::Tensor& y) { return timed(out.qr_seconds, [&] { return orthonormal_basis(y); }); };
  torch::NoGradGuard no_grad;
  torch::Tensor q = basis(gram(gaussian(x.rows, k, seed)));
  for (std::int64_t it = 0; it < power_iterations; ++it) q = basis(gram(q));
  const torch::Tensor c = timed(out.sparse_seconds, [&] { return spmm(xt, q, threads); });  // Bᵀ = Xᵀ Q, [V, k]
  out.range_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // B Bᵀ = Cᵀ C in float32 (one GEMM; its rounding, ~1e-7 of σ_1², is far below the σ_d² that matter),
  // decomposed in float64.
  const torch::Tensor g = c.t().mm(c).to(torch::kFloat64);
  auto [evals, evecs] = torch::linalg_eigh((g + g.t()) / 2, "L");  // ascending
  const auto order = torch::arange(k - 1, k - 1 - dim, -1, torch::kLong);
  const torch::Tensor sigma = evals.index_select(0, order).clamp_min(0.0).sqrt();  // [dim], descending
  const double sigma_max = sigma[0].item<double>();
  // Directions with (numerically) zero singular value carry nothing: their column stays zero.
  const torch::Tensor inv = torch::where(sigma > sigma_max * 1e-5, sigma.reciprocal(), torch::zeros_like(sigma));
  const torch::Tensor w = (evecs.index_select(1, order) * inv.unsqueeze(0)).to(torch::kFloat32);
  torch::Tensor p = c.mm(w).contiguous();  // [V, dim]: V_B = Bᵀ U_B Σ⁻¹
  // Sign convention: the largest-magnitude entry of each component is positive.
  const auto arg = p.abs().argmax(0);
  const auto signs = torch::sign(p.gather(0, arg.unsqueeze(0))).squeeze(0);
  p.mul_(torch::where(signs == 0, torch::ones_like(signs), signs).unsqueeze(0));
  out.right = p.contiguous();
  const auto sig_f = sigma.to(torch::kFloat32).contiguous();
  out.singular.assign(sig_f.data_ptr<float>(), sig_f.data_ptr<float>() + dim);
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

}  // namespace llm4sbr::embed::linalg
