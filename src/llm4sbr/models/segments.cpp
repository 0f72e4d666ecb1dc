#include "llm4sbr/models/segments.hpp"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "llm4sbr/core/error.hpp"
#include "llm4sbr/models/dropout.hpp"

namespace llm4sbr::models {

namespace {

// --- the fused path of segment_softmax_sum -------------------------------------------------------------------
//
// TAGNN's target attention runs the segment softmax on two [P, N] tensors (every click against every item):
// the composed LibTorch operations below make ~10 passes over [P, N] forward and more backward, each a
// tensor of its own kept for the gradient. The fused path makes 3 passes forward (shift, exp, sums) and one
// backward, and keeps two [P, N] tensors. It needs float32 on the CPU, one logit per value (K = D), the rows of
// each segment back to back (segments non-decreasing, as the backbones pack clicks) and no gradient for
// pad_logit (TAGNN's is a constant); anything else takes the composed path.

/// The rows of segment s are [starts[s], starts[s + 1]).
std::vector<std::int64_t> segment_starts(const torch::Tensor& segments, std::int64_t n_segments) {
  std::vector<std::int64_t> starts(static_cast<std::size_t>(n_segments) + 1, 0);
  const auto seg = segments.contiguous();
  const auto* p = seg.data_ptr<std::int64_t>();
  for (std::int64_t r = 0; r < seg.numel(); ++r) ++starts[static_cast<std::size_t>(p[r]) + 1];
  for (std::size_t s = 1; s < starts.size(); ++s) starts[s] += starts[s - 1];
  return starts;
}

/// Segments 0, 1, ..., n_segments - 1 in order, each with at least one row.
bool rows_back_to_back(const torch::Tensor& segments, std::int64_t n_segments) {
  const auto seg = segments.contiguous();
  const auto* p = seg.data_ptr<std::int64_t>();
  const auto n = seg.numel();
  if (n == 0 || p[0] != 0 || p[n - 1] != n_segments - 1) return false;
  for (std::int64_t r = 1; r < n; ++r)
    if (p[r] != p[r - 1] && p[r] != p[r - 1] + 1) return false;
  return true;
}

bool fused_applies(const torch::Tensor& logits, const torch::Tensor& values, const torch::Tensor& segments,
                   std::int64_t n_segments, const torch::Tensor& pad_logit) {
  return logits.is_cpu() && values.is_cpu() && segments.is_cpu() && logits.scalar_type() == torch::kFloat32 &&
         values.scalar_type() == torch::kFloat32 && segments.scalar_type() == torch::kInt64 &&
         logits.sizes() == values.sizes() && !(pad_logit.defined() && pad_logit.requires_grad()) &&
         rows_back_to_back(segments, n_segments);
}

// Kernels over one segment's rows [r0, r1) of [*, k] row-major tensors, cloned per ISA level (GCC vectorizes
// the loops over columns; x86-64-v3 and v4 are dispatched on the CPU's features).

/// shift[c] = max over the rows of logits[r, c] (and of pad[c] when has_pad); a[r, c] = logits[r, c] - shift[c].
[[gnu::target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")]]
void shifted_logits(const float* __restrict logits, std::int64_t r0, std::int64_t r1, std::int64_t k,
                    const float* __restrict pad, bool has_pad, float* __restrict shift, float* __restrict a) {
  std::copy_n(logits + r0 * k, k, shift);
  for (std::int64_t r = r0 + 1; r < r1; ++r)
    for (std::int64_t c = 0; c < k; ++c) shift[c] = std::max(shift[c], logits[r * k + c]);
  if (has_pad)
    for (std::int64_t c = 0; c < k; ++c) shift[c] = std::max(shift[c], pad[c]);
  for (std::int64_t r = r0; r < r1; ++r)
    for (std::int64_t c = 0; c < k; ++c) a[r * k + c] = logits[r * k + c] - shift[c];
}

/// z[c] += Σ_r a[r, c] (z holds the padding's share), out[c] = Σ_r a[r, c] v[r, c] / z[c].
[[gnu::target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")]]
void weighted_sums(const float* __restrict a, const float* __restrict v, std::int64_t r0, std::int64_t r1,
                   std::int64_t k, float* __restrict z, float* __restrict out) {
  std::fill_n(out, k, 0.0f);
  for (std::int64_t r = r0; r < r1; ++r)
    for (std::int64_t c = 0; c < k; ++c) {
      z[c] += a[r * k + c];
      out[c] += a[r * k + c] * v[r * k + c];
    }
  for (std::int64_t c = 0; c < k; ++c) out[c] /= z[c];
}

/// d values[r, c] = w g[c] and d logits[r, c] = w (v[r, c] - out[c]) g[c], w = a[r, c] / z[c]; gz = g / z.
[[gnu::target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")]]
void weight_gradients(const float* __restrict a, const float* __restrict v, std::int64_t r0, std::int64_t r1,
                      std::int64_t k, const float* __restrict gz, const float* __restrict out,
                      float* __restrict d_logits, float* __restrict d_values) {
  for (std::int64_t r = r0; r < r1; ++r)
    for (std::int64_t c = 0; c < k; ++c) {
      const float dv = a[r * k + c] * gz[c];
      d_values[r * k + c] = dv;
      d_logits[r * k + c] = dv * (v[r * k + c] - out[c]);
    }
}

void check_softmax_sum_arguments(const torch::Tensor& logits, const torch::Tensor& values, const torch::Tensor& segments,
                                 const torch::Tensor& pad_logit, const torch::Tensor& pad_count) {
  if (logits.dim() != 2 || values.dim() != 2 || segments.dim() != 1 || segments.size(0) != logits.size(0) ||
      values.size(0) != logits.size(0) || (logits.size(1) != 1 && logits.size(1) != values.size(1)))
    throw Error(c10::str("segment_softmax_sum: expected logits [R, K], values [R, K] or [R, D] with K = 1 and segments "
                         "[R], got ", logits.sizes(), ", ", values.sizes(), " and ", segments.sizes()));
  if (pad_logit.defined() != pad_count.defined())
    throw Error("segment_softmax_sum: pad_logit and pad_count must be given together");
}

/// The fused segment softmax sum as an autograd function of logits and values.
class FusedSegmentSoftmaxSum : public torch::autograd::Function<FusedSegmentSoftmaxSum> {
 public:
  /// pad_logit: [S, K] or [S, 1]; pad_count: [S] float32; both empty without padding (autograd functions take
  /// no undefined tensors).
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& logits,
                               const torch::Tensor& values, const torch::Tensor& segments, std::int64_t n_segments,
                               const torch::Tensor& pad_logit, const torch::Tensor& pad_count) {
    const auto l = logits.contiguous(), v = values.contiguous();
    const auto k = l.size(1);
    const auto starts = segment_starts(segments, n_segments);
    const bool padded = pad_count.numel() > 0;
    const auto pad = padded ? pad_logit.expand({n_segments, k}).contiguous() : torch::Tensor();
    const auto* counts = padded ? pad_count.data_ptr<float>() : nullptr;
    auto shift = torch::empty({n_segments, k}, l.options());
    auto a = torch::empty_like(l);
    at::parallel_for(0, n_segments, 1, [&](std::int64_t s0, std::int64_t s1) {
      for (auto s = s0; s < s1; ++s)
        shifted_logits(l.data_ptr<float>(), starts[s], starts[s + 1], k, padded ? pad.data_ptr<float>() + s * k : nullptr,
                       padded && counts[s] > 0, shift.data_ptr<float>() + s * k, a.data_ptr<float>());
    });
    a.exp_();  // LibTorch's vectorized exp
    // The padding's share of each denominator: pad_count exp(pad_logit - shift), 0 without padding rows.
    auto z = padded ? torch::where(pad_count.unsqueeze(1) > 0, pad_count.unsqueeze(1) * (pad - shift).exp(),
                                   torch::zeros({}, l.options()))
                          .contiguous()
                    : torch::zeros({n_segments, k}, l.options());
    auto out = torch::empty({n_segments, k}, l.options());
    at::parallel_for(0, n_segments, 1, [&](std::int64_t s0, std::int64_t s1) {
      for (auto s = s0; s < s1; ++s)
        weighted_sums(a.data_ptr<float>(), v.data_ptr<float>(), starts[s], starts[s + 1], k, z.data_ptr<float>() + s * k,
                      out.data_ptr<float>() + s * k);
    });
    ctx->save_for_backward({a, v, z, out, segments});
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &a = saved[0], &v = saved[1], &z = saved[2], &out = saved[3], &segments = saved[4];
    const auto k = a.size(1);
    const auto n_segments = out.size(0);
    const auto starts = segment_starts(segments, n_segments);
    const auto gz = (grads[0] / z).contiguous();
    auto d_logits = torch::empty_like(a), d_values = torch::empty_like(a);
    at::parallel_for(0, n_segments, 1, [&](std::int64_t s0, std::int64_t s1) {
      for (auto s = s0; s < s1; ++s)
        weight_gradients(a.data_ptr<float>(), v.data_ptr<float>(), starts[s], starts[s + 1], k, gz.data_ptr<float>() + s * k,
                         out.data_ptr<float>() + s * k, d_logits.data_ptr<float>(), d_values.data_ptr<float>());
    });
    return {d_logits, d_values, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor segment_softmax_sum(const torch::Tensor& logits, const torch::Tensor& values, const torch::Tensor& segments,
                                  std::int64_t n_segments, const torch::Tensor& pad_logit, const torch::Tensor& pad_count) {
  check_softmax_sum_arguments(logits, values, segments, pad_logit, pad_count);
  if (fused_applies(logits, values, segments, n_segments, pad_logit))
    return FusedSegmentSoftmaxSum::apply(
        logits, values, segments, n_segments,
        pad_logit.defined() ? pad_logit.detach().to(torch::kFloat32) : torch::empty({0}, torch::kFloat32),
        pad_count.defined() ? pad_count.to(torch::kFloat32).contiguous() : torch::empty({0}, torch::kFloat32));
  return composed_segment_softmax_sum(logits, values, segments, n_segments, pad_logit, pad_count);
}

torch::Tensor composed_segment_softmax_sum(const torch::Tensor& logits, const torch::Tensor& values,
                                           const torch::Tensor& segments, std::int64_t n_segments,
                                           const torch::Tensor& pad_logit, const torch::Tensor& pad_count) {
  check_softmax_sum_arguments(logits, values, segments, pad_logit, pad_count);
  const std::int64_t k = logits.size(1);
  torch::Tensor shift;  // per-segment maximum: a constant shift, so it needs no gradient
  {
    torch::NoGradGuard no_grad;
    shift = torch::zeros({n_segments, k}, logits.options()).index_reduce(0, segments, logits.detach(), "amax", false);
    if (pad_logit.defined())
      shift = torch::where(pad_count.gt(0).unsqueeze(1), torch::maximum(shift, pad_logit.detach()), shift);
  }
  // Σ_r exp(l_r − m) v_r / Σ_r exp(l_r − m) per segment: the [R, K] weights are never normalised row by row.
  const auto exp = torch::exp(logits - shift.index_select(0, segments));
  auto denominator = segment_sum(exp, segments, n_segments);
  if (pad_logit.defined()) {
    // Segments without padding get exp(−inf) = 0, never 0 · exp(large) = NaN (nor a NaN gradient).
    const auto has_pad = pad_count.gt(0).unsqueeze(1);
    const auto exponent = torch::where(has_pad, pad_logit - shift, torch::full({}, -INFINITY, logits.options()));
    denominator = denominator + pad_count.to(logits.scalar_type()).unsqueeze(1) * torch::exp(exponent);
  }
  return segment_sum(exp * values, segments, n_segments) / denominator;
}

torch::Tensor segment_sum(const torch::Tensor& values, const torch::Tensor& segments, std::int64_t n_segments) {
  return torch::zeros({n_segments, values.size(1)}, values.options()).index_add(0, segments, values);
}

torch::Tensor dropout_rows(const torch::Tensor& x, const torch::Tensor& slots, std::int64_t rows, double p,
                           bool training) {
  if (!training || p == 0) return x;
  if (p >= 1) return x * torch::zeros({}, x.options());  // at::dropout draws nothing either
  return x * dropout_noise({rows, x.size(1)}, p, x.options()).index_select(0, slots);
}

torch::Tensor dropout_packed(const torch::Tensor& x, const torch::Tensor& slots, std::int64_t rows, double p,
                             bool training, bool padded_masks) {
  if (padded_masks) return dropout_rows(x, slots, rows, p, training);
  return fast_dropout(x, p, training);
}

std::pair<torch::Tensor, torch::Tensor> pack_clicks(const torch::Tensor& states, const torch::Tensor& mask) {
  const auto rows = torch::arange(mask.size(0), torch::TensorOptions(torch::kInt64).device(mask.device()));
  return {states.index({mask}), rows.unsqueeze(1).expand_as(mask).index({mask})};
}

}  // namespace llm4sbr::models
