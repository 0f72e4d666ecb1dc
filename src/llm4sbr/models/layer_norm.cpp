#include "llm4sbr/models/layer_norm.hpp"

#include <cmath>
#include <cstdint>

#include "llm4sbr/core/lane_sum.hpp"

namespace llm4sbr::models {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Rows [rows, d] of x: y = (x − μ)·rstd·w + b, with each row's μ and rstd = 1/sqrt(σ² + eps) kept for the
// backward pass. The variance from the centred values, not E[x²] − μ². Pass by pass over all rows rather than row
// by row: a row's sums, their lanes folded, the square root and the division are one chain of dependent steps,
// and rows of 100 values are too short to hide it; the rows of a pass are independent, so the CPU overlaps them
// (bench/layer_norm_bench at [850, 100]: forward 44 µs row by row, 29 pass by pass; x stays in L2 between passes).
template <typename T>
[[gnu::always_inline]] inline void forward_rows_impl(const T* __restrict x, const T* __restrict w,
                                                     const T* __restrict b, std::int64_t rows, std::int64_t d, T eps,
                                                     T* __restrict y, T* __restrict mean, T* __restrict rstd) {
  const T inv_d = T(1) / static_cast<T>(d);
  for (std::int64_t i = 0; i < rows; ++i) {
    const T* xi = x + i * d;
    mean[i] = lane_sum<T>(d, [&](std::int64_t j) { return xi[j]; }) * inv_d;
  }
  for (std::int64_t i = 0; i < rows; ++i) {
    const T* xi = x + i * d;
    const T mu = mean[i];
    rstd[i] = lane_sum<T>(d, [&](std::int64_t j) { return (xi[j] - mu) * (xi[j] - mu); }) * inv_d;
  }
  for (std::int64_t i = 0; i < rows; ++i) rstd[i] = T(1) / std::sqrt(rstd[i] + eps);
  for (std::int64_t i = 0; i < rows; ++i) {
    const T *xi = x + i * d, mu = mean[i], r = rstd[i];
    T* yi = y + i * d;
    for (std::int64_t j = 0; j < d; ++j) yi[j] = (xi[j] - mu) * r * w[j] + b[j];
  }
}

// With x̂ = (x − μ)·rstd and ĝ = g·w for a row: dx = rstd·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)); dw += g·x̂ and db += g
// over the rows in order (dw and db zeroed by the caller). The two means of every row first (g_means [rows, 2]),
// for the reason above.
template <typename T>
[[gnu::always_inline]] inline void backward_rows_impl(const T* __restrict x, const T* __restrict w,
                                                      const T* __restrict mean, const T* __restrict rstd,
                                                      const T* __restrict g, std::int64_t rows, std::int64_t d,
                                                      T* __restrict g_means, T* __restrict dx, T* __restrict dw,
                                                      T* __restrict db) {
  const T inv_d = T(1) / static_cast<T>(d);
  for (std::int64_t i = 0; i < rows; ++i) {
    const T *xi = x + i * d, *gi = g + i * d, mu = mean[i], r = rstd[i];
    g_means[2 * i] = lane_sum<T>(d, [&](std::int64_t j) { return gi[j] * w[j]; }) * inv_d;
    g_means[2 * i + 1] = lane_sum<T>(d, [&](std::int64_t j) { return gi[j] * w[j] * ((xi[j] - mu) * r); }) * inv_d;
  }
  for (std::int64_t i = 0; i < rows; ++i) {
    const T *xi = x + i * d, *gi = g + i * d, mu = mean[i], r = rstd[i];
    const T g_mean = g_means[2 * i], gx_mean = g_means[2 * i + 1];
    T* dxi = dx + i * d;
    for (std::int64_t j = 0; j < d; ++j) {
      const T x_hat = (xi[j] - mu) * r;
      dxi[j] = r * (gi[j] * w[j] - g_mean - x_hat * gx_mean);
      dw[j] += gi[j] * x_hat;
      db[j] += gi[j];
    }
  }
}

void forward_rows(const double* x, const double* w, const double* b, std::int64_t rows, std::int64_t d, double eps,
                  double* y, double* mean, double* rstd) {
  forward_rows_impl(x, w, b, rows, d, eps, y, mean, rstd);
}

[[gnu::target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")]]
void forward_rows(const float* x, const float* w, const float* b, std::int64_t rows, std::int64_t d, float eps,
                  float* y, float* mean, float* rstd) {
  forward_rows_impl(x, w, b, rows, d, eps, y, mean, rstd);
}

void backward_rows(const double* x, const double* w, const double* mean, const double* rstd, const double* g,
                   std::int64_t rows, std::int64_t d, double* g_means, double* dx, double* dw, double* db) {
  backward_rows_impl(x, w, mean, rstd, g, rows, d, g_means, dx, dw, db);
}

[[gnu::target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")]]
void backward_rows(const float* x, const float* w, const float* mean, const float* rstd, const float* g,
                   std::int64_t rows, std::int64_t d, float* g_means, float* dx, float* dw, float* db) {
  backward_rows_impl(x, w, mean, rstd, g, rows, d, g_means, dx, dw, db);
}

struct LayerNorm : torch::autograd::Function<LayerNorm> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& weight,
                               const torch::Tensor& bias, double eps) {
    const auto d = x.size(-1), rows = x.numel() / d;
    const auto xc = x.contiguous(), w = weight.contiguous(), b = bias.contiguous();
    auto y = torch::empty_like(xc);
    auto mean = torch::empty({rows}, x.options()), rstd = torch::empty({rows}, x.options());
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "layer_norm_forward", [&] {
      forward_rows(xc.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(), b.data_ptr<scalar_t>(), rows, d,
                   static_cast<scalar_t>(eps), y.data_ptr<scalar_t>(), mean.data_ptr<scalar_t>(),
                   rstd.data_ptr<scalar_t>());
    });
    ctx->save_for_backward({xc, w, mean, rstd});
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &w = saved[1], &mean = saved[2], &rstd = saved[3];
    const auto g = grads[0].contiguous();
    const auto d = x.size(-1), rows = x.numel() / d;
    auto dx = torch::empty_like(x);
    auto dw = torch::zeros({d}, x.options()), db = torch::zeros({d}, x.options());
    auto g_means = torch::empty({rows, 2}, x.options());
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "layer_norm_backward", [&] {
      backward_rows(x.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(), mean.data_ptr<scalar_t>(),
                    rstd.data_ptr<scalar_t>(), g.data_ptr<scalar_t>(), rows, d, g_means.data_ptr<scalar_t>(),
                    dx.data_ptr<scalar_t>(), dw.data_ptr<scalar_t>(), db.data_ptr<scalar_t>());
    });
    return {dx, dw, db, torch::Tensor()};
  }
};

}  // namespace

torch::Tensor layer_norm(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias, double eps) {
  const auto d = x.dim() > 0 ? x.size(-1) : 0;
  TORCH_CHECK(weight.dim() == 1 && weight.size(0) == d && bias.dim() == 1 && bias.size(0) == d,
              "layer_norm: weight and bias [", d, "] for x [..., ", d, "], got ", weight.sizes(), " and ",
              bias.sizes());
  const auto type = x.scalar_type();
  const bool written_out = x.is_cpu() && weight.is_cpu() && bias.is_cpu() && d > 0 && x.numel() > 0 &&
                           (type == torch::kFloat32 || type == torch::kFloat64) && weight.scalar_type() == type &&
                           bias.scalar_type() == type;
  if (!written_out) return torch::layer_norm(x, {d}, weight, bias, eps);
  return LayerNorm::apply(x, weight, bias, eps);
}

}  // namespace llm4sbr::models
