// The per-batch session graph of SR-GNN (and of the models built on it, TAGNN): each session becomes a
// small directed graph over its distinct items, with in- and out-normalised adjacency
// (backbone-notes §3.1, the official code's utils.Data.get_slice).
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace llm4sbr::models {

/// The graphs of a batch of sessions, packed: the nodes of every session back to back, no padding.
///
/// The reference pads every session to the dataset's longest one and multiplies dense [B, n, n]
/// matrices; with Beauty's long tail (prefixes up to 203 clicks, median 4) that spends almost all the
/// time on padding. Packed nodes and an edge list give the same sums in O(V·d + E·d). A session's nodes
/// are its distinct items in ascending order (the reference's np.unique order without the padding
/// node 0, which has no edge in the reference either, so real states are the same).
struct SessionGraph {
  torch::Tensor node_items;       ///< [V] int64 item id of every node, session 0's nodes first
  torch::Tensor node_offsets;     ///< [B+1] int64: session b owns nodes [node_offsets[b], node_offsets[b+1])
  torch::Tensor click_nodes;      ///< [P] int64 node of every real click, session by session, in click order
  torch::Tensor click_sessions;   ///< [P] int64 session (batch row) of every click
  torch::Tensor last_clicks;      ///< [B] int64 index into the clicks of each session's last click
  torch::Tensor edge_src;         ///< [E] int64 node u of every binary edge u->v
  torch::Tensor edge_dst;         ///< [E] int64 node v
  torch::Tensor in_weight;        ///< [E] 1 / indeg(v): the reference's A_in[v][u]
  torch::Tensor out_weight;       ///< [E] 1 / outdeg(u): the reference's A_out[u][v]

  std::int64_t batch_size() const { return last_clicks.size(0); }
  /// The same graph on `device`, copied without blocking (to_device): built on the CPU, used on the GPU.
  SessionGraph to(const torch::Device& device) const;
  /// out[v] = Σ_u A_in[v][u] · x[u] over each session's edges. x: [V, d] -> [V, d].
  torch::Tensor aggregate_in(const torch::Tensor& x) const;
  /// out[u] = Σ_v A_out[u][v] · x[v] over each session's edges. x: [V, d] -> [V, d].
  torch::Tensor aggregate_out(const torch::Tensor& x) const;
  /// Both directions at once: x [V, 2d] (columns [0, d) the in-side messages, [d, 2d) the out-side ones) ->
  /// [V, 2d] = [aggregate_in(x[:, :d]), aggregate_out(x[:, d:])], the gated graph's input (SR-GNN Eq. 1) without
  /// the concatenation. On a CPU in float32/64 one autograd node with its own loops over the edges (the
  /// composed gathers, products, scatters and cat were ~8 % of the samples under an SR-GNN step); elsewhere the
  /// two aggregations and a cat. Throws llm4sbr::Error when x is not [V, 2d] with V the graph's nodes.
  torch::Tensor aggregate_both(const torch::Tensor& x) const;
  /// The reference's dense A_in of session b over its own nodes, [n_b, n_b] (for tests and inspection).
  torch::Tensor dense_in(std::int64_t b) const;
  /// The reference's dense A_out of session b, [n_b, n_b].
  torch::Tensor dense_out(std::int64_t b) const;
};

/// Builds the session graphs of `items` ([B, L] int64 on the CPU, left-aligned, 0 = padding).
///
/// Edges are binary: u->v exists if some click on u is immediately followed by a click on v (repeated
/// transitions count once; u->u is a self loop). A row's clicks end at its first 0. Degrees are counted
/// over the binary edges; a node without in- (out-) edges gets an all-zero row, as the reference's
/// "zero degree treated as 1" gives. Edge weights have dtype `weight_dtype` (pass the model's parameter
/// dtype so double-precision models get double weights). Throws llm4sbr::Error for a tensor that is not
/// a 2-D CPU int64 tensor, for a negative id, for a row without clicks, or for a non-floating dtype.
///
/// Cost: O(B·L log L) in plain loops; no per-session tensor operations.
SessionGraph build_session_graph(const torch::Tensor& items, torch::Dtype weight_dtype = torch::kFloat32);

}  // namespace llm4sbr::models
