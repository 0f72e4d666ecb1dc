// Causal self-attention within sessions of packed rows, forward and backward written out for the CPU.
// SASRec attends within a window of up to 50 clicks, but a Beauty prefix is mostly a few clicks: run on the
// zero-padded [B, h, n, n] window, a batch's products, masks, softmax and dropout were ~100x the pairs that
// exist (query t attends to keys s <= t of its own session), and so were their backward passes. Here each
// session's triangle of pairs is computed from its rows directly, and the weights are kept for the backward
// pass as one flat array of those pairs.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace llm4sbr::models {

/// The number of (query, key) pairs of causal attention over sessions of `lengths` rows with `heads` heads:
/// heads · Σ_b m_b (m_b + 1) / 2. lengths: [B] int64 (any device).
std::int64_t causal_pairs(const torch::Tensor& lengths, std::int64_t heads);

/// Causal self-attention within each session of packed rows (SASRec's, Kang & McAuley 2018 Eq. 2, the
/// causal mask of §III-B): with session b's rows o_b … o_b + m_b − 1 in position order and head j's columns
/// j·dh … (j + 1)·dh − 1 (dh = d / heads),
///   out_t = Σ_{s ≤ t} keep_{t,s} · softmax_{s ≤ t}(q_t · k_s / √dh) · v_s      for every row t of a session.
/// q, k, v: [P, d]; lengths: [B] int64, every m_b ≥ 1, Σ m_b = P; keep: undefined (all 1) or [causal_pairs]
/// multipliers of the softmax weights (dropout: 0 or 1 / (1 − p)), ordered session, head, query t, key
/// s ≤ t — the order of a padded [B, h, n, n] tensor's masked entries. Returns [P, d] with gradients to q, k
/// and v. float32 and float64 CPU tensors take the written-out kernel; other dtypes and devices the composed
/// computation on the padded window (composed_causal_attention). Throws llm4sbr::Error for bad shapes.
torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                               const torch::Tensor& lengths, std::int64_t heads, const torch::Tensor& keep = {});

/// causal_attention by LibTorch operations on the zero-padded [B, h, n, n] window (n = max m_b): the
/// reference for the kernel's tests and the path for GPUs and other dtypes. Same arguments and result.
torch::Tensor composed_causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                        const torch::Tensor& lengths, std::int64_t heads, const torch::Tensor& keep = {});

/// Dropout multipliers for causal_attention's softmax weights: undefined when !training or p = 0; otherwise
/// [causal_pairs(lengths, heads)] values, each 0 or 1 / (1 − p) and kept with probability 1 − p. Without
/// padded_masks one draw a pair (at::bernoulli_ on the global generator); with it, F::dropout's draws over the
/// whole padded [B, h, window, window] tensor, read at the pairs (a seed drops what the padded computation
/// dropped). window ≥ max m_b; options: the weights' dtype and device (the draws depend on the dtype).
torch::Tensor attention_keep(const torch::Tensor& lengths, std::int64_t window, std::int64_t heads, double p,
                             bool training, bool padded_masks, const torch::TensorOptions& options);

}  // namespace llm4sbr::models
