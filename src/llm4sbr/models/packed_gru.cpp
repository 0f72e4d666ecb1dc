#include "llm4sbr/models/packed_gru.hpp"

#include <c10/util/Exception.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "llm4sbr/core/error.hpp"
#include "llm4sbr/core/vectorizable_exp.hpp"

namespace llm4sbr::models {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The steps of a packed layout: sizes[t] = batch_sizes[t] rows for step t, starting at row
// offsets[t] = Σ_{t' < t} sizes[t'].
struct Steps {
  std::vector<std::int64_t> sizes, offsets;
};

Steps steps_of(const torch::Tensor& batch_sizes) {
  const auto* n = batch_sizes.data_ptr<std::int64_t>();
  const auto count = static_cast<std::size_t>(batch_sizes.numel());
  Steps steps{{n, n + count}, std::vector<std::int64_t>(count, 0)};
  for (std::size_t t = 1; t < steps.sizes.size(); ++t) steps.offsets[t] = steps.offsets[t - 1] + steps.sizes[t - 1];
  return steps;
}

// σ and tanh for the step loops. float: written out from vectorizable_exp so that the compiler vectorizes the
// loops (std::exp and std::tanh are calls into libm, one value at a time: they were most of the forward step's
// time). double (tests, gradient checks) keeps the library's functions.
template <typename T>
struct Activations {
  static T sigmoid(T v) { return T(1) / (T(1) + std::exp(-v)); }
  static T tanh(T v) { return std::tanh(v); }
};

template <>
struct Activations<float> {
  static float sigmoid(float v) { return 1.0f / (1.0f + vectorizable_exp(-v)); }
  // Absolute error ~1e-7 near 0.
  static float tanh(float v) { return 1.0f - 2.0f / (vectorizable_exp(2.0f * v) + 1.0f); }
};

// The gates and state of `rows` rows of one step: gi [rows, 3d] = W_i x, gh [rows, 3d] = W_h h (h_prev's
// products, zero for a zero h_0), the biases b_i and b_h [3d] (added here rather than by addmm, which first
// fills its output with the broadcast bias: a slow copy, ~0.5 ms of an SR-GNN step), h_prev [rows, d] (h_0 at
// step 0). Writes r, z, n to gates [rows, 3d], W_hn h + b_hn to gh_n [rows, d] (the backward pass needs it apart
// from r's product) and the new state to h [rows, d].
template <typename T>
[[gnu::always_inline]] inline void step_forward_rows(const T* __restrict gi, const T* __restrict gh,
                                                     const T* __restrict b_i, const T* __restrict b_h,
                                                     const T* __restrict h_prev, std::int64_t rows, std::int64_t d,
                                                     T* __restrict gates, T* __restrict gh_n, T* __restrict h) {
  using A = Activations<T>;
  for (std::int64_t i = 0; i < rows; ++i, gi += 3 * d, gh += 3 * d, h_prev += d, gates += 3 * d, gh_n += d, h += d) {
    for (std::int64_t j = 0; j < d; ++j) {
      const T hn = gh[2 * d + j] + b_h[2 * d + j];
      const T r = A::sigmoid((gi[j] + b_i[j]) + (gh[j] + b_h[j]));
      const T z = A::sigmoid((gi[d + j] + b_i[d + j]) + (gh[d + j] + b_h[d + j]));
      const T n = A::tanh((gi[2 * d + j] + b_i[2 * d + j]) + r * hn);
      gates[j] = r, gates[d + j] = z, gates[2 * d + j] = n;
      gh_n[j] = hn;
      h[j] = (T(1) - z) * n + z * h_prev[j];
    }
  }
}

void step_forward(const double* gi, const double* gh, const double* b_i, const double* b_h, const double* h_prev,
                  std::int64_t rows, std::int64_t d, double* gates, double* gh_n, double* h) {
  step_forward_rows(gi, gh, b_i, b_h, h_prev, rows, d, gates, gh_n, h);
}

[[gnu::target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")]]
void step_forward(const float* gi, const float* gh, const float* b_i, const float* b_h, const float* h_prev,
                  std::int64_t rows, std::int64_t d, float* gates, float* gh_n, float* h) {
  step_forward_rows(gi, gh, b_i, b_h, h_prev, rows, d, gates, gh_n, h);
}

// The backward pass of step_forward for `rows` rows: grad [rows, d] = ∂L/∂h' from the layer's output plus
// carry [rows, d] from the next step, h_prev [rows, d] as in step_forward. Writes the gradients of the gate
// pre-activations, input side d_gi and hidden side d_gh [rows, 3d] (equal but for n's:
// d(W_hn h + b_hn) = r ⊙ d(n's pre-activation)), and replaces carry by ∂L/∂h through z ⊙ h only (the caller
// adds d_gh W_h).
template <typename T>
[[gnu::always_inline]] inline void step_backward_rows(const T* __restrict grad, const T* __restrict gates,
                                                      const T* __restrict gh_n, const T* __restrict h_prev,
                                                      std::int64_t rows, std::int64_t d, T* __restrict carry,
                                                      T* __restrict d_gi, T* __restrict d_gh) {
  for (std::int64_t i = 0; i < rows; ++i) {
    const auto row = i * d, gate_row = 3 * i * d;
    for (std::int64_t j = 0; j < d; ++j) {
      const T r = gates[gate_row + j], z = gates[gate_row + d + j], n = gates[gate_row + 2 * d + j];
      const T dh = grad[row + j] + carry[row + j];
      const T dn_pre = dh * (T(1) - z) * (T(1) - n * n);
      const T dr_pre = dn_pre * gh_n[row + j] * r * (T(1) - r);
      const T dz_pre = dh * (h_prev[row + j] - n) * z * (T(1) - z);
      d_gi[gate_row + j] = d_gh[gate_row + j] = dr_pre;
      d_gi[gate_row + d + j] = d_gh[gate_row + d + j] = dz_pre;
      d_gi[gate_row + 2 * d + j] = dn_pre;
      d_gh[gate_row + 2 * d + j] = dn_pre * r;
      carry[row + j] = dh * z;
    }
  }
}

void step_backward(const double* grad, const double* gates, const double* gh_n, const double* h_prev,
                   std::int64_t rows, std::int64_t d, double* carry, double* d_gi, double* d_gh) {
  step_backward_rows(grad, gates, gh_n, h_prev, rows, d, carry, d_gi, d_gh);
}

// Cloned per ISA level like step_forward: the loop in the baseline's SSE2 was as long as the forward step's.
[[gnu::target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")]]
void step_backward(const float* grad, const float* gates, const float* gh_n, const float* h_prev, std::int64_t rows,
                   std::int64_t d, float* carry, float* d_gi, float* d_gh) {
  step_backward_rows(grad, gates, gh_n, h_prev, rows, d, carry, d_gi, d_gh);
}

struct PackedGru : torch::autograd::Function<PackedGru> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& w_ih,
                               const torch::Tensor& w_hh, const torch::Tensor& b_ih, const torch::Tensor& b_hh,
                               const torch::Tensor& batch_sizes, const torch::Tensor& initial) {
    const bool has_initial = initial.dim() == 2;  // else a 1-d placeholder: apply() takes no undefined tensor
    const auto [sizes, offsets] = steps_of(batch_sizes);
    const std::int64_t rows = x.size(0), d = w_hh.size(1), first = sizes.empty() ? 0 : sizes[0];
    const auto gi = at::mm(x, w_ih.t());  // the input side of every step in one product, [P, 3d]
    auto h = at::empty({rows, d}, x.options());
    auto gates = at::empty({rows, 3 * d}, x.options());
    auto gh_n = at::empty({rows, d}, x.options());
    // Scratch for W_h h: at step 0 W_h h_0, zero when h_0 = 0; later steps overwrite its first rows.
    auto gh = has_initial ? at::mm(initial, w_hh.t()) : at::zeros({first, 3 * d}, x.options());
    const auto h_0 = has_initial ? initial : at::zeros({first, d}, x.options());
    const auto b_i = b_ih.contiguous(), b_h = b_hh.contiguous();
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "packed_gru_forward", [&] {
      for (std::size_t t = 0; t < sizes.size(); ++t) {
        const auto o = offsets[t], n = sizes[t];
        const scalar_t* h_prev = h_0.data_ptr<scalar_t>();
        if (t > 0) {
          const auto previous = h.narrow(0, offsets[t - 1], n);
          auto gh_t = gh.narrow(0, 0, n);
          at::mm_out(gh_t, previous, w_hh.t());
          h_prev = previous.data_ptr<scalar_t>();
        }
        step_forward(gi.data_ptr<scalar_t>() + o * 3 * d, gh.data_ptr<scalar_t>(), b_i.data_ptr<scalar_t>(),
                     b_h.data_ptr<scalar_t>(), h_prev, n, d, gates.data_ptr<scalar_t>() + o * 3 * d,
                     gh_n.data_ptr<scalar_t>() + o * d, h.data_ptr<scalar_t>() + o * d);
      }
    });
    ctx->save_for_backward({x, w_ih, w_hh, h, gates, gh_n, batch_sizes, initial});
    return h;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &w_ih = saved[1], &w_hh = saved[2], &h = saved[3], &gates = saved[4], &gh_n = saved[5];
    const auto &batch_sizes = saved[6], &initial = saved[7];
    const bool has_initial = initial.dim() == 2;
    const auto [sizes, offsets] = steps_of(batch_sizes);
    const std::int64_t rows = x.size(0), d = w_hh.size(1);
    const auto grad = grad_outputs[0].contiguous();
    auto d_gi = at::empty({rows, 3 * d}, x.options());
    auto d_gh = at::empty({rows, 3 * d}, x.options());
    auto h_prev = at::zeros({rows, d}, x.options());  // each row's previous state, for W_h's gradient
    if (has_initial) h_prev.narrow(0, 0, initial.size(0)).copy_(initial);
    auto carry = at::zeros({sizes.empty() ? 0 : sizes[0], d}, x.options());
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "packed_gru_backward", [&] {
      for (std::size_t t = sizes.size(); t-- > 0;) {
        const auto o = offsets[t], n = sizes[t];
        if (t > 0) h_prev.narrow(0, o, n).copy_(h.narrow(0, offsets[t - 1], n));  // step 0's rows stay h_0
        const scalar_t* previous = h_prev.data_ptr<scalar_t>() + o * d;
        step_backward(grad.data_ptr<scalar_t>() + o * d, gates.data_ptr<scalar_t>() + o * 3 * d,
                      gh_n.data_ptr<scalar_t>() + o * d, previous, n, d, carry.data_ptr<scalar_t>(),
                      d_gi.data_ptr<scalar_t>() + o * 3 * d, d_gh.data_ptr<scalar_t>() + o * 3 * d);
        if (t > 0 || has_initial) {  // the rest of ∂L/∂h for the step before (or h_0): through W_h h
          auto carried = carry.narrow(0, 0, n);
          carried.addmm_(d_gh.narrow(0, o, n), w_hh);
        }
      }
    });
    return {d_gi.mm(w_ih), d_gi.t().mm(x), d_gh.t().mm(h_prev), d_gi.sum(0), d_gh.sum(0), torch::Tensor(),
            has_initial ? carry : torch::Tensor()};
  }
};

// Shapes, dtypes and devices packed_gru_layer accepts, checked before any pointer is read.
void check_inputs(const torch::Tensor& x, const torch::Tensor& batch_sizes, const torch::Tensor& w_ih,
                  const torch::Tensor& w_hh, const torch::Tensor& b_ih, const torch::Tensor& b_hh,
                  const torch::Tensor& h_0) {
  const bool floating = x.scalar_type() == torch::kFloat32 || x.scalar_type() == torch::kFloat64;
  for (const auto* t : {&x, &w_ih, &w_hh, &b_ih, &b_hh, &batch_sizes, &h_0})
    if (t->defined() && !t->device().is_cpu())
      throw Error("packed_gru_layer: CPU tensors only (use torch::nn::GRU on a GPU)");
  for (const auto* t : {&w_ih, &w_hh, &b_ih, &b_hh, &h_0})
    if (t->defined() && (!floating || t->scalar_type() != x.scalar_type()))
      throw Error("packed_gru_layer: x, the weights and h_0 must be all float32 or all float64");
  const auto d = w_hh.dim() == 2 ? w_hh.size(1) : -1;
  if (x.dim() != 2 || d < 1 || w_hh.size(0) != 3 * d || w_ih.dim() != 2 || w_ih.size(0) != 3 * d ||
      w_ih.size(1) != x.size(1) || b_ih.dim() != 1 || b_ih.size(0) != 3 * d || b_hh.dim() != 1 || b_hh.size(0) != 3 * d)
    throw Error(c10::str("packed_gru_layer: expected x [P, d_in], w_ih [3d, d_in], w_hh [3d, d], biases [3d]; got x ",
                         x.sizes(), ", w_ih ", w_ih.sizes(), ", w_hh ", w_hh.sizes(), ", b_ih ", b_ih.sizes(),
                         ", b_hh ", b_hh.sizes()));
  if (batch_sizes.dim() != 1 || batch_sizes.scalar_type() != torch::kLong)
    throw Error("packed_gru_layer: batch_sizes must be a 1-d int64 tensor");
  const auto* s = batch_sizes.data_ptr<std::int64_t>();
  std::int64_t total = 0;
  for (std::int64_t t = 0; t < batch_sizes.numel(); ++t) {
    if (s[t] < 1 || (t > 0 && s[t] > s[t - 1]))
      throw Error("packed_gru_layer: batch_sizes must be positive and non-increasing (a PackedSequence's)");
    total += s[t];
  }
  if (total != x.size(0))
    throw Error(c10::str("packed_gru_layer: batch_sizes sum to ", total, " but x has ", x.size(0), " rows"));
  const auto first = batch_sizes.numel() > 0 ? s[0] : 0;
  if (h_0.defined() && (h_0.dim() != 2 || h_0.size(0) != first || h_0.size(1) != d))
    throw Error(
        c10::str("packed_gru_layer: h_0 must be [", first, ", ", d, "] (the first step's rows); got ", h_0.sizes()));
}

}  // namespace

torch::Tensor packed_gru_layer(const torch::Tensor& x, const torch::Tensor& batch_sizes, const torch::Tensor& w_ih,
                               const torch::Tensor& w_hh, const torch::Tensor& b_ih, const torch::Tensor& b_hh,
                               const torch::Tensor& h_0) {
  check_inputs(x, batch_sizes, w_ih, w_hh, b_ih, b_hh, h_0);
  return PackedGru::apply(x.contiguous(), w_ih.contiguous(), w_hh.contiguous(), b_ih.contiguous(), b_hh.contiguous(),
                          batch_sizes.contiguous(), h_0.defined() ? h_0.contiguous() : at::empty({0}, x.options()));
}

}  // namespace llm4sbr::models
