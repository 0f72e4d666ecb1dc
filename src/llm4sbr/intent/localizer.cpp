#include "llm4sbr/intent/localizer.hpp"

#include <faiss/IndexFlat.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "llm4sbr/core/error.hpp"
#include "llm4sbr/core/linalg.hpp"

namespace llm4sbr::intent {

namespace {

constexpr std::int64_t kQueryBlock = 4096;    ///< queries per backend call in search()
constexpr std::int64_t kLocalizeBlock = 16384;  ///< queries per weighted-sum block in localize()

/// A float32, CPU, contiguous [rows, d] copy-if-needed of `t`; Error for a wrong rank or width.
torch::Tensor as_matrix(const torch::Tensor& t, std::int64_t d, const char* what) {
  if (t.dim() != 2 || (d >= 0 && t.size(1) != d))
    throw Error(fmt::format("{}: expected a [m, {}] matrix, got shape {}", what, d >= 0 ? std::to_string(d) : "d",
                            fmt::join(t.sizes(), "x")));
  return t.to(torch::kCPU, torch::kFloat32).contiguous();
}

/// InputError naming the first row of `t` (a float32 CPU contiguous matrix from as_matrix) with NaN or Inf.
void check_finite(const torch::Tensor& t, const char* what, std::int64_t id_offset) {
  const auto row = first_non_finite_row(t);
  if (row < 0) return;
  throw InputError(what, 0, id_offset > 0 ? fmt::format("row {} (item id {})", row, row + id_offset)
                                          : fmt::format("row {}", row),
                   "contains NaN or Inf");
}

/// The catalogue [n, d] as as_matrix gives it; InputError naming the item of a row with NaN or Inf.
torch::Tensor checked_catalogue(const torch::Tensor& t) {
  auto e = as_matrix(t, -1, "catalogue embeddings");
  check_finite(e, "catalogue embeddings", 1);
  return e;
}

/// Queries [m, d] as as_matrix gives them; InputError naming a row with NaN or Inf.
torch::Tensor checked_queries(const torch::Tensor& t, std::int64_t d) {
  auto q = as_matrix(t, d, "localization queries");
  check_finite(q, "localization queries", 0);
  return q;
}

/// q · e in float64 from float32 rows: one fixed summation order, so equal rows give equal scores.
double exact_dot(const float* q, const float* e, std::int64_t d) {
  double s = 0;
  for (std::int64_t t = 0; t < d; ++t) s += static_cast<double>(q[t]) * static_cast<double>(e[t]);
  return s;
}

/// γ_d of float32 sums: |fl(q·e) - q·e| <= γ_d ||q|| ||e|| in any summation order.
double gamma(std::int64_t d) {
  const double unit = std::ldexp(1.0, -24);
  return static_cast<double>(d) * unit / (1.0 - static_cast<double>(d) * unit);
}

struct Ranked {
  double score;
  std::int64_t row;
};

/// Paper §5.4's r = 0: the queries [m, d] themselves as intents, no items.
Localization raw_embeddings(const torch::Tensor& q) {
  const auto m = q.size(0);
  return {q.clone(), torch::zeros({m, 0}, torch::kInt64), torch::zeros({m, 0}, torch::kFloat32)};
}

/// Best first; ties to the lower row (= lower item id, as searchable rows keep catalogue order).
bool better(const Ranked& a, const Ranked& b) { return a.score > b.score || (a.score == b.score && a.row < b.row); }

}  // namespace

// --- IntentLocalizer ----------------------------------------------------------------------------------------

IntentLocalizer::IntentLocalizer(torch::Tensor catalogue) {
  torch::NoGradGuard no_grad;
  catalogue_ = checked_catalogue(catalogue);
  const auto nonzero = (catalogue_ != 0).any(1);
  const auto rows = nonzero.nonzero().squeeze(1).contiguous();
  searchable_ = catalogue_.index_select(0, rows).contiguous();
  ids_.resize(static_cast<std::size_t>(rows.numel()));
  const auto* rp = rows.data_ptr<std::int64_t>();
  for (std::size_t i = 0; i < ids_.size(); ++i) ids_[i] = rp[i] + 1;
  if (catalogue_.size(0) > 0) max_norm_ = catalogue_.norm(2, 1).max().item<double>();
}

IntentLocalizer::~IntentLocalizer() = default;

double IntentLocalizer::float32_error() const { return 2.0 * gamma(dim()) * max_norm_; }

SearchResult IntentLocalizer::search(const torch::Tensor& queries, std::int64_t k) const {
  torch::NoGradGuard no_grad;
  const auto q = checked_queries(queries, dim());
  const auto m = q.size(0);
  const auto d = dim();
  k = std::clamp<std::int64_t>(k, 0, size());
  SearchResult out{torch::zeros({m, k}, torch::kFloat32), torch::zeros({m, k}, torch::kInt64)};
  if (k == 0 || m == 0) return out;

  // Candidates: twice k plus a margin, so that the completeness check below rarely fails.
  const auto kc = std::min(size(), 2 * k + 8);
  const float* qp = q.data_ptr<float>();
  const float* ep = searchable_.data_ptr<float>();
  float* out_s = out.scores.data_ptr<float>();
  std::int64_t* out_i = out.ids.data_ptr<std::int64_t>();
  std::vector<float> cand_s(static_cast<std::size_t>(std::min(m, kQueryBlock) * kc));
  std::vector<std::int64_t> cand_r(cand_s.size());

  for (std::int64_t b0 = 0; b0 < m; b0 += kQueryBlock) {
    const auto bm = std::min(kQueryBlock, m - b0);
    const double error = candidates(qp + b0 * d, bm, kc, cand_s.data(), cand_r.data());
    at::parallel_for(0, bm, 64, [&](std::int64_t begin, std::int64_t end) {
      std::vector<Ranked> ranked;
      for (auto i = begin; i < end; ++i) {
        const float* qi = qp + (b0 + i) * d;
        const double qnorm = std::sqrt(exact_dot(qi, qi, d));
        float* si = out_s + (b0 + i) * k;
        std::int64_t* ii = out_i + (b0 + i) * k;
        if (qnorm == 0) {  // every score is exactly 0: the k lowest ids
          for (std::int64_t j = 0; j < k; ++j) {
            si[j] = 0.0f;
            ii[j] = ids_[static_cast<std::size_t>(j)];
          }
          continue;
        }
        auto rescore = [&](const std::int64_t* rows, std::int64_t n) {
          ranked.resize(static_cast<std::size_t>(n));
          for (std::int64_t c = 0; c < n; ++c) ranked[static_cast<std::size_t>(c)] = {exact_dot(qi, ep + rows[c] * d, d), rows[c]};
          std::sort(ranked.begin(), ranked.end(), better);
        };
        const std::int64_t* rows = cand_r.data() + i * kc;
        rescore(rows, kc);
        if (kc < size()) {
          // Every non-candidate has approximate score <= the lowest candidate's, so exact <= that + eps.
          // If the k-th exact score beats that, the candidates provably hold the top k.
          const float* cs = cand_s.data() + i * kc;
          const double lowest = *std::min_element(cs, cs + kc);
          const double eps = error * qnorm;
          const double kth = ranked[static_cast<std::size_t>(k - 1)].score;
          if (!(kth > lowest + eps)) {
            const float threshold = std::nextafter(static_cast<float>(kth - eps), -std::numeric_limits<float>::infinity());
            const auto all = at_least(qi, threshold);
            rescore(all.data(), static_cast<std::int64_t>(all.size()));
          }
        }
        for (std::int64_t j = 0; j < k; ++j) {
          si[j] = static_cast<float>(ranked[static_cast<std::size_t>(j)].score);
          ii[j] = ids_[static_cast<std::size_t>(ranked[static_cast<std::size_t>(j)].row)];
        }
      }
    });
  }
  return out;
}

// --- backends -------------------------------------------------------------------------------------------------

namespace {

class FaissLocalizer final : public IntentLocalizer {
 public:
  explicit FaissLocalizer(torch::Tensor catalogue)
      : IntentLocalizer(std::move(catalogue)), index_(static_cast<faiss::Index::idx_t>(dim())) {
    index_.add(size(), searchable().data_ptr<float>());
  }
  std::string name() const override { return "faiss-flat-ip"; }

 protected:
  double candidates(const float* queries, std::int64_t m, std::int64_t k, float* scores,
                    std::int64_t* rows) const override {
    static_assert(sizeof(faiss::Index::idx_t) == sizeof(std::int64_t));
    index_.search(m, queries, k, scores, reinterpret_cast<faiss::Index::idx_t*>(rows));
    return float32_error();
  }
  std::vector<std::int64_t> at_least(const float* query, float threshold) const override {
    faiss::RangeSearchResult res(1);
    // FAISS keeps inner products strictly above the radius.
    index_.range_search(1, query, std::nextafter(threshold, -std::numeric_limits<float>::infinity()), &res);
    return {res.labels + res.lims[0], res.labels + res.lims[1]};
  }

 private:
  faiss::IndexFlatIP index_;
};

class BlockedLocalizer final : public IntentLocalizer {
 public:
  BlockedLocalizer(torch::Tensor catalogue, std::int64_t block)
      : IntentLocalizer(std::move(catalogue)),
        block_(std::max<std::int64_t>(1, block)),
        screen_(searchable().to(torch::kBFloat16)) {
    if (size() == 0) return;
    // |q·float(h) - q·e| <= ||float(h) - e|| ||q||, plus the screen's own rounding of the products with float(h)
    // (Σ|q||float(h)| <= ||q|| ||float(h)||; doubled for margin).
    const auto widened = searchable().to(torch::kBFloat16).to(torch::kFloat64);  // the values screen_ holds
    screen_error_ = (widened - searchable().to(torch::kFloat64)).norm(2, 1).max().item<double>() +
                    2.0 * screen_.error_factor() * widened.norm(2, 1).max().item<double>() + screen_.tiny_error();
  }
  std::string name() const override { return fmt::format("blocked-mm({})", block_); }

 protected:
  double candidates(const float* queries, std::int64_t m, std::int64_t k, float* scores,
                    std::int64_t* rows) const override {
    torch::NoGradGuard no_grad;
    const auto q = torch::from_blob(const_cast<float*>(queries), {m, dim()}, torch::kFloat32);
    const bool screened = m <= kMaxScreenedQueries;
    for (std::int64_t i0 = 0; i0 < m; i0 += block_) {
      const auto i1 = std::min(m, i0 + block_);
      const auto block = q.slice(0, i0, i1);
      const auto products = (screened ? screen_.times_transposed(block) : times_transposed(block, searchable())).contiguous();
      for (std::int64_t i = i0; i < i1; ++i) {
        const float* p = products.data_ptr<float>() + (i - i0) * size();
        const auto top = top_k(p, size(), k);
        // Finite queries (checked_queries) and catalogue rows have finite products, so all k are there.
        if (static_cast<std::int64_t>(top.size()) != k)
          throw Error(fmt::format("intent localization: {} of {} screened products are finite", top.size(), k));
        for (std::int64_t j = 0; j < k; ++j) {
          scores[i * k + j] = p[top[static_cast<std::size_t>(j)]];
          rows[i * k + j] = top[static_cast<std::size_t>(j)];
        }
      }
    }
    return screened ? screen_error_ : float32_error();
  }
  std::vector<std::int64_t> at_least(const float* query, float threshold) const override {
    torch::NoGradGuard no_grad;
    const auto q = torch::from_blob(const_cast<float*>(query), {dim()}, torch::kFloat32);
    const auto hits = (searchable().mv(q) >= threshold).nonzero().squeeze(1).contiguous();
    return {hits.data_ptr<std::int64_t>(), hits.data_ptr<std::int64_t>() + hits.numel()};
  }

 private:
  // A float32 GEMM packs the whole catalogue on every call; the packed bfloat16 screen reads half the bytes and
  // packs nothing. At 12,101 x 256 from memory (bench/times_transposed_bench --cold --dims 256), ms a product,
  // GEMM against the screen: 1 query 1.24 / 0.25, 8 queries 1.31 / 0.69, 32 queries 3.25 / 2.71, 128 queries
  // 9.05 / 8.43. Up to 128 queries (the 64 sessions of serving's largest pass, two views each) it screens;
  // the bulk stage's blocks of thousands of queries keep float32 GEMM and its tighter error bound, which
  // leaves fewer queries to rescore against the whole catalogue.
  static constexpr std::int64_t kMaxScreenedQueries = 128;
  std::int64_t block_;
  Bf16Table screen_;          ///< searchable() rounded to bfloat16
  double screen_error_ = 0;   ///< the e of candidates() for products with screen_
};

}  // namespace

std::unique_ptr<IntentLocalizer> make_faiss_localizer(torch::Tensor catalogue) {
  return std::make_unique<FaissLocalizer>(std::move(catalogue));
}

std::unique_ptr<IntentLocalizer> make_blocked_localizer(torch::Tensor catalogue, std::int64_t block) {
  return std::make_unique<BlockedLocalizer>(std::move(catalogue), block);
}

std::unique_ptr<IntentLocalizer> make_localizer(const std::string& kind, torch::Tensor catalogue) {
  if (kind == "faiss") return make_faiss_localizer(std::move(catalogue));
  if (kind == "blocked") return make_blocked_localizer(std::move(catalogue));
  throw ConfigError(fmt::format("unknown localizer '{}' (known: faiss, blocked)", kind));
}

// --- Eq. 5 --------------------------------------------------------------------------------------------------

Localization localize(const IntentLocalizer& index, const torch::Tensor& queries, std::int64_t r,
                      bool normalize_weights) {
  torch::NoGradGuard no_grad;
  if (r < 0) throw ConfigError(fmt::format("intent localization: r = {} must be >= 0", r));
  const auto q = checked_queries(queries, index.dim());
  const auto m = q.size(0);
  const auto d = index.dim();
  if (r == 0) return raw_embeddings(q);
  if (index.size() == 0)
    throw Error("intent localization: no catalogue item has a non-zero embedding (are all titles empty?)");
  if (r > index.size()) {
    spdlog::warn("intent localization: r = {} exceeds the {} searchable catalogue items; using r = {}", r,
                 index.size(), index.size());
    r = index.size();
  }
  SearchResult hits = index.search(q, r);
  auto intents = torch::empty({m, d}, torch::kFloat32);
  const auto& catalogue = index.catalogue();
  for (std::int64_t b0 = 0; b0 < m; b0 += kLocalizeBlock) {
    const auto b1 = std::min(m, b0 + kLocalizeBlock);
    const auto ids = hits.ids.slice(0, b0, b1);
    auto w = hits.scores.slice(0, b0, b1);
    if (normalize_weights) {
      const auto total = w.sum(1, /*keepdim=*/true);
      w = torch::where(total > 0, w / total, torch::zeros_like(w));
    }
    const auto e = catalogue.index_select(0, (ids - 1).reshape({-1})).view({b1 - b0, r, d});
    intents.slice(0, b0, b1).copy_((w.unsqueeze(-1) * e).sum(1));
  }
  return {intents, hits.ids, hits.scores};
}

Localization localize(const torch::Tensor& queries, const torch::Tensor& catalogue, std::int64_t r,
                      bool normalize_weights) {
  if (r == 0) {  // the raw embeddings need no index; both inputs are checked as an index and localize check them
    torch::NoGradGuard no_grad;
    return raw_embeddings(checked_queries(queries, checked_catalogue(catalogue).size(1)));
  }
  const auto index = make_faiss_localizer(catalogue);
  return localize(*index, queries, r, normalize_weights);
}

}  // namespace llm4sbr::intent
