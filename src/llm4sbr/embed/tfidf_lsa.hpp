// TF-IDF + LSA: the offline default TextEncoder. It needs no model download and no GPU, fits on the
// catalogue titles in seconds, and puts an LLM answer near the titles that share its words and word
// pieces, which is what intent localization (paper Eq. 4-5) needs from BERT in the paper.
//
// Features of a text (ASCII-lowercased; a "word" is a run of ASCII letters/digits or non-ASCII bytes,
// so "Leave-In" and "leave in" give the same words):
//   - word unigrams and bigrams (tokens of at least 2 bytes, like sklearn's default token pattern;
//     bigrams join consecutive tokens with a space);
//   - character n-grams, n = char_ngram_min..char_ngram_max (3-5), of each word padded with one space on
//     each side, counted in Unicode code points (sklearn's analyzer="char_wb"; a padded word shorter
//     than n gives itself once).
// Weights: tf = 1 + ln(count) (sublinear), idf = ln((1 + n_docs) / (1 + df)) + 1 (smooth), computed on
// the fitting corpus. The word block and the character block are each L2-normalised and scaled so that
// the word block carries `word_weight` of the squared norm (sklearn's FeatureUnion of two normalised
// vectorizers when 0.5), then the whole row is L2-normalised.
// Vocabulary: words with df >= word_min_df, character n-grams with df >= char_min_df; if more than
// max_features remain, the highest df win (ties: the smaller term). Features are looked up by a 64-bit
// FNV-1a hash of (kind, term).
// LSA: a randomized truncated SVD (Halko, Martinsson & Tropp 2011) of the sparse n_docs x V TF-IDF
// matrix X: Ω ~ N(0,1)^{n_docs x k}, k = dim + oversample, Q = qr(X Xᵀ Ω), then `power_iterations`
// times Q = qr(X (Xᵀ Q)) (QR after every application of X Xᵀ, all on the small n_docs x k side), then
// the SVD of B = Qᵀ X through the eigen-decomposition of B Bᵀ (in float64). The projection
// P = V_B[:, :dim] (V x dim) holds the top right singular vectors, each with its largest-magnitude entry
// made positive, so that a seed gives the same encoder on every run. dim is capped at min(n_docs, V).
// encode(t) = normalize(x(t) P), x(t) the TF-IDF row of t with the fitted vocabulary and idf. n-grams
// not in the vocabulary are ignored; an empty or all-unknown text has x = 0 and gets a zero row (whose
// cosine with every item is 0: intent localization gives it zero scores and a zero intent).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/embed/text_encoder.hpp"
#include "llm4sbr/core/settings.hpp"

namespace llm4sbr::embed {

struct TfidfLsaOptions {
  std::int64_t dim = 256;                 ///< d_text (capped at min(n_docs, vocabulary) by fit)
  std::int64_t word_ngram_max = 2;        ///< 1: unigrams only; 2: unigrams and bigrams
  std::int64_t char_ngram_min = 3;        ///< 0 with char_ngram_max 0 disables character n-grams
  std::int64_t char_ngram_max = 5;
  std::int64_t word_min_df = 1;
  std::int64_t char_min_df = 2;
  std::int64_t max_features = 200000;     ///< vocabulary cap (bounds the projection: V x dim floats)
  double word_weight = 0.5;               ///< share of a row's squared norm given to the word block
  std::int64_t oversample = 10;           ///< extra random directions of the range finder
  std::int64_t power_iterations = 3;      ///< subspace iterations, each followed by a QR
  std::uint64_t seed = 2020;
  std::int64_t threads = 0;               ///< threads of the sparse kernels; 0 = all cores
  bool normalize = true;                  ///< L2-normalise the output rows

  /// Reads the keys above (same names) from an encoder settings section, e.g. `embed.tfidf`. Throws
  /// ConfigError naming the key for a value of the wrong type or out of range.
  static TfidfLsaOptions from_config(const Config& settings);
  /// The keys above as the settings schema of `section` (e.g. "embed.tfidf").
  static SettingsSchema settings(const std::string& section);
};

class TfidfLsaEncoder : public TextEncoder {
 public:
  explicit TfidfLsaEncoder(TfidfLsaOptions options = {});
  ~TfidfLsaEncoder() override;

  /// Builds the vocabulary and idf on `corpus` (the catalogue titles, empty ones included: they count as
  /// documents) and fits the projection. Throws InputError if no text has a feature.
  void fit(const std::vector<std::string>& corpus) override;
  bool fitted() const override;
  /// [texts.size(), dim()] float32, see the file comment. Runs on `threads` threads, each text
  /// independently, so the result does not depend on the thread count or on how texts are batched.
  /// Safe to call from several threads at once once fitted (or loaded): it only reads the fitted model,
  /// and every call has its own vectorizer and output. fit() is not: fit before sharing the encoder.
  torch::Tensor encode(const std::vector<std::string>& texts) override;
  bool concurrent() const override { return true; }  // see encode()
  std::int64_t dim() const override;
  std::string name() const override;
  bool normalize() const override { return options_.normalize; }

  /// Writes `dir`: vocabulary.tsv (kind \t df \t term, in feature order; kind w = word, c = char n-gram),
  /// idf.npy float32 [V], projection.npy float32 [V, dim], singular_values.npy float32 [dim], then
  /// encoder.json ({"kind": "tfidf", options, sizes}). Every file is written atomically, encoder.json last.
  void save(const std::filesystem::path& dir) const override;
  /// Reads what save wrote. Throws InputError naming the file on a missing or inconsistent file.
  static std::unique_ptr<TfidfLsaEncoder> load(const std::filesystem::path& dir);

  /// The TF-IDF rows (before the projection) of `texts` with the fitted vocabulary: a sparse COO float32
  /// tensor [texts.size(), vocabulary_size()], for inspection and tests.
  torch::Tensor tfidf(const std::vector<std::string>& texts) const;

  const TfidfLsaOptions& options() const { return options_; }
  std::int64_t vocabulary_size() const;
  /// Feature names in column order ("w:macadamia", "w:leave in", "c: mac").
  std::vector<std::string> feature_names() const;
  /// Singular values of the fitted TF-IDF matrix, largest first, [dim].
  std::vector<float> singular_values() const;
  /// Seconds the last fit() took.
  double fit_seconds() const;

 private:
  struct Model;
  TfidfLsaOptions options_;
  std::unique_ptr<Model> model_;
};

namespace detail {
/// A text's distinct columns (`cols`, in the order first counted, each with its bit set in `seen`, a bit a
/// column of the vocabulary) in increasing order, with `seen` cleared. Many columns (a session's titles:
/// thousands) are read off the bitmap, few are sorted. Used by the encoder; declared here for its test.
void sort_marked_columns(std::vector<std::int32_t>& cols, std::vector<std::uint64_t>& seen);
}  // namespace detail

}  // namespace llm4sbr::embed
