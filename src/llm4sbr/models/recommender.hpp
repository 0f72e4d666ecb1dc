// What the trainer and the evaluator drive: anything that turns a batch into item scores and an
// optional auxiliary loss. The plain backbone and the LLM4SBR head (enhance/) both implement it, so the
// baseline rows and the enhanced rows of a results table come from the same training code.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>

#include "llm4sbr/models/session_encoder.hpp"

namespace llm4sbr::models {

struct ForwardOutput {
  torch::Tensor scores;    ///< [B, N] scores of items 1..N; undefined from forward_unscored
  torch::Tensor aux_loss;  ///< scalar added to the cross-entropy (already weighted); undefined if none
  torch::Tensor gates;     ///< [B, V] the LLM4SBR head's gate α_v of each view (Eq. 10-11); undefined otherwise
  torch::Tensor session;   ///< [B, d] the vectors the scorer took (set by forward_unscored; forward may leave it)
};

class RecommenderImpl : public torch::nn::Module {
 public:
  virtual ForwardOutput forward(const SessionBatch& batch) = 0;
  /// The backbone's SessionEncoderImpl::prepare: what forward() would derive from `batch` on the CPU, made
  /// ahead of it (SessionBatch::inputs). Null (this default) when there is nothing to make.
  virtual std::shared_ptr<const BatchInputs> prepare(const SessionBatch& /*batch*/, const torch::Device& /*device*/) const {
    return nullptr;
  }
  /// forward() up to the vectors its scorer takes: `session` set, `scores` undefined, for a model whose
  /// linear_scorer() is defined (serving ranks the vectors against that table itself, in less time than
  /// scoring the catalogue). Error (this default) for other models.
  virtual ForwardOutput forward_unscored(const SessionBatch& batch);
  /// The backbone's scorer as a table (SessionEncoderImpl::linear_scorer); undefined (this default) if it is not one.
  virtual LinearScorer linear_scorer() const { return {}; }
  /// Row label in results tables: "SR-GNN", "LLM4SBR(SR-GNN)".
  virtual std::string label() const = 0;
};

using Recommender = std::shared_ptr<RecommenderImpl>;

/// A backbone on its own, exactly as its paper describes it.
class PlainRecommenderImpl : public RecommenderImpl {
 public:
  explicit PlainRecommenderImpl(SessionEncoder encoder);
  ForwardOutput forward(const SessionBatch& batch) override;
  ForwardOutput forward_unscored(const SessionBatch& batch) override;
  std::shared_ptr<const BatchInputs> prepare(const SessionBatch& batch, const torch::Device& device) const override {
    return encoder_->prepare(batch, device);
  }
  LinearScorer linear_scorer() const override { return encoder_->linear_scorer(); }
  std::string label() const override;
  const SessionEncoder& encoder() const { return encoder_; }

 private:
  ForwardOutput pass(const SessionBatch& batch, bool score);
  SessionEncoder encoder_;
};

/// Display name of a registered model ("srgnn" -> "SR-GNN").
std::string display_name(const std::string& model);

}  // namespace llm4sbr::models
