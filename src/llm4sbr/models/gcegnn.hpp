// GCE-GNN (Wang et al., SIGIR'20) as the official code computes it (backbone-notes §5): a session-level
// graph attention over four relation types, a global item graph built once from the training sessions,
// and a reversed-position-aware readout.
//
// The reversed-sequence convention. The reference reverses every sequence before anything else, so that
// position 0 is the last click (its position embeddings count backwards from the end, GCE-GNN issue #5),
// and it builds the session graph by walking that reversed sequence. Here batches stay left-aligned in
// click order (the SessionBatch convention), and the reversal is applied exactly where it shows:
//   * the position of click t of a session of n clicks is n − 1 − t (0 = last click), and indexes Pos;
//   * the relation codes are those of the reversed walk: in row i, code 2 towards j means j was clicked
//     immediately BEFORE i in time, code 3 immediately AFTER, 4 both, 1 the self relation (e.g. for the
//     session 5, 3, 5, 7 row "7" has code 2 towards "5");
//   * rep.clicks and rep.click_sessions are in click order (oldest first), like every other backbone.
// Everything else (sums, means, the node set) does not depend on the order.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/data/dataset.hpp"
#include "llm4sbr/models/session_encoder.hpp"

namespace llm4sbr::models {

// ---------------------------------------------------------------------------------------------------
// The global item graph (build_graph.py + utils.handle_adj).

/// Each item's strongest neighbours in the training sessions.
struct GlobalItemGraph {
  /// neighbours[i] for i = 0..N: (item, count) pairs, count descending, ties in order of first occurrence
  /// (build_graph.py's stable sort over a dict filled in that order); at most top_k of them. Row 0 is empty.
  std::vector<std::vector<std::pair<std::int64_t, std::int64_t>>> neighbours;
};

/// Counts, for every session and every k = 1..epsilon and j, the pairs (s_j, s_{j+k}) and (s_{j+k}, s_j),
/// so an unordered pair's count is the number of its occurrences in both directions; a repeated item
/// within epsilon steps gives a self pair (a, a), counted twice per occurrence, and is kept. Keeps each
/// item's top_k neighbours by count. Items are 1..n_items; throws Error for an id outside that range.
GlobalItemGraph build_global_graph(const std::vector<std::vector<std::int64_t>>& sessions, std::int64_t n_items,
                                   std::int64_t epsilon = 3, std::int64_t top_k = 12);

/// The click sequences of the sessions that the TRAINING samples come from (ds.sessions[s.session] for
/// s in ds.train, each session once, in order of first use); never a valid or test session.
std::vector<std::vector<std::int64_t>> training_sessions(const data::PreparedDataset& ds);

/// The fixed neighbour table the model reads, [N + 1, n_sample] each.
struct NeighbourTable {
  torch::Tensor items;    ///< int64 neighbour ids; rows without neighbours (item 0 among them) hold 0
  torch::Tensor weights;  ///< float64 raw pair counts (0 where items is 0 for lack of neighbours)
};

/// handle_adj, drawn once from `seed`: an item with at least n_sample neighbours gets n_sample of them
/// without replacement (a permutation of its top n_sample), one with fewer gets n_sample draws with
/// replacement (duplicates), one without any gets n_sample times (0, 0), like item 0.
NeighbourTable sample_neighbour_table(const GlobalItemGraph& graph, std::int64_t n_sample, std::uint64_t seed);

// ---------------------------------------------------------------------------------------------------
// The per-batch session graph with relation codes (utils.Data.__getitem__), packed like SessionGraph.

struct RelationGraph {
  torch::Tensor node_items;       ///< [V] int64 item of every node: each session's distinct items, ascending
  torch::Tensor node_offsets;     ///< [B+1] int64: session b owns nodes [node_offsets[b], node_offsets[b+1])
  torch::Tensor node_sessions;    ///< [V] int64 session of every node
  torch::Tensor click_nodes;      ///< [P] int64 node of every kept click, session by session, in click order
  torch::Tensor click_sessions;   ///< [P] int64 session of every click
  torch::Tensor click_positions;  ///< [P] int64 reversed position: n − 1 − t, 0 = the session's last click
  torch::Tensor last_clicks;      ///< [B] int64 index into the clicks of each session's last click
  torch::Tensor edge_src;         ///< [E] int64 node i (the attending node, the row)
  torch::Tensor edge_dst;         ///< [E] int64 node j (the attended neighbour, the column)
  torch::Tensor edge_code;        ///< [E] int64 relation code 1..4 of (i, j); code-0 pairs are not edges

  std::int64_t batch_size() const { return last_clicks.size(0); }
  /// The same graph on `device`, copied without blocking (to_device): built on the CPU, used on the GPU.
  RelationGraph to(const torch::Device& device) const;
  /// The reference's relation matrix of session b over its own nodes, [n_b, n_b] int64 (tests, inspection).
  torch::Tensor dense_codes(std::int64_t b) const;
};

/// Builds the relation graphs of `items` ([B, L] int64 on the CPU, left-aligned, 0 = padding; a row's
/// clicks end at its first 0). Only the last `max_positions` clicks of a longer row are kept (the
/// reference's `upois[-max_len:]`; its position table has 200 rows). Walking each reversed sequence
/// u_0 u_1 ...: (u_i, u_i) gets code 1; for u_i ≠ u_{i+1} not yet coded 4, (u_{i+1}, u_{i+1}) gets 1, and if
/// (u_{i+1}, u_i) has code 2 both directions become 4, otherwise (u_i, u_{i+1}) = 2 and (u_{i+1}, u_i) = 3.
/// Throws llm4sbr::Error for a tensor that is not 2-D CPU int64, a negative id, or a row without clicks.
RelationGraph build_relation_graph(const torch::Tensor& items, std::int64_t max_positions = 200);

// ---------------------------------------------------------------------------------------------------

/// Hyper-parameters of GCE-GNN (configs/models/gcegnn.yaml; main.py's defaults).
struct GceGnnOptions {
  std::int64_t hidden_size = 100;    ///< d
  std::int64_t n_items = 0;          ///< N; the embedding table has N + 1 rows
  std::int64_t n_iter = 1;           ///< hops of the global aggregator (Diginetica 2, Tmall/Nowplaying 1)
  std::int64_t n_sample = 12;        ///< neighbours kept and sampled per item (n_sample = n_sample_all)
  std::int64_t epsilon = 3;          ///< global-graph neighbourhood: pairs at most epsilon clicks apart
  double dropout_local = 0.0;        ///< on the session-level item states h^l
  double dropout_global = 0.5;       ///< on the global-level item states h^g
  double dropout_gcn = 0.0;          ///< inside each global aggregator, on [h_x ; h_N]
  double alpha = 0.2;                ///< LeakyReLU slope of the session-level attention
  std::string activation = "relu";   ///< of the global aggregator: relu or tanh
  std::int64_t max_positions = 200;  ///< rows of the reversed position table; longer sessions keep their last clicks
  /// false (default): the session vector is W3 [global ; local] + b3, LLM4SBR's fusion (paper Eq. 12)
  /// over this model's two anchors, so gating either anchor changes the scores; true: the model's own
  /// readout s = S, the paper's exact model (it ignores local)
  bool nonhybrid = false;

  /// Reads the keys above (hidden_size defaults to ctx.hidden_size; n_items comes from ctx). Throws
  /// ConfigError naming the key for a bad value.
  static GceGnnOptions from_config(const ModelContext& ctx, const Config& settings);
};

/// One global aggregation (aggregator.GlobalAggregator after commit 089d021): for a node x with sampled
/// neighbours n_k of raw pair counts w_k and the session vector s,
///   π_k = softmax_k( w2ᵀ LeakyReLU_0.2( W1ᵀ [s ⊙ h_{n_k} ; w_k] ) ),  h_N = Σ_k π_k h_{n_k},
///   out = act( dropout([h_x ; h_N]) W3 ).   (The reference's unused bias is not registered.)
class GlobalAggregatorImpl : public torch::nn::Module {
 public:
  GlobalAggregatorImpl(std::int64_t hidden_size, double dropout, std::string activation);
  /// self_vectors [n, d], neighbour_vectors [n, K, d], neighbour_weights [n, K], session [n, d] -> [n, d].
  torch::Tensor forward(const torch::Tensor& self_vectors, const torch::Tensor& neighbour_vectors,
                        const torch::Tensor& neighbour_weights, const torch::Tensor& session);

  torch::Tensor w_1, w_2, w_3;  ///< [d + 1, d], [d, 1], [2d, d]

 private:
  double dropout_;
  std::string activation_;
};
TORCH_MODULE(GlobalAggregator);

/// GCE-GNN as a SessionEncoder.
///
/// encode, with h = E[node items]:
///   session level: e_ij = LeakyReLU_α(a_rᵀ (h_i ⊙ h_j)) with r the relation code of (i, j), α_ij = softmax_j
///     over the coded pairs of row i, h^l_i = Σ_j α_ij h_j (no weight matrix);
///   global level: s = mean of E[clicks] (duplicates counted); n_iter rounds of GlobalAggregator over the
///     hop tree of the fixed neighbour table (round k updates levels 0..n_iter−k−1 from the level below);
///     h^g = level 0;
///   x = dropout_local(h^l) + dropout_global(h^g), gathered per click (rep.clicks, in click order);
///   local = x_0, the last click's state; global = S = Σ_t β_t x_t with
///     z_t = tanh([Pos[n−1−t] ; x_t] W1), s' = mean_t x_t, β_t = w2ᵀ σ(G1 z_t + b + G2 s')  (no softmax).
/// readout: s = W3 [global ; local] + b3 (the second of the two choices backbone-notes §8 leaves open; the
///   LLM4SBR head gates S and x_0 before it); nonhybrid: s = global = S, GCE-GNN's own readout.
/// score: s · E[1:]ᵀ -> [B, N] (layer-0 embeddings, no dropout or normalisation, as the reference).
/// The global graph is built once, at construction, from the training sessions only (make_gcegnn needs
/// ModelContext::dataset) and sampled once with ModelContext::seed.
class GceGnnImpl : public SessionEncoderImpl {
 public:
  GceGnnImpl(GceGnnOptions options, NeighbourTable table, std::uint64_t seed = 0);

  SessionRepresentation encode(const SessionBatch& batch) override;
  /// The batch's RelationGraph (build_relation_graph) on `device`.
  std::shared_ptr<const BatchInputs> prepare(const SessionBatch& batch, const torch::Device& device) const override;
  torch::Tensor readout(const SessionRepresentation& rep) override;
  torch::Tensor score(const torch::Tensor& session, const SessionRepresentation& rep) override;
  LinearScorer linear_scorer() const override;

  std::int64_t hidden_size() const override { return options_.hidden_size; }
  std::int64_t n_items() const override { return options_.n_items; }
  std::string name() const override { return "gcegnn"; }
  const GceGnnOptions& options() const { return options_; }
  const NeighbourTable& neighbour_table() const { return table_; }

  torch::nn::Embedding embedding{nullptr};      ///< E, [N + 1, d]
  torch::nn::Embedding pos_embedding{nullptr};  ///< Pos, [max_positions, d], row 0 = the last click
  torch::Tensor local_attention;                ///< [4, d]: a_0..a_3 for relation codes 1..4
  torch::nn::ModuleList global_aggregators{nullptr};  ///< n_iter GlobalAggregator
  torch::Tensor w_1, w_2;                       ///< readout [2d, d] and [d, 1]
  torch::nn::Linear glu1{nullptr}, glu2{nullptr};  ///< G1 (with bias), G2 (no bias)
  torch::nn::Linear linear_transform{nullptr};     ///< W3, b3 [d, 2d] (hybrid readout only)

 private:
  /// h^l for every node, [V, d].
  torch::Tensor session_level(const RelationGraph& graph, const torch::Tensor& h);
  /// The hop tree of the global graph: level 0 = the nodes' items [V], level h + 1 = the K sampled neighbours
  /// of each entry of level h (items [n_h · K], their weights [n_h, K]), and each entry's batch row.
  struct HopTree {
    std::vector<torch::Tensor> items, weights, sessions;
  };
  HopTree hop_tree(const RelationGraph& graph, const torch::Tensor& node_items);
  /// h^g for every node, [V, d]: vectors[h] = E[tree.items[h]] ([n_h, d]); session_vectors [B, d].
  torch::Tensor global_level(const HopTree& tree, std::vector<torch::Tensor> vectors,
                             const torch::Tensor& session_vectors);

  GceGnnOptions options_;
  NeighbourTable table_;  ///< on the CPU as built; copied to the model's device on first use there
  torch::Tensor device_items_, device_weights_;
};
TORCH_MODULE(GceGnn);

}  // namespace llm4sbr::models
