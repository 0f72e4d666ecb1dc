#include "llm4sbr/models/packed_attention.hpp"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "llm4sbr/core/error.hpp"
#include "llm4sbr/models/dropout.hpp"

namespace llm4sbr::models {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

std::int64_t triangle(std::int64_t m) { return m * (m + 1) / 2; }

// Where each session starts: its first row, and its first pair in the (session, head, query, key) order.
struct Sessions {
  std::vector<std::int64_t> length, row, pair;
  std::int64_t rows = 0, pairs = 0;
};

Sessions sessions_of(const torch::Tensor& lengths, std::int64_t heads) {
  const auto cpu = lengths.to(torch::kCPU).contiguous();
  const auto* m = cpu.data_ptr<std::int64_t>();
  Sessions s;
  for (std::int64_t b = 0; b < cpu.numel(); ++b) {
    s.length.push_back(m[b]);
    s.row.push_back(s.rows);
    s.pair.push_back(s.pairs);
    s.rows += m[b];
    s.pairs += heads * triangle(m[b]);
  }
  return s;
}

// The dh-long products of the loops below. The file is compiled with -fassociative-math, so that the
// compiler may split dot's sum into vector lanes (the order of a float sum is all that changes).
template <typename T>
T dot(const T* a, const T* b, std::int64_t n) {
  T sum = 0;
  for (std::int64_t j = 0; j < n; ++j) sum += a[j] * b[j];
  return sum;
}

template <typename T>
void axpy(T alpha, const T* x, T* y, std::int64_t n) {
  for (std::int64_t j = 0; j < n; ++j) y[j] += alpha * x[j];
}

// One head of one session. q, k, v, out point at its first row and the head's first column (row stride d);
// w at its pairs, query t's t + 1 weights from triangle(t) on; keep likewise, or null. out starts at zero.
template <typename T>
void forward_head(const T* q, const T* k, const T* v, const T* keep, std::int64_t m, std::int64_t d,
                  std::int64_t dh, T scale, T* w, T* out) {
  for (std::int64_t t = 0; t < m; ++t) {
    T* wt = w + triangle(t);
    T top = -std::numeric_limits<T>::infinity();
    for (std::int64_t s = 0; s <= t; ++s) top = std::max(top, wt[s] = scale * dot(q + t * d, k + s * d, dh));
    T sum = 0;
    for (std::int64_t s = 0; s <= t; ++s) sum += wt[s] = std::exp(wt[s] - top);
    for (std::int64_t s = 0; s <= t; ++s) wt[s] /= sum;
    for (std::int64_t s = 0; s <= t; ++s) axpy(keep ? wt[s] * keep[triangle(t) + s] : wt[s], v + s * d, out + t * d, dh);
  }
}

// The backward pass of forward_head: grad is ∂L/∂out (same layout as out), dq, dk, dv accumulate (start at
// zero), scratch holds ≥ m values. With a = w ⊙ keep: ∂L/∂v_s = Σ_t a_ts g_t, ∂L/∂w_ts = keep_ts g_t · v_s,
// the softmax's ∂L/∂logit_ts = w_ts (∂L/∂w_ts − Σ_s' w_ts' ∂L/∂w_ts'), then the products' gradients.
template <typename T>
void backward_head(const T* q, const T* k, const T* v, const T* keep, const T* w, const T* grad, std::int64_t m,
                   std::int64_t d, std::int64_t dh, T scale, T* dq, T* dk, T* dv, T* scratch) {
  for (std::int64_t t = 0; t < m; ++t) {
    const T* wt = w + triangle(t);
    const T* g = grad + t * d;
    T centre = 0;
    for (std::int64_t s = 0; s <= t; ++s) {
      const T kept = keep ? keep[triangle(t) + s] : T(1);
      axpy(wt[s] * kept, g, dv + s * d, dh);
      scratch[s] = kept * dot(g, v + s * d, dh);
      centre += wt[s] * scratch[s];
    }
    for (std::int64_t s = 0; s <= t; ++s) {
      const T d_logit = wt[s] * (scratch[s] - centre) * scale;
      axpy(d_logit, k + s * d, dq + t * d, dh);
      axpy(d_logit, q + t * d, dk + s * d, dh);
    }
  }
}

// Pointers to the tensors of one call, and the loops over sessions and heads.
template <typename T>
struct Kernel {
  const T *q, *k, *v, *keep;
  std::int64_t d, heads;

  std::int64_t dh() const { return d / heads; }
  T scale() const { return T(1) / std::sqrt(static_cast<T>(dh())); }

  void forward(const Sessions& s, T* w, T* out) const {
    for (std::size_t b = 0; b < s.length.size(); ++b)
      for (std::int64_t j = 0; j < heads; ++j) {
        const auto at = s.row[b] * d + j * dh();
        const auto pairs = s.pair[b] + j * triangle(s.length[b]);
        forward_head(q + at, k + at, v + at, keep ? keep + pairs : nullptr, s.length[b], d, dh(), scale(), w + pairs,
                     out + at);
      }
  }

  void backward(const Sessions& s, const T* w, const T* grad, T* dq, T* dk, T* dv) const {
    std::vector<T> scratch(static_cast<std::size_t>(
        std::max<std::int64_t>(1, *std::max_element(s.length.begin(), s.length.end()))));
    for (std::size_t b = 0; b < s.length.size(); ++b)
      for (std::int64_t j = 0; j < heads; ++j) {
        const auto at = s.row[b] * d + j * dh();
        const auto pairs = s.pair[b] + j * triangle(s.length[b]);
        backward_head(q + at, k + at, v + at, keep ? keep + pairs : nullptr, w + pairs, grad + at, s.length[b], d,
                      dh(), scale(), dq + at, dk + at, dv + at, scratch.data());
      }
  }
};

void forward_all(const Kernel<double>& kernel, const Sessions& s, double* w, double* out) { kernel.forward(s, w, out); }

[[gnu::target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")]]
void forward_all(const Kernel<float>& kernel, const Sessions& s, float* w, float* out) { kernel.forward(s, w, out); }

void backward_all(const Kernel<double>& kernel, const Sessions& s, const double* w, const double* grad, double* dq,
                  double* dk, double* dv) {
  kernel.backward(s, w, grad, dq, dk, dv);
}

[[gnu::target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")]]
void backward_all(const Kernel<float>& kernel, const Sessions& s, const float* w, const float* grad, float* dq,
                  float* dk, float* dv) {
  kernel.backward(s, w, grad, dq, dk, dv);
}

template <typename T>
Kernel<T> kernel_of(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, const torch::Tensor& keep,
                    std::int64_t heads) {
  return {q.data_ptr<T>(), k.data_ptr<T>(), v.data_ptr<T>(), keep.numel() > 0 ? keep.data_ptr<T>() : nullptr,
          q.size(1), heads};
}

struct CausalAttention : torch::autograd::Function<CausalAttention> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v, const torch::Tensor& lengths, std::int64_t heads,
                               const torch::Tensor& keep) {
    const auto sessions = sessions_of(lengths, heads);
    auto w = at::empty({sessions.pairs}, q.options());  // the softmax weights, kept for the backward pass
    auto out = at::zeros_like(q);
    AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "causal_attention_forward", [&] {
      forward_all(kernel_of<scalar_t>(q, k, v, keep, heads), sessions, w.data_ptr<scalar_t>(), out.data_ptr<scalar_t>());
    });
    ctx->save_for_backward({q, k, v, lengths, keep, w});
    ctx->saved_data["heads"] = heads;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto &q = saved[0], &k = saved[1], &v = saved[2], &lengths = saved[3], &keep = saved[4], &w = saved[5];
    const auto heads = ctx->saved_data["heads"].toInt();
    const auto grad = grad_outputs[0].contiguous();
    auto dq = at::zeros_like(q), dk = at::zeros_like(k), dv = at::zeros_like(v);
    AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "causal_attention_backward", [&] {
      backward_all(kernel_of<scalar_t>(q, k, v, keep, heads), sessions_of(lengths, heads), w.data_ptr<scalar_t>(),
                   grad.data_ptr<scalar_t>(), dq.data_ptr<scalar_t>(), dk.data_ptr<scalar_t>(), dv.data_ptr<scalar_t>());
    });
    return {dq, dk, dv, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

// Shapes causal_attention accepts, checked before any pointer is read.
void check_inputs(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, const torch::Tensor& lengths,
                  std::int64_t heads, const torch::Tensor& keep) {
  if (q.dim() != 2 || !k.sizes().equals(q.sizes()) || !v.sizes().equals(q.sizes()))
    throw Error(c10::str("causal_attention: expected q, k, v of one shape [P, d]; got ", q.sizes(), ", ", k.sizes(),
                         ", ", v.sizes()));
  if (k.scalar_type() != q.scalar_type() || v.scalar_type() != q.scalar_type())
    throw Error("causal_attention: q, k and v must have one dtype");
  if (heads < 1 || q.size(1) % heads != 0)
    throw Error(c10::str("causal_attention: heads (", heads, ") must divide d = ", q.size(1)));
  if (lengths.dim() != 1 || lengths.scalar_type() != torch::kLong)
    throw Error("causal_attention: lengths must be a 1-d int64 tensor");
  if (lengths.numel() > 0 && lengths.min().item<std::int64_t>() < 1)
    throw Error("causal_attention: every session needs at least one row (lengths >= 1)");
  if (lengths.sum().item<std::int64_t>() != q.size(0))
    throw Error(c10::str("causal_attention: lengths sum to ", lengths.sum().item<std::int64_t>(), " but q has ",
                         q.size(0), " rows"));
  if (keep.defined() &&
      (keep.dim() != 1 || keep.numel() != causal_pairs(lengths, heads) || keep.scalar_type() != q.scalar_type()))
    throw Error(c10::str("causal_attention: keep must be [", causal_pairs(lengths, heads), "] of q's dtype; got ",
                         keep.sizes(), " ", keep.scalar_type()));
}

// The real rows of a [B, n] window of sessions of `lengths` rows (left-aligned): the mask [B, n] and the flat
// slots [P] of B·n, in row order.
std::pair<torch::Tensor, torch::Tensor> window_of(const torch::Tensor& lengths, std::int64_t n) {
  const auto real = torch::arange(n, lengths.options()).unsqueeze(0) < lengths.unsqueeze(1);
  return {real, real.reshape({-1}).nonzero().squeeze(1)};
}

// Query t may attend to key s iff s <= t and s is real: [B, n, n].
torch::Tensor allowed_pairs(const torch::Tensor& real) {
  const auto n = real.size(1);
  const auto causal = torch::ones({n, n}, torch::TensorOptions().dtype(torch::kBool).device(real.device())).tril();
  return causal.unsqueeze(0).logical_and(real.unsqueeze(1));
}

// The pairs causal_attention computes, in a padded [B, h, n, n] tensor: allowed pairs of real queries.
torch::Tensor counted_pairs(const torch::Tensor& real, std::int64_t heads) {
  const auto b = real.size(0), n = real.size(1);
  return allowed_pairs(real).logical_and(real.unsqueeze(2)).unsqueeze(1).expand({b, heads, n, n});
}

}  // namespace

std::int64_t causal_pairs(const torch::Tensor& lengths, std::int64_t heads) {
  return heads * (lengths * (lengths + 1) / 2).sum().item<std::int64_t>();
}

torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                               const torch::Tensor& lengths, std::int64_t heads, const torch::Tensor& keep) {
  check_inputs(q, k, v, lengths, heads, keep);
  const bool written_out = q.device().is_cpu() && k.device().is_cpu() && v.device().is_cpu() &&
                           (!keep.defined() || keep.device().is_cpu()) &&
                           (q.scalar_type() == torch::kFloat32 || q.scalar_type() == torch::kFloat64);
  if (!written_out) return composed_causal_attention(q, k, v, lengths, heads, keep);
  // An empty keep stands for none (autograd's apply takes no undefined tensor); a defined one with no pairs is
  // empty too, and then means the same.
  return CausalAttention::apply(q.contiguous(), k.contiguous(), v.contiguous(), lengths.to(torch::kCPU).contiguous(),
                                heads, keep.defined() ? keep.contiguous() : at::empty({0}, q.options()));
}

torch::Tensor composed_causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                        const torch::Tensor& lengths, std::int64_t heads, const torch::Tensor& keep) {
  const auto m = lengths.to(q.device());
  const std::int64_t b = m.size(0), n = b == 0 ? 0 : m.max().item<std::int64_t>(), d = q.size(1), dh = d / heads;
  const auto [real, slots] = window_of(m, n);
  // Padding keys are masked and padding queries' outputs dropped, so zeros there change no real row.
  auto window = [&](const torch::Tensor& t) {
    return torch::zeros({b * n, d}, t.options()).index_copy(0, slots, t).view({b, n, heads, dh}).transpose(1, 2);
  };
  auto logits = torch::matmul(window(q), window(k).transpose(-1, -2)) / std::sqrt(static_cast<double>(dh));
  logits = logits.masked_fill(allowed_pairs(real).logical_not().unsqueeze(1), -std::numeric_limits<double>::infinity());
  auto weights = torch::softmax(logits, -1);  // [B, h, n, n]
  if (keep.defined())
    weights = weights * torch::zeros_like(weights).masked_scatter_(counted_pairs(real, heads), keep.to(q.device()));
  return torch::matmul(weights, window(v)).transpose(1, 2).reshape({b * n, d}).index_select(0, slots);
}

torch::Tensor attention_keep(const torch::Tensor& lengths, std::int64_t window, std::int64_t heads, double p,
                             bool training, bool padded_masks, const torch::TensorOptions& options) {
  if (!training || p == 0) return {};
  const auto pairs = causal_pairs(lengths, heads);
  if (p >= 1) return torch::zeros({pairs}, options);  // at::dropout draws nothing either
  if (!padded_masks) return dropout_noise({pairs}, p, options);
  // F::dropout's draws over the whole padded tensor, read at the pairs.
  const auto noise = dropout_noise({lengths.size(0), heads, window, window}, p, options);
  const auto real = window_of(lengths.to(options.device()), window).first;
  return noise.masked_select(counted_pairs(real, heads));
}

}  // namespace llm4sbr::models
