#include "llm4sbr/train/metrics.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace llm4sbr::train {

namespace {
// The reference LLM4SBR code ranks within its top-20 list only.
constexpr std::int64_t kReferenceListLength = 20;
}  // namespace

RankingMetrics::RankingMetrics(std::vector<std::int64_t> ks, bool paper_compatible)
    : ks_(std::move(ks)), paper_compatible_(paper_compatible) {}

torch::Tensor target_ranks(const torch::Tensor& scores, const torch::Tensor& targets) {
  if (scores.dim() != 2 || targets.dim() != 1 || scores.size(0) != targets.size(0))
    throw std::invalid_argument(fmt::format("target_ranks: scores [B, N] and targets [B] expected, got {} and {}",
                                            fmt::join(scores.sizes(), "x"), fmt::join(targets.sizes(), "x")));
  auto idx = (targets - 1).to(torch::kInt64).to(scores.device());
  if (idx.numel() > 0 && (idx.min().item<std::int64_t>() < 0 || idx.max().item<std::int64_t>() >= scores.size(1)))
    throw std::invalid_argument("target_ranks: a target id is outside 1..N");
  // A NaN compares false with everything and would rank every target first (100 % on every metric).
  if (!torch::isfinite(scores).all().item<bool>())
    throw std::domain_error("target_ranks: the model produced NaN or infinite scores (NaN intents or weights?)");
  auto target_scores = scores.gather(1, idx.unsqueeze(1));
  return scores.gt(target_scores).sum(1).to(torch::kInt64).add(1).cpu();
}

void RankingMetrics::add(const torch::Tensor& scores, const torch::Tensor& targets) {
  torch::NoGradGuard no_grad;
  auto ranks = target_ranks(scores.detach(), targets);
  auto acc = ranks.accessor<std::int64_t, 1>();
  for (std::int64_t i = 0; i < acc.size(0); ++i) ranks_.push_back(acc[i]);
}

void RankingMetrics::add_ranks(const std::vector<std::int64_t>& ranks) {
  ranks_.insert(ranks_.end(), ranks.begin(), ranks.end());
}

std::map<std::string, double> RankingMetrics::result() const {
  std::map<std::string, double> out;
  for (auto k : ks_) {
    double hits = 0, rr = 0, dcg = 0;
    std::int64_t denom = 0;
    for (auto r : ranks_) {
      bool in_k = r <= k;
      // Reference bug (paper_compatible): samples ranked in (K, 20] add nothing, not even a 0.
      bool counted = !paper_compatible_ || in_k || r > kReferenceListLength || k >= kReferenceListLength;
      if (in_k) {
        hits += 1;
        rr += 1.0 / static_cast<double>(r);
        dcg += 1.0 / std::log2(static_cast<double>(r) + 1.0);
      }
      if (counted) ++denom;
    }
    const double n = static_cast<double>(ranks_.size());
    out[fmt::format("HR@{}", k)] = n > 0 ? 100.0 * hits / n : 0.0;
    out[fmt::format("MRR@{}", k)] = denom > 0 ? 100.0 * rr / static_cast<double>(denom) : 0.0;
    out[fmt::format("NDCG@{}", k)] = denom > 0 ? 100.0 * dcg / static_cast<double>(denom) : 0.0;
  }
  return out;
}

std::vector<std::string> metric_names(const std::vector<std::int64_t>& ks) {
  std::vector<std::string> names;
  for (const char* m : {"HR", "MRR", "NDCG"})
    for (auto k : ks) names.push_back(fmt::format("{}@{}", m, k));
  return names;
}

}  // namespace llm4sbr::train
