// Operations on a batch's clicks packed back to back ([P, ...] rows, each with the batch row, its
// "segment", that it belongs to): the layout the graph backbones work in, because Beauty's long tail
// (prefixes up to 203 clicks, median 4) makes a padded [B, L, ...] layout mostly padding.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <utility>

namespace llm4sbr::models {

/// Attention over packed rows grouped by segment: for every segment s and column k,
///   out[s, k] = Σ_{r in s} w[r, k] · values[r, k],   w[r, k] = exp(logits[r, k]) / Z[s, k],
///   Z[s, k] = Σ_{r' in s} exp(logits[r', k]) + pad_count[s] · exp(pad_logit[s, k]).
/// logits: [R, K]; values: [R, K], or [R, D] when K = 1 (one weight per row, a weighted sum of vectors);
/// segments: [R] int64 in [0, n_segments), every segment non-empty. Result [n_segments, K or D].
/// pad_logit ([n_segments, K] or [n_segments, 1]) and pad_count ([n_segments], any numeric dtype) are optional
/// together: they add pad_count[s] virtual rows of logit pad_logit[s] and value 0 to a segment (TAGNN's
/// unmasked softmax over padded positions), so its weights then sum to less than 1. Without them each
/// segment's weights sum to 1 (values = 1 returns those sums). Stable: the per-segment maximum is
/// subtracted (without gradient, as the result does not depend on it). Cost O(R·K) plus [n_segments, K]
/// sums; neither the row-normalised weights nor a padded [n_segments, max_len, K] tensor is formed.
/// Used by TAGNN (both of its softmaxes) and GCE-GNN (the session-level attention over coded pairs).
/// Throws llm4sbr::Error for mismatched shapes, or for only one of pad_logit and pad_count.
/// float32 CPU tensors with K = D, each segment's rows back to back (0, 0, 1, 2, 2, ...) and pad_logit without
/// a gradient (TAGNN's target attention) take a fused path: 3 passes over [R, K] forward and one backward, two
/// [R, K] tensors kept for the gradient. It rounds differently from the composed operations (float32 sums in
/// another order).
torch::Tensor segment_softmax_sum(const torch::Tensor& logits, const torch::Tensor& values, const torch::Tensor& segments,
                                  std::int64_t n_segments, const torch::Tensor& pad_logit = {},
                                  const torch::Tensor& pad_count = {});

/// segment_softmax_sum by composed LibTorch operations, for any dtype, device and segment order (the
/// reference that the fused path is tested against).
torch::Tensor composed_segment_softmax_sum(const torch::Tensor& logits, const torch::Tensor& values,
                                           const torch::Tensor& segments, std::int64_t n_segments,
                                           const torch::Tensor& pad_logit = {}, const torch::Tensor& pad_count = {});

/// out[s] = Σ_{r in s} values[r]: values [R, D], segments [R] int64 in [0, n_segments) -> [n_segments, D]
/// (a segment without rows gets 0).
torch::Tensor segment_sum(const torch::Tensor& values, const torch::Tensor& segments, std::int64_t n_segments);

/// F::dropout of a padded [rows, D] tensor read at its real rows, computed from those rows only: x [P, D] holds
/// rows `slots` [P] (int64 in [0, rows)) of the padded tensor. The mask is drawn for all rows · D values, as
/// at::dropout draws it on the CPU (empty_like(input).bernoulli_(1 - p), scaled by 1 / (1 - p)), so a seed
/// drops the same values as the padded computation and a packed model trains as its padded version did (on
/// CUDA, at::dropout's fused kernel draws otherwise: the masks differ there, their law does not). Returns x
/// unchanged when !training or p = 0.
torch::Tensor dropout_rows(const torch::Tensor& x, const torch::Tensor& slots, std::int64_t rows, double p, bool training);

/// Dropout on packed rows x [P, D] that stand for rows `slots` of a padded [rows, D] tensor: with
/// padded_masks, dropout_rows (the masks drawn for the whole padded tensor: a seed drops what the padded
/// computation dropped); otherwise fast_dropout on x itself, P·D draws instead of rows·D. The law is the same;
/// the draws are not (most of a padded batch is padding, and each draw cost ~13 ns before fast_bernoulli_).
torch::Tensor dropout_packed(const torch::Tensor& x, const torch::Tensor& slots, std::int64_t rows, double p,
                             bool training, bool padded_masks);

/// The real positions of padded per-position states, packed: states [B, L, D] and mask [B, L] bool (true at
/// real clicks) -> {clicks [P, D] row by row in position order, click_sessions [P] int64 batch row of each}:
/// SessionRepresentation::clicks and ::click_sessions for the backbones that run on padded tensors.
std::pair<torch::Tensor, torch::Tensor> pack_clicks(const torch::Tensor& states, const torch::Tensor& mask);

}  // namespace llm4sbr::models
