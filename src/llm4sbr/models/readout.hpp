// The readout and the scorer that most backbones share, written once: the hybrid fusion of the global and
// local representations, and the dot product of a session vector with the item embedding table.
#pragma once

#include <torch/torch.h>

#include <cstdint>

#include "llm4sbr/models/session_encoder.hpp"

namespace llm4sbr::models {

/// The hybrid readout W3 [global ; local] + b3 ([B, 2d] -> [B, d]; SR-GNN's Eq. 9, which GCE-GNN, S²-DHCN,
/// GRU4Rec and SASRec follow here), or `single` alone when the model runs nonhybrid (`fuse` is then
/// unused). `single` is the representation the model's own paper predicts from: global for the graph
/// models, local for GRU4Rec and SASRec.
torch::Tensor hybrid_readout(torch::nn::Linear& fuse, const SessionRepresentation& rep, bool nonhybrid,
                             const torch::Tensor& single);

/// Scores of items 1..N: session [B, d] times the embedding table [N+1, d] without its padding row 0
/// -> [B, N] (column k is model id k+1).
torch::Tensor embedding_scores(const torch::Tensor& session, const torch::Tensor& table, std::int64_t n_items);

/// embedding_scores (plus a bias [N], if defined) as a LinearScorer: the table's rows 1..N, no copy.
LinearScorer embedding_scorer(const torch::Tensor& table, std::int64_t n_items, torch::Tensor bias = {});

/// Rows of the item table [N+1, d] for item ids (int64, any shape) -> [..., d], as torch::nn::Embedding
/// (no padding row). On a CPU the table's gradient from this lookup is sparse, the rows looked up: the backbones
/// also score against the whole table (embedding_scores), and autograd adds these rows in place into that dense
/// gradient, where a dense lookup gradient cost a zeroed [N+1, d] table and a pass adding the two (SASRec on
/// Beauty: 3-5 % of a training step, bench/backbone_bench alternated). A gradient left sparse (a table nothing
/// scored against) is made dense by train::densify_gradients before it is reduced or stepped.
torch::Tensor item_lookup(const torch::Tensor& table, const torch::Tensor& ids);

}  // namespace llm4sbr::models
