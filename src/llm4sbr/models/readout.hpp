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

}  // namespace llm4sbr::models
