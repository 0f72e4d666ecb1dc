// Ranking metrics of session-based recommendation: HR@K (the SBR papers' P@K), MRR@K and NDCG@K.
//
// Correct definitions (DESIGN.md, "Correctness rules"): each metric averages over ALL evaluated
// samples, a target ranked below K contributing 0; rank r is 1 + the number of items scored strictly
// higher than the target (ties resolved in the target's favour, which is what topk-then-search does
// in the reference code for distinct scores). NDCG@K for one relevant item is 1/log2(r+1).
//
// `paper_compatible` reproduces the LLM4SBR reference code (backbone-notes §7.4): MRR@K and NDCG@K for
// K < 20 leave out of the mean every sample ranked in (K, 20], which inflates them. HR@K and every @20
// metric are the same in both modes.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace llm4sbr::train {

class RankingMetrics {
 public:
  explicit RankingMetrics(std::vector<std::int64_t> ks = {5, 10, 20}, bool paper_compatible = false);

  /// Adds a batch. scores: [B, N] (column k = item id k+1); targets: [B] item ids 1..N.
  /// Throws std::invalid_argument on shape mismatch or a target outside 1..N.
  void add(const torch::Tensor& scores, const torch::Tensor& targets);
  /// Adds 1-based ranks directly (for tests and for rankings computed elsewhere).
  void add_ranks(const std::vector<std::int64_t>& ranks);

  /// {"HR@5": ..., "MRR@5": ..., "NDCG@5": ..., ...} in percent (x100, like the papers' tables).
  std::map<std::string, double> result() const;
  std::int64_t count() const { return static_cast<std::int64_t>(ranks_.size()); }
  const std::vector<std::int64_t>& ks() const { return ks_; }

 private:
  std::vector<std::int64_t> ks_;
  bool paper_compatible_;
  std::vector<std::int64_t> ranks_;
};

/// 1-based rank of each target among all items: 1 + #(scores > score of target). [B] int64.
torch::Tensor target_ranks(const torch::Tensor& scores, const torch::Tensor& targets);

/// Metric names in display order for the given cutoffs: HR@5, HR@10, HR@20, MRR@5, ..., NDCG@20.
std::vector<std::string> metric_names(const std::vector<std::int64_t>& ks);

}  // namespace llm4sbr::train
