#include "llm4sbr/train/metrics.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace llm4sbr::train {

namespace {
// The reference LLM4SBR code ranks within its top-20 list only.
constexpr std::int64_t kReferenceListLength = 20;

// A NaN compares false with everything and would rank every target first (100 % on every metric).
[[noreturn]] void throw_not_finite() {
  throw std::domain_error("target_ranks: the model produced NaN or infinite scores (NaN intents or weights?)");
}

/// How many of a row's n scores beat `target` (into *above), and whether all n are finite: one read of the
/// row, where isfinite + all and gt + sum made four passes over [B, N] and two [B, N] temporaries (an
/// evaluation batch of 500 x 12,101 is 24 MB). Cloned per ISA level; GCC vectorizes both reductions.
[[gnu::target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")]]
bool count_above(const float* __restrict row, std::int64_t n, float target, std::int64_t* above) {
  std::int32_t count = 0;  // N < 2^31
  std::int32_t bad = 0;
  for (std::int64_t j = 0; j < n; ++j) {
    count += row[j] > target ? 1 : 0;
    bad |= row[j] - row[j] == 0.0f ? 0 : 1;  // NaN - NaN and Inf - Inf are NaN
  }
  *above = count;
  return bad == 0;
}

/// target_ranks for float32 scores on the CPU: idx [B] int64 0-based targets, checked.
torch::Tensor cpu_target_ranks(const torch::Tensor& scores, const torch::Tensor& idx) {
  const auto s = scores.contiguous();
  const auto targets = idx.contiguous();
  const auto b = s.size(0), n = s.size(1);
  auto ranks = torch::empty({b}, torch::kInt64);
  const float* sp = s.data_ptr<float>();
  const std::int64_t* tp = targets.data_ptr<std::int64_t>();
  std::int64_t* rp = ranks.data_ptr<std::int64_t>();
  bool finite = true;
  for (std::int64_t i = 0; i < b; ++i) {
    finite &= count_above(sp + i * n, n, sp[i * n + tp[i]], rp + i);
    ++rp[i];
  }
  if (!finite) throw_not_finite();
  return ranks;
}
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
  if (scores.is_cpu() && scores.scalar_type() == torch::kFloat32) return cpu_target_ranks(scores, idx);
  if (!torch::isfinite(scores).all().item<bool>()) throw_not_finite();
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
