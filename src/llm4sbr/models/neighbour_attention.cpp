#include "llm4sbr/models/neighbour_attention.hpp"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "llm4sbr/core/error.hpp"
#include "llm4sbr/core/lane_sum.hpp"

namespace llm4sbr::models {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr double kNegativeSlope = 0.2;  // the reference's LeakyReLU(0.2)
constexpr std::int64_t kMaxNeighbours = 64;  // K the node takes (its backward keeps K logits' gradients on the stack)

template <typename T>
T leaky_relu(T x) {
  return x > T(0) ? x : x * T(kNegativeSlope);
}

// Sizes and the rows of the node's saved inputs. hidden = (s ⊙ h) W1[:d], [n·K, d]; pre = hidden + w w1[d].
template <typename T>
struct Rows {
  std::int64_t n, k, d;
  const T* hidden;     // [n·K, d]
  const T* weights;    // [n·K]
  const T* w1_last;    // [d], W1's row d (the weight's coefficient)
  const T* w2;         // [d]
  const T* neighbours;  // [n·K, d]
};

// π [n, K] and out [n, d] (see neighbour_attention), one pass over hidden and one over the neighbours.
template <typename T>
[[gnu::always_inline]] inline void forward_rows_impl(const Rows<T>& x, T* pi, T* out) {
  const auto d = x.d;
  for (std::int64_t i = 0; i < x.n; ++i) {
    T* p = pi + i * x.k;
    for (std::int64_t k = 0; k < x.k; ++k) {
      const auto r = i * x.k + k;
      const T* hidden = x.hidden + r * d;
      const T w = x.weights[r];
      p[k] = lane_sum<T>(d, [&](std::int64_t j) { return leaky_relu(hidden[j] + w * x.w1_last[j]) * x.w2[j]; });
    }
    const T shift = *std::max_element(p, p + x.k);
    T total = 0;
    for (std::int64_t k = 0; k < x.k; ++k) total += (p[k] = std::exp(p[k] - shift));
    for (std::int64_t k = 0; k < x.k; ++k) p[k] /= total;
    T* o = out + i * d;
    std::fill(o, o + d, T(0));
    for (std::int64_t k = 0; k < x.k; ++k) {
      const T* h = x.neighbours + (i * x.k + k) * d;
      for (std::int64_t j = 0; j < d; ++j) o[j] += p[k] * h[j];
    }
  }
}

// The gradients before the products: d_hidden [n·K, d], d_weights [n·K], d_w1_last [d] and d_w2 [d] (added to,
// zeroed by the caller), and the neighbours' direct part π_k g [n·K, d]. grad [n, d] = ∂L/∂out.
template <typename T>
[[gnu::always_inline]] inline void backward_rows_impl(const Rows<T>& x, const T* pi, const T* grad, T* d_hidden,
                                                      T* d_weights, T* d_w1_last, T* d_w2, T* d_neighbours) {
  const auto d = x.d;
  T d_logit[kMaxNeighbours];
  for (std::int64_t i = 0; i < x.n; ++i) {
    const T* p = pi + i * x.k;
    const T* g = grad + i * d;
    T expected = 0;  // Σ_k π_k ∂L/∂π_k, the softmax's backward
    for (std::int64_t k = 0; k < x.k; ++k) {
      const T* h = x.neighbours + (i * x.k + k) * d;
      d_logit[k] = lane_sum<T>(d, [&](std::int64_t j) { return g[j] * h[j]; });
      expected += p[k] * d_logit[k];
    }
    for (std::int64_t k = 0; k < x.k; ++k) {
      const auto r = i * x.k + k;
      const T dl = p[k] * (d_logit[k] - expected);
      const T* hidden = x.hidden + r * d;
      const T w = x.weights[r];
      T* dh = d_hidden + r * d;
      T* dn = d_neighbours + r * d;
      for (std::int64_t j = 0; j < d; ++j) {
        const T pre = hidden[j] + w * x.w1_last[j];
        d_w2[j] += dl * leaky_relu(pre);
        const T dpre = dl * x.w2[j] * (pre > T(0) ? T(1) : T(kNegativeSlope));
        dh[j] = dpre;
        d_w1_last[j] += dpre * w;
        dn[j] = p[k] * g[j];
      }
      d_weights[r] = lane_sum<T>(d, [&](std::int64_t j) { return dh[j] * x.w1_last[j]; });
    }
  }
}

// The products' side of the backward pass: d_session [n, d] = Σ_k dX_k ⊙ h_k and d_neighbours += dX ⊙ s, for
// dX = ∂L/∂(s ⊙ h) [n·K, d].
template <typename T>
[[gnu::always_inline]] inline void backward_product_rows_impl(const T* session, const T* neighbours, const T* d_x,
                                                              std::int64_t n, std::int64_t k, std::int64_t d,
                                                              T* d_session, T* d_neighbours) {
  for (std::int64_t i = 0; i < n; ++i) {
    const T* s = session + i * d;
    T* ds = d_session + i * d;
    std::fill(ds, ds + d, T(0));
    for (std::int64_t c = 0; c < k; ++c) {
      const auto r = (i * k + c) * d;
      for (std::int64_t j = 0; j < d; ++j) {
        ds[j] += d_x[r + j] * neighbours[r + j];
        d_neighbours[r + j] += d_x[r + j] * s[j];
      }
    }
  }
}

// The kernels for float cloned per ISA level (picked by the CPU's features, as the other kernels); double
// (tests) as compiled.
void forward_rows(const Rows<double>& x, double* pi, double* out) { forward_rows_impl(x, pi, out); }
[[gnu::target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")]]
void forward_rows(const Rows<float>& x, float* pi, float* out) { forward_rows_impl(x, pi, out); }

void backward_rows(const Rows<double>& x, const double* pi, const double* grad, double* d_hidden, double* d_weights,
                   double* d_w1_last, double* d_w2, double* d_neighbours) {
  backward_rows_impl(x, pi, grad, d_hidden, d_weights, d_w1_last, d_w2, d_neighbours);
}
[[gnu::target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")]]
void backward_rows(const Rows<float>& x, const float* pi, const float* grad, float* d_hidden, float* d_weights,
                   float* d_w1_last, float* d_w2, float* d_neighbours) {
  backward_rows_impl(x, pi, grad, d_hidden, d_weights, d_w1_last, d_w2, d_neighbours);
}

void backward_product_rows(const double* session, const double* neighbours, const double* d_x, std::int64_t n,
                           std::int64_t k, std::int64_t d, double* d_session, double* d_neighbours) {
  backward_product_rows_impl(session, neighbours, d_x, n, k, d, d_session, d_neighbours);
}
[[gnu::target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")]]
void backward_product_rows(const float* session, const float* neighbours, const float* d_x, std::int64_t n,
                           std::int64_t k, std::int64_t d, float* d_session, float* d_neighbours) {
  backward_product_rows_impl(session, neighbours, d_x, n, k, d, d_session, d_neighbours);
}

template <typename T>
Rows<T> rows_of(const torch::Tensor& hidden, const torch::Tensor& weights, const torch::Tensor& w_1,
                const torch::Tensor& w_2, const torch::Tensor& neighbours) {
  const auto d = neighbours.size(2);
  return {neighbours.size(0), neighbours.size(1), d, hidden.data_ptr<T>(), weights.data_ptr<T>(),
          w_1.data_ptr<T>() + d * d, w_2.data_ptr<T>(), neighbours.data_ptr<T>()};
}

// (s ⊙ h) as [n·K, d]: recomputed backward rather than kept (as large as the neighbours).
torch::Tensor scaled_neighbours(const torch::Tensor& session, const torch::Tensor& neighbours) {
  return (session.unsqueeze(1) * neighbours).reshape({-1, neighbours.size(2)});
}

struct NeighbourAttention : torch::autograd::Function<NeighbourAttention> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& session, const torch::Tensor& neighbours,
                               const torch::Tensor& weights, const torch::Tensor& w_1, const torch::Tensor& w_2) {
    const auto n = neighbours.size(0), k = neighbours.size(1), d = neighbours.size(2);
    const auto hidden = at::mm(scaled_neighbours(session, neighbours), w_1.narrow(0, 0, d));  // [n·K, d]
    auto pi = at::empty({n, k}, neighbours.options());
    auto out = at::empty({n, d}, neighbours.options());
    AT_DISPATCH_FLOATING_TYPES(neighbours.scalar_type(), "neighbour_attention", [&] {
      forward_rows(rows_of<scalar_t>(hidden, weights, w_1, w_2, neighbours), pi.data_ptr<scalar_t>(),
                   out.data_ptr<scalar_t>());
    });
    ctx->save_for_backward({session, neighbours, weights, w_1, w_2, hidden, pi});
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto &session = saved[0], &neighbours = saved[1], &weights = saved[2], &w_1 = saved[3], &w_2 = saved[4];
    const auto &hidden = saved[5], &pi = saved[6];
    const auto grad = grad_outputs[0].contiguous();
    const auto d = neighbours.size(2);
    auto d_hidden = at::empty_like(hidden);
    auto d_weights = at::empty_like(weights);
    auto d_w1_last = at::zeros({d}, w_1.options());
    auto d_w2 = at::zeros({d}, w_2.options());
    auto d_neighbours = at::empty_like(neighbours);
    auto d_session = at::empty_like(session);
    AT_DISPATCH_FLOATING_TYPES(neighbours.scalar_type(), "neighbour_attention_backward", [&] {
      backward_rows(rows_of<scalar_t>(hidden, weights, w_1, w_2, neighbours), pi.data_ptr<scalar_t>(),
                    grad.data_ptr<scalar_t>(), d_hidden.data_ptr<scalar_t>(), d_weights.data_ptr<scalar_t>(),
                    d_w1_last.data_ptr<scalar_t>(), d_w2.data_ptr<scalar_t>(), d_neighbours.data_ptr<scalar_t>());
      const auto d_x = at::mm(d_hidden, w_1.narrow(0, 0, d).t());  // ∂L/∂(s ⊙ h), [n·K, d]
      backward_product_rows(session.data_ptr<scalar_t>(), neighbours.data_ptr<scalar_t>(), d_x.data_ptr<scalar_t>(),
                            neighbours.size(0), neighbours.size(1), d, d_session.data_ptr<scalar_t>(),
                            d_neighbours.data_ptr<scalar_t>());
    });
    const auto d_w1_top = at::mm(scaled_neighbours(session, neighbours).t(), d_hidden);  // [d, d]
    return {d_session, d_neighbours, d_weights, at::cat({d_w1_top, d_w1_last.unsqueeze(0)}), d_w2.unsqueeze(1)};
  }
};

void check_shapes(const torch::Tensor& session, const torch::Tensor& neighbours, const torch::Tensor& weights,
                  const torch::Tensor& w_1, const torch::Tensor& w_2) {
  const bool ok = neighbours.dim() == 3 && session.dim() == 2 && weights.dim() == 2 && w_1.dim() == 2 &&
                  w_2.dim() == 2 && session.size(0) == neighbours.size(0) && session.size(1) == neighbours.size(2) &&
                  weights.size(0) == neighbours.size(0) && weights.size(1) == neighbours.size(1) &&
                  w_1.size(0) == neighbours.size(2) + 1 && w_1.size(1) == neighbours.size(2) &&
                  w_2.size(0) == neighbours.size(2) && w_2.size(1) == 1;
  if (!ok)
    throw Error(c10::str("neighbour_attention: expected session [n, d], neighbours [n, K, d], weights [n, K], w_1 ",
                         "[d + 1, d], w_2 [d, 1]; got ", session.sizes(), ", ", neighbours.sizes(), ", ",
                         weights.sizes(), ", ", w_1.sizes(), ", ", w_2.sizes()));
}

}  // namespace

torch::Tensor composed_neighbour_attention(const torch::Tensor& session, const torch::Tensor& neighbours,
                                          const torch::Tensor& weights, const torch::Tensor& w_1,
                                          const torch::Tensor& w_2) {
  check_shapes(session, neighbours, weights, w_1, w_2);
  const std::int64_t d = neighbours.size(2);
  namespace F = torch::nn::functional;
  // [s ⊙ h ; w] W1 = (s ⊙ h) W1[:d] + w W1[d], without the concatenation.
  const auto hidden = torch::matmul(session.unsqueeze(1) * neighbours, w_1.narrow(0, 0, d)) +
                      weights.unsqueeze(-1) * w_1[d];  // [n, K, d]
  const auto logits =
      torch::matmul(F::leaky_relu(hidden, F::LeakyReLUFuncOptions().negative_slope(kNegativeSlope)), w_2);  // [n, K, 1]
  return (torch::softmax(logits, 1) * neighbours).sum(1);
}

torch::Tensor neighbour_attention(const torch::Tensor& session, const torch::Tensor& neighbours,
                                  const torch::Tensor& weights, const torch::Tensor& w_1, const torch::Tensor& w_2) {
  check_shapes(session, neighbours, weights, w_1, w_2);
  const auto dtype = neighbours.scalar_type();
  bool fused = (dtype == torch::kFloat32 || dtype == torch::kFloat64) && neighbours.size(1) <= kMaxNeighbours;
  for (const auto* t : {&session, &neighbours, &weights, &w_1, &w_2})
    fused = fused && t->device().is_cpu() && t->scalar_type() == dtype;
  if (!fused) return composed_neighbour_attention(session, neighbours, weights, w_1, w_2);
  return NeighbourAttention::apply(session.contiguous(), neighbours.contiguous(), weights.contiguous(),
                                   w_1.contiguous(), w_2.contiguous());
}

}  // namespace llm4sbr::models
