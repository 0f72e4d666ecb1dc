#include "llm4sbr/train/metrics.hpp"

#include <gtest/gtest.h>

#include <cmath>

using llm4sbr::train::RankingMetrics;
using llm4sbr::train::target_ranks;

namespace {

// Ranks 1, 3, 7 and 25 (a miss at every K). The rank-7 sample is the one the reference code's @5
// averaging drops from the denominator.
RankingMetrics hand_ranked(bool paper_compatible) {
  RankingMetrics m({5, 10, 20}, paper_compatible);
  m.add_ranks({1, 3, 7, 25});
  return m;
}

}  // namespace

TEST(Metrics, HandComputedStandard) {
  auto r = hand_ranked(false).result();
  EXPECT_NEAR(r["HR@5"], 100.0 * 2 / 4, 1e-9);
  EXPECT_NEAR(r["HR@10"], 100.0 * 3 / 4, 1e-9);
  EXPECT_NEAR(r["HR@20"], 100.0 * 3 / 4, 1e-9);
  EXPECT_NEAR(r["MRR@5"], 100.0 * (1 + 1.0 / 3) / 4, 1e-9);
  EXPECT_NEAR(r["MRR@10"], 100.0 * (1 + 1.0 / 3 + 1.0 / 7) / 4, 1e-9);
  EXPECT_NEAR(r["MRR@20"], 100.0 * (1 + 1.0 / 3 + 1.0 / 7) / 4, 1e-9);
  EXPECT_NEAR(r["NDCG@5"], 100.0 * (1 + 1 / std::log2(4.0)) / 4, 1e-9);
  EXPECT_NEAR(r["NDCG@10"], 100.0 * (1 + 1 / std::log2(4.0) + 1 / std::log2(8.0)) / 4, 1e-9);
}

TEST(Metrics, PaperCompatibleDropsSamplesRankedBetweenKAnd20) {
  auto r = hand_ranked(true).result();
  // @5: the rank-7 sample adds nothing, not even a 0, so the mean is over 3 samples.
  EXPECT_NEAR(r["MRR@5"], 100.0 * (1 + 1.0 / 3) / 3, 1e-9);
  EXPECT_NEAR(r["NDCG@5"], 100.0 * (1 + 0.5) / 3, 1e-9);
  // HR and every @20 metric are the same in both modes; @10 too here, since no rank is in (10, 20].
  auto s = hand_ranked(false).result();
  for (const char* k : {"HR@5", "HR@10", "HR@20", "MRR@10", "MRR@20", "NDCG@10", "NDCG@20"}) EXPECT_NEAR(r[k], s[k], 1e-9) << k;
  EXPECT_GT(r["MRR@5"], s["MRR@5"]);
}

TEST(Metrics, CorrectionFormulaOfTheReferenceBias) {
  // backbone-notes §7.4: true = reported * (1 - (HR@20 - HR@K)/100) when HR is in percent.
  auto biased = hand_ranked(true).result();
  auto correct = hand_ranked(false).result();
  EXPECT_NEAR(correct["MRR@5"], biased["MRR@5"] * (1 - (biased["HR@20"] - biased["HR@5"]) / 100.0), 1e-9);
}

TEST(Metrics, RanksFromScores) {
  auto scores = torch::tensor({0.1f, 0.5f, 0.3f, 0.9f, 0.2f, 0.3f}).reshape({2, 3});
  auto targets = torch::tensor({3L, 1L});
  auto ranks = target_ranks(scores, targets);
  EXPECT_EQ(ranks[0].item<int64_t>(), 2);  // 0.3 is beaten by 0.5 only
  EXPECT_EQ(ranks[1].item<int64_t>(), 1);  // 0.9 is the best
}

TEST(Metrics, TiesResolvedInTheTargetsFavour) {
  auto scores = torch::full({1, 4}, 1.0f);
  EXPECT_EQ(target_ranks(scores, torch::tensor({4L}))[0].item<int64_t>(), 1);
}

TEST(Metrics, RejectsTargetsOutsideTheCatalogue) {
  auto scores = torch::zeros({1, 3});
  EXPECT_THROW(target_ranks(scores, torch::tensor({0L})), std::invalid_argument);
  EXPECT_THROW(target_ranks(scores, torch::tensor({4L})), std::invalid_argument);
}

// The one-pass count on float32 CPU scores against the tensor formula 1 + #(scores > target's), with tied
// scores and a width that is not a multiple of the kernel's vectors; a NaN or an infinity anywhere is refused.
TEST(Metrics, RanksAreOnePlusTheHigherScoresAndRefuseNanOrInf) {
  torch::manual_seed(3);
  auto scores = torch::randn({37, 1001});
  scores.select(1, 500).copy_(scores.select(1, 7));  // ties with target 8 below
  auto targets = torch::randint(1, 1002, {37}, torch::kInt64);
  targets[0] = 8;
  const auto want = scores.gt(scores.gather(1, (targets - 1).unsqueeze(1))).sum(1).to(torch::kInt64) + 1;
  EXPECT_TRUE(torch::equal(target_ranks(scores, targets), want));
  for (const std::int64_t column : {0, 999, 1000})
    for (const float bad : {std::nanf(""), INFINITY, -INFINITY}) {
      auto with_bad = scores.clone();
      with_bad[5][column] = bad;
      EXPECT_THROW(target_ranks(with_bad, targets), std::domain_error) << column << " " << bad;
    }
}

TEST(Metrics, AddFromScoresMatchesAddRanks) {
  torch::manual_seed(1);
  auto scores = torch::randn({50, 30});
  auto targets = torch::randint(1, 31, {50}, torch::kInt64);
  RankingMetrics a, b;
  a.add(scores, targets);
  auto ranks = target_ranks(scores, targets);
  b.add_ranks(std::vector<int64_t>(ranks.data_ptr<int64_t>(), ranks.data_ptr<int64_t>() + 50));
  EXPECT_EQ(a.result(), b.result());
}
