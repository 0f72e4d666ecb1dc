#include "llm4sbr/models/segments.hpp"

#include <cmath>

#include "llm4sbr/core/error.hpp"

namespace llm4sbr::models {

torch::Tensor segment_softmax_sum(const torch::Tensor& logits, const torch::Tensor& values, const torch::Tensor& segments,
                                  std::int64_t n_segments, const torch::Tensor& pad_logit, const torch::Tensor& pad_count) {
  if (logits.dim() != 2 || values.dim() != 2 || segments.dim() != 1 || segments.size(0) != logits.size(0) ||
      values.size(0) != logits.size(0) || (logits.size(1) != 1 && logits.size(1) != values.size(1)))
    throw Error(c10::str("segment_softmax_sum: expected logits [R, K], values [R, K] or [R, D] with K = 1 and segments "
                         "[R], got ", logits.sizes(), ", ", values.sizes(), " and ", segments.sizes()));
  if (pad_logit.defined() != pad_count.defined())
    throw Error("segment_softmax_sum: pad_logit and pad_count must be given together");
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

std::pair<torch::Tensor, torch::Tensor> pack_clicks(const torch::Tensor& states, const torch::Tensor& mask) {
  const auto rows = torch::arange(mask.size(0), torch::TensorOptions(torch::kInt64).device(mask.device()));
  return {states.index({mask}), rows.unsqueeze(1).expand_as(mask).index({mask})};
}

torch::Tensor gather_rows(const torch::Tensor& states, const torch::Tensor& last) {
  return states.index({torch::arange(states.size(0), last.options()), last});
}

}  // namespace llm4sbr::models
