// The randomized truncated SVD that fits the TF-IDF+LSA encoder (Halko, Martinsson & Tropp 2011), and the
// sparse kernels it and the encoder share: a CSR matrix, sparse x dense products on plain threads, and a
// Gaussian test matrix that is the same for a seed on every machine.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <vector>

namespace llm4sbr::embed::linalg {

/// `threads` if > 0, else the number of hardware threads.
int resolve_threads(std::int64_t threads);

/// Runs fn(begin, end) on contiguous slices of [0, n), one per thread (at most one per `grain` items).
/// Each item is handled by exactly one thread, so results never depend on the thread count. The first
/// exception of a slice is rethrown after every thread has finished.
void parallel_for(std::int64_t n, int threads, std::int64_t grain,
                  const std::function<void(std::int64_t, std::int64_t)>& fn);

/// out[0:k] += Σ_p vals[p] · dense[cols[p], 0:k] (dense row-major with row stride k). Compiled for
/// AVX-512, AVX2 and baseline x86-64 and picked at load time; the summation order is the same in all.
void sparse_row_times_dense(const std::int32_t* cols, const float* vals, std::int64_t nnz, const float* dense,
                            std::int64_t k, float* __restrict out);

/// A sparse matrix in compressed sparse row form.
struct Csr {
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  std::vector<std::int64_t> ptr{0};
  std::vector<std::int32_t> idx;
  std::vector<float> val;

  /// The transpose, in CSR form.
  Csr transpose() const;

};

/// a [rows, cols] sparse times b [cols, k] dense -> [rows, k] float32, rows spread over `threads`.
torch::Tensor spmm(const Csr& a, const torch::Tensor& b, int threads);

/// Standard normal matrix [rows, cols] from a 64-bit Mersenne twister and Box-Muller in double precision:
/// the same numbers for a seed on every machine and LibTorch build.
torch::Tensor gaussian(std::int64_t rows, std::int64_t cols, std::uint64_t seed);

/// The top `dim` singular values and right singular vectors of a sparse X [n, V].
struct TruncatedSvd {
  torch::Tensor right;          ///< [V, dim] float32 contiguous: V_B, each column's largest-magnitude entry positive
  std::vector<float> singular;  ///< [dim], descending
  double range_seconds = 0;     ///< the range finder (sparse products + QR)
  double sparse_seconds = 0;    ///< of which sparse products
  double qr_seconds = 0;        ///< of which QR
  double seconds = 0;           ///< all of it
};

/// Randomized truncated SVD by subspace iteration on the n side: Ω ~ N(0,1)^{n x k} (k = dim + oversample,
/// capped at min(n, V)), Q = qr(X Xᵀ Ω), then `power_iterations` times Q = qr(X Xᵀ Q); B = Qᵀ X is
/// decomposed through the eigenvectors of B Bᵀ = Cᵀ C (C = Xᵀ Q) in float64. Directions with a
/// (numerically) zero singular value get a zero column. dim <= min(n, V).
TruncatedSvd randomized_svd(const Csr& x, std::int64_t dim, std::int64_t oversample, std::int64_t power_iterations,
                            std::uint64_t seed, int threads);

}  // namespace llm4sbr::embed::linalg
