// Intent localization (paper §4.1.3, Eq. 4-5; paper-notes §4.1): find the r catalogue items whose text
// embeddings are most cosine-similar to an LLM answer's embedding, and replace the answer by the
// similarity-weighted sum of those real items' embeddings:
//
//   Similarity_j = cos(e_infer, e_j)                          (Eq. 4; inner products of L2-normalised rows)
//   h_infer      = Σ_{j ∈ top-r} Similarity_j · e_j           (Eq. 5)
//
// Each item is weighted by its OWN similarity. (The reference code pairs the top-5 embeddings with the
// first 5 entries of the unsorted similarity vector and divides by 5; we do not copy that.)
//
// The search is exact and deterministic: whichever backend produces the candidates (FAISS IndexFlatIP or
// blocked matrix products), the candidates are re-scored in float64 from the float32 rows, ranked by
// (score descending, item id ascending) -- ties go to the lower item id -- and a rigorous float32 error
// bound decides whether the candidate list provably holds the true top-k; if not (many near-equal scores
// at the cut), every item within the bound is re-scored. Hence both backends return identical ids and
// bit-identical scores, and identical catalogue rows always rank by id.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace llm4sbr::intent {

struct SearchResult {
  torch::Tensor scores;  ///< [m, k] float32 inner products (cosines), best first
  torch::Tensor ids;     ///< [m, k] int64 model item ids (catalogue row + 1)
};

/// An index over a catalogue of item embeddings answering exact inner-product top-k queries.
///
/// The catalogue is [n, d] float32 with row r holding item id r + 1 (rows L2-normalised for cosine
/// similarity). All-zero rows -- items without a title, which the encoder maps to zero -- are left out:
/// they are never a hit, and size() counts only the searchable rows. A catalogue row with NaN/Inf is an
/// InputError naming the row.
class IntentLocalizer {
 public:
  explicit IntentLocalizer(torch::Tensor catalogue);
  virtual ~IntentLocalizer();
  IntentLocalizer(const IntentLocalizer&) = delete;
  IntentLocalizer& operator=(const IntentLocalizer&) = delete;

  /// Top-k items for each query row of `queries` [m, d] (float32, any device-less CPU tensor):
  /// k is clamped to size(). Throws InputError naming the row for a query with NaN/Inf and Error for a
  /// shape mismatch. A zero query scores 0 against every item and gets the k lowest searchable ids.
  SearchResult search(const torch::Tensor& queries, std::int64_t k) const;

  const torch::Tensor& catalogue() const { return catalogue_; }  ///< [n, d] as given
  std::int64_t n_items() const { return catalogue_.size(0); }     ///< n, searchable or not
  std::int64_t size() const { return static_cast<std::int64_t>(ids_.size()); }  ///< searchable items
  std::int64_t dim() const { return catalogue_.size(1); }
  virtual std::string name() const = 0;

 protected:
  /// The searchable rows, [size(), d] contiguous; backends index into them (0-based).
  const torch::Tensor& searchable() const { return searchable_; }

  /// Backend: for each of the m queries (row-major [m, d]), the k searchable rows with the largest
  /// approximate inner products, in any order, as (approximate score, row) pairs into scores/rows [m, k].
  /// 1 <= k <= size(). Returns e with |approximate - exact| <= e · ||query|| for every row it scored
  /// (float32_error() for float32 products of the rows).
  virtual double candidates(const float* queries, std::int64_t m, std::int64_t k, float* scores,
                            std::int64_t* rows) const = 0;
  /// The e of candidates() for float32 inner products summed in any order: 2 γ_d max ||row||.
  double float32_error() const;
  /// Backend: every searchable row whose (float32) inner product with `query` is >= threshold.
  virtual std::vector<std::int64_t> at_least(const float* query, float threshold) const = 0;

 private:
  torch::Tensor catalogue_;
  torch::Tensor searchable_;
  std::vector<std::int64_t> ids_;  ///< item id of each searchable row
  double max_norm_ = 0;            ///< largest catalogue row norm (for the error bound)
};

/// Exact search with FAISS (faiss::IndexFlatIP; BLAS for batches of 20+ queries).
std::unique_ptr<IntentLocalizer> make_faiss_localizer(torch::Tensor catalogue);
/// Exact search with LibTorch: blocks of `block` queries times the catalogue, then topk. A call of at most
/// 128 queries (serving's) is screened against a packed bfloat16 copy of the catalogue instead (Bf16Table,
/// core/linalg.hpp): half the bytes and no packing per call; the rescoring's error bound makes the result
/// the same.
std::unique_ptr<IntentLocalizer> make_blocked_localizer(torch::Tensor catalogue, std::int64_t block = 1024);
/// "faiss" or "blocked"; ConfigError for anything else.
std::unique_ptr<IntentLocalizer> make_localizer(const std::string& kind, torch::Tensor catalogue);

/// The result of localizing m queries.
struct Localization {
  torch::Tensor intents;  ///< [m, d] float32: h_infer of Eq. 5 (r = 0: the queries themselves)
  torch::Tensor ids;      ///< [m, r] int64 item ids of the top-r items, best first ([m, 0] for r = 0)
  torch::Tensor scores;   ///< [m, r] float32 their cosine similarities
};

/// Paper Eq. 5 for each query row: h = Σ_{j in top-r} sim_j · e_j, e_j the catalogue row of item j.
/// normalize_weights divides by Σ_j sim_j (a similarity-weighted mean; not in the paper); a row whose
/// Σ sim_j <= 0 then gets a zero intent instead of a sign-flipped or infinite one. A zero query (an empty
/// or all-unknown text) has all similarities 0 and therefore a zero intent.
/// r = 0 returns the queries themselves (the raw response embedding, paper §5.4); r > index.size() is
/// clamped to size() with a warning. Throws ConfigError for r < 0, InputError naming the row for a
/// query with NaN/Inf. Queries are processed in blocks, so memory stays O(block · r · d).
Localization localize(const IntentLocalizer& index, const torch::Tensor& queries, std::int64_t r,
                      bool normalize_weights = false);
/// The same over a catalogue [n, d], with an exact FAISS index built for the call.
Localization localize(const torch::Tensor& queries, const torch::Tensor& catalogue, std::int64_t r,
                      bool normalize_weights = false);

}  // namespace llm4sbr::intent
