// The most-popular baseline: every session gets the same ranking, by click count in the training
// sessions. A model that cannot beat it has learnt nothing about sessions.
#pragma once

#include "llm4sbr/data/dataset.hpp"
#include "llm4sbr/models/recommender.hpp"

namespace llm4sbr::models {

class PopularityRecommenderImpl : public RecommenderImpl {
 public:
  /// Counts every click of the training sessions (prefixes and targets of ds.train).
  explicit PopularityRecommenderImpl(const data::PreparedDataset& ds);
  ForwardOutput forward(const SessionBatch& batch) override;
  std::string label() const override { return "Most popular"; }

 private:
  torch::Tensor counts_;  ///< [N] float click counts of items 1..N
};

}  // namespace llm4sbr::models
