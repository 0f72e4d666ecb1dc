#include "llm4sbr/intent/localizer.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "llm4sbr/core/error.hpp"

namespace llm4sbr::intent {
namespace {

/// [n, d] rows drawn from N(0, 1) and L2-normalised, from a fixed seed.
torch::Tensor unit_rows(std::int64_t n, std::int64_t d, std::uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  auto x = torch::randn({n, d}, gen, torch::kFloat32);
  return x / x.norm(2, 1, true);
}

struct Reference {
  std::vector<std::vector<std::int64_t>> ids;
  std::vector<std::vector<double>> scores;
  torch::Tensor intents;
};

/// Eq. 4-5 with plain loops: cosine of every (query, item), sort by (score desc, id asc), weighted sum.
Reference brute_force(const torch::Tensor& q, const torch::Tensor& e, std::int64_t r, bool normalize) {
  const auto m = q.size(0), n = e.size(0), d = q.size(1);
  auto qa = q.accessor<float, 2>();
  auto ea = e.accessor<float, 2>();
  Reference ref;
  ref.intents = torch::zeros({m, d}, torch::kFloat64);
  auto out = ref.intents.accessor<double, 2>();
  for (std::int64_t i = 0; i < m; ++i) {
    std::vector<std::pair<double, std::int64_t>> all;
    double qn = 0;
    for (std::int64_t t = 0; t < d; ++t) qn += double(qa[i][t]) * qa[i][t];
    for (std::int64_t j = 0; j < n; ++j) {
      double dot = 0, en = 0;
      for (std::int64_t t = 0; t < d; ++t) {
        dot += double(qa[i][t]) * ea[j][t];
        en += double(ea[j][t]) * ea[j][t];
      }
      if (en == 0) continue;  // items without an embedding are never hits
      all.emplace_back(dot / std::sqrt(qn * en), j + 1);
    }
    std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) {
      return a.first > b.first || (a.first == b.first && a.second < b.second);
    });
    all.resize(static_cast<std::size_t>(std::min<std::int64_t>(r, static_cast<std::int64_t>(all.size()))));
    double total = 0;
    for (const auto& [s, id] : all) total += s;
    std::vector<std::int64_t> ids;
    std::vector<double> scores;
    for (const auto& [s, id] : all) {
      ids.push_back(id);
      scores.push_back(s);
      const double w = normalize ? (total > 0 ? s / total : 0.0) : s;
      for (std::int64_t t = 0; t < d; ++t) out[i][t] += w * ea[id - 1][t];
    }
    ref.ids.push_back(ids);
    ref.scores.push_back(scores);
  }
  return ref;
}

void expect_matches(const Localization& loc, const Reference& ref, const char* what) {
  const auto m = static_cast<std::int64_t>(ref.ids.size());
  ASSERT_EQ(loc.ids.size(0), m);
  for (std::int64_t i = 0; i < m; ++i) {
    const auto& want = ref.ids[static_cast<std::size_t>(i)];
    ASSERT_EQ(loc.ids.size(1), static_cast<std::int64_t>(want.size()));
    for (std::size_t j = 0; j < want.size(); ++j) {
      ASSERT_EQ(loc.ids[i][static_cast<std::int64_t>(j)].item<std::int64_t>(), want[j]) << what << " query " << i << " rank " << j;
      ASSERT_NEAR(loc.scores[i][static_cast<std::int64_t>(j)].item<float>(), ref.scores[static_cast<std::size_t>(i)][j], 1e-6)
          << what << " query " << i << " rank " << j;
    }
  }
  EXPECT_LT((loc.intents.to(torch::kFloat64) - ref.intents).abs().max().item<double>(), 1e-5) << what;
}

TEST(Localizer, EqualsBruteForceReference) {
  const auto e = unit_rows(700, 24, 1);
  const auto q = unit_rows(150, 24, 2);
  const auto faiss = make_faiss_localizer(e);
  const auto blocked = make_blocked_localizer(e, 64);
  for (const bool normalize : {false, true})
    for (const std::int64_t r : {1, 3, 5, 20}) {
      const auto ref = brute_force(q, e, r, normalize);
      expect_matches(localize(*faiss, q, r, normalize), ref, "faiss");
      expect_matches(localize(*blocked, q, r, normalize), ref, "blocked");
    }
  // The convenience overload builds the same exact index.
  expect_matches(localize(q, e, 5, false), brute_force(q, e, 5, false), "overload");
}

TEST(Localizer, WeightsEachItemByItsOwnSimilarity) {
  // Three items; the query is closest to item 3, then 1. The reference code would pair item 3 with the
  // similarity of item 1 (catalogue order) and divide by r; Eq. 5 pairs each with its own.
  const auto e = torch::tensor({1.0f, 0.0f, 0.0f, 1.0f, 0.6f, 0.8f}).view({3, 2});
  const auto q = torch::tensor({0.8f, 0.6f}).view({1, 2});
  const auto loc = localize(q, e, 2);
  EXPECT_EQ(loc.ids[0][0].item<std::int64_t>(), 3);
  EXPECT_EQ(loc.ids[0][1].item<std::int64_t>(), 1);
  EXPECT_NEAR(loc.scores[0][0].item<float>(), 0.96f, 1e-6);
  EXPECT_NEAR(loc.scores[0][1].item<float>(), 0.8f, 1e-6);
  const auto want = torch::tensor({0.96f * 0.6f + 0.8f * 1.0f, 0.96f * 0.8f + 0.8f * 0.0f});
  EXPECT_TRUE(torch::allclose(loc.intents[0], want, 1e-6, 1e-6)) << loc.intents;
  const auto norm = localize(q, e, 2, /*normalize_weights=*/true);
  EXPECT_TRUE(torch::allclose(norm.intents[0], want / 1.76f, 1e-6, 1e-6)) << norm.intents;
}

TEST(Localizer, FaissAndBlockedAreIdentical) {
  // Random rows, exact duplicates (ties) and zero rows (items without a title).
  auto e = unit_rows(3000, 32, 3);
  for (std::int64_t j = 100; j < 140; ++j) e[j].copy_(e[7]);
  for (std::int64_t j = 500; j < 510; ++j) e[j].zero_();
  auto q = unit_rows(600, 32, 4);
  q[0].copy_(e[7]);  // hits the 41 duplicates: a tie far wider than the candidate list
  q[1].zero_();
  const auto faiss = make_faiss_localizer(e);
  const auto blocked = make_blocked_localizer(e, 100);
  EXPECT_EQ(faiss->size(), 2990);
  // FAISS: sequential path below 20 queries, BLAS above; blocked: a bfloat16 screen up to 128, GEMM above.
  for (const std::int64_t m : {1, 2, 3, 5, 16, 128, 129, 600})
    for (const std::int64_t k : {1, 5, 10, 64}) {
      const auto a = faiss->search(q.slice(0, 0, m), k);
      const auto b = blocked->search(q.slice(0, 0, m), k);
      EXPECT_TRUE(torch::equal(a.ids, b.ids)) << "m " << m << " k " << k;
      EXPECT_TRUE(torch::equal(a.scores, b.scores)) << "m " << m << " k " << k;
    }
  // The tie goes to the lower ids: item 8 (row 7), then 101, 102, ...
  const auto top = faiss->search(q.slice(0, 0, 1), 10);
  std::vector<std::int64_t> want{8, 101, 102, 103, 104, 105, 106, 107, 108, 109};
  for (std::int64_t j = 0; j < 10; ++j) EXPECT_EQ(top.ids[0][j].item<std::int64_t>(), want[static_cast<std::size_t>(j)]);
  EXPECT_EQ(top.scores[0][0].item<float>(), top.scores[0][9].item<float>());
  // Zero rows are never hits, not even for a zero query (all scores 0): it gets the lowest real ids.
  const auto zq = blocked->search(q.slice(0, 1, 2), 600);
  const auto ids = zq.ids[0];
  EXPECT_EQ((ids >= 501).logical_and(ids <= 510).sum().item<std::int64_t>(), 0);
  EXPECT_EQ(ids[0].item<std::int64_t>(), 1);
  EXPECT_EQ(zq.scores.abs().max().item<float>(), 0.0f);
}

// Items closer to each other than the bfloat16 screen can tell apart: the screen's candidates cannot be
// proven complete, so every item within its error bound is rescored, and the result is still exact.
TEST(Localizer, ItemsCloserThanTheScreenCanTellRankExactly) {
  auto e = unit_rows(2000, 64, 5);
  const auto base = e[11].clone();
  auto gen = at::detail::createCPUGenerator(6);
  for (std::int64_t j = 200; j < 400; ++j) {
    auto row = base + 1e-3 * torch::randn({64}, gen, torch::kFloat32);
    e[j].copy_(row / row.norm());
  }
  const auto q = torch::stack({base, e[300], unit_rows(1, 64, 7)[0]});
  // The exact ranking: inner products in float64, best first, ties to the lower id.
  const auto exact = q.to(torch::kFloat64).matmul(e.to(torch::kFloat64).t());
  const auto faiss = make_faiss_localizer(e);
  const auto blocked = make_blocked_localizer(e);
  for (const std::int64_t r : {1, 5, 20}) {
    const auto a = faiss->search(q, r);
    const auto b = blocked->search(q, r);
    EXPECT_TRUE(torch::equal(a.ids, b.ids)) << "r " << r;
    EXPECT_TRUE(torch::equal(a.scores, b.scores)) << "r " << r;
    const auto want = std::get<1>(exact.topk(r, 1)) + 1;
    EXPECT_TRUE(torch::equal(b.ids, want)) << "r " << r << "\n" << b.ids << "\n" << want;
  }
}

// An item that the bfloat16 screen ranks below 100 others (0.5019 rounds to 0.5; the others, 0.5 + j·2⁻¹⁶,
// are exact in bfloat16) while its exact score is the best: only the screen's own error bound, not float32's,
// sends the search to rescore beyond the candidates.
TEST(Localizer, AnItemTheScreenRanksLowIsStillFound) {
  auto e = torch::zeros({101, 2}, torch::kFloat32);
  e[0][0] = 0.5019f;
  for (std::int64_t j = 1; j <= 100; ++j) {
    e[j][0] = 0.5f;
    e[j][1] = std::ldexp(static_cast<float>(j), -16);
  }
  const auto q = torch::ones({1, 2}, torch::kFloat32);
  const auto blocked = make_blocked_localizer(e);
  const auto top = blocked->search(q, 3);
  EXPECT_EQ(top.ids[0][0].item<std::int64_t>(), 1);
  EXPECT_EQ(top.ids[0][1].item<std::int64_t>(), 101);
  EXPECT_EQ(top.ids[0][2].item<std::int64_t>(), 100);
  EXPECT_TRUE(torch::equal(top.scores, make_faiss_localizer(e)->search(q, 3).scores));
}

TEST(Localizer, ZeroQueryGivesZeroIntent) {
  const auto e = unit_rows(50, 8, 5);
  auto q = torch::zeros({2, 8});
  q[1].copy_(e[3]);
  const auto loc = localize(q, e, 5);
  EXPECT_EQ(loc.intents[0].abs().max().item<float>(), 0.0f);
  EXPECT_EQ(loc.ids[1][0].item<std::int64_t>(), 4);
  const auto norm = localize(q, e, 5, true);  // Σ sim = 0: no division by zero
  EXPECT_TRUE(torch::isfinite(norm.intents).all().item<bool>());
  EXPECT_EQ(norm.intents[0].abs().max().item<float>(), 0.0f);
}

TEST(Localizer, RZeroReturnsTheRawEmbedding) {
  const auto e = unit_rows(40, 8, 6);
  const auto q = unit_rows(7, 8, 7);
  const auto loc = localize(q, e, 0);
  EXPECT_TRUE(torch::equal(loc.intents, q));
  EXPECT_EQ(loc.ids.sizes(), (std::vector<std::int64_t>{7, 0}));
  EXPECT_EQ(loc.scores.sizes(), (std::vector<std::int64_t>{7, 0}));
  EXPECT_THROW(localize(q, e, -1), ConfigError);
  // Without an index, the inputs are still checked: a NaN query, a query of another width, a NaN item.
  auto bad = q.clone();
  bad[3][2] = std::nanf("");
  EXPECT_THROW(localize(bad, e, 0), InputError);
  EXPECT_THROW(localize(unit_rows(7, 9, 8), e, 0), Error);
  auto bad_catalogue = e.clone();
  bad_catalogue[5][0] = INFINITY;
  EXPECT_THROW(localize(q, bad_catalogue, 0), InputError);
}

TEST(Localizer, RLargerThanTheCatalogueIsClamped) {
  auto e = unit_rows(10, 8, 8);
  e[9].zero_();  // 9 searchable items
  const auto q = unit_rows(3, 8, 9);
  const auto loc = localize(q, e, 50);
  ASSERT_EQ(loc.ids.sizes(), (std::vector<std::int64_t>{3, 9}));
  auto sorted = std::get<0>(loc.ids[0].sort());
  EXPECT_TRUE(torch::equal(sorted, torch::arange(1, 10, torch::kInt64)));
  expect_matches(loc, brute_force(q, e, 50, false), "clamped");
}

TEST(Localizer, NanOrInfQueryIsAnInputErrorNamingTheRow) {
  const auto e = unit_rows(20, 4, 10);
  auto q = unit_rows(6, 4, 11);
  q[3][2] = std::numeric_limits<float>::quiet_NaN();
  for (const std::int64_t r : {0, 5}) {
    try {
      localize(q, e, r);
      FAIL() << "no InputError for r = " << r;
    } catch (const InputError& err) {
      EXPECT_NE(std::string(err.what()).find("row 3"), std::string::npos) << err.what();
    }
  }
  q[3][2] = 0.0f;
  q[5][0] = std::numeric_limits<float>::infinity();
  EXPECT_THROW(make_blocked_localizer(e)->search(q, 2), InputError);
  auto bad_catalogue = e.clone();
  bad_catalogue[11][1] = std::numeric_limits<float>::quiet_NaN();
  try {
    make_faiss_localizer(bad_catalogue);
    FAIL() << "no InputError";
  } catch (const InputError& err) {
    EXPECT_NE(std::string(err.what()).find("item id 12"), std::string::npos) << err.what();
  }
  EXPECT_THROW(localize(unit_rows(2, 5, 1), e, 3), Error);  // wrong width
  EXPECT_THROW(make_localizer("annoy", e), ConfigError);
}

}  // namespace
}  // namespace llm4sbr::intent
