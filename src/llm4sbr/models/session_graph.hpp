// The per-batch session graph of SR-GNN (and of the models built on it, TAGNN): each session becomes a
// small directed graph over its distinct items, with in- and out-normalised adjacency matrices
// (backbone-notes §3.1, the official code's utils.Data.get_slice).
#pragma once

#include <torch/torch.h>

namespace llm4sbr::models {

/// The graphs of a batch of sessions, padded to the batch's largest node count n.
///
/// Node order follows the reference code: a session's nodes are its distinct item ids in ascending
/// order, and **item 0 is a node whenever the session row contains padding** (it then sorts first, so
/// it is node 0). Our batches pad to the batch's longest prefix, so a session as long as the batch
/// maximum has no item-0 node, while a shorter one does. Item 0 never has an edge, so its node does not
/// reach the real nodes: the real positions' states do not depend on how much padding a row has.
struct SessionGraph {
  torch::Tensor nodes;  ///< [B, n] int64 item ids of the nodes; unused node slots hold 0
  torch::Tensor alias;  ///< [B, L] int64 node index of every position (padded positions -> the 0 node)
  torch::Tensor A_in;   ///< [B, n, n] A_in[v][u] = edge(u->v) / indeg(v)
  torch::Tensor A_out;  ///< [B, n, n] A_out[u][v] = edge(u->v) / outdeg(u)
};

/// Builds the session graphs of `items` ([B, L] int64 on the CPU, left-aligned, 0 = padding).
///
/// Edges are binary: u->v exists if some click on u is immediately followed by a click on v (repeated
/// transitions count once; u->u is a self loop). The walk of a row stops at its first 0. Degrees are
/// counted over the binary edges, and a zero degree is treated as 1 (the row stays all-zero).
/// The adjacency tensors have dtype `adjacency_dtype` (pass the model's parameter dtype, so that
/// double-precision models get double adjacency; any floating dtype works). Throws llm4sbr::Error for
/// a tensor that is not a 2-D CPU int64 tensor, for a negative id, or for a non-floating dtype.
///
/// Cost: O(B·L log L) in plain loops plus zero-filling the [B, n, n] adjacency; no per-session tensor
/// operations.
SessionGraph build_session_graph(const torch::Tensor& items,
                                 torch::Dtype adjacency_dtype = torch::kFloat32);

}  // namespace llm4sbr::models
