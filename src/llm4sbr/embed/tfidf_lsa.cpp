#include "llm4sbr/embed/tfidf_lsa.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <fstream>
#include <functional>
#include <random>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>

#include "llm4sbr/core/atomic_file.hpp"
#include "llm4sbr/core/error.hpp"
#include "llm4sbr/core/hash.hpp"
#include "llm4sbr/core/npy.hpp"
#include "llm4sbr/embed/randomized_svd.hpp"

namespace llm4sbr::embed {

namespace fs = std::filesystem;
using linalg::Csr;
using linalg::parallel_for;
using linalg::randomized_svd;
using linalg::resolve_threads;
using linalg::sparse_row_times_dense;

namespace {

constexpr char kCharKind = 'c';
constexpr char kWordKind = 'w';
constexpr int kFormatVersion = 1;

// --- features ---------------------------------------------------------------------------------------

/// FNV-1a of the bytes kind, a[, ' ', b]: the key of a feature (b is the second word of a bigram).
std::uint64_t feature_hash(char kind, std::string_view a, std::string_view b = {}) {
  std::uint64_t h = fnv1a64(std::string_view(&kind, 1));
  h = fnv1a64(a, h);
  if (!b.empty()) {
    h = fnv1a64(" ", h);
    h = fnv1a64(b, h);
  }
  return h == 0 ? 1 : h;  // 0 marks an empty slot of TermIndex
}

bool is_word_byte(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
}

/// Splits texts into the features of the file comment and hands each to a callback
/// emit(kind, hash, a, b) (b non-empty only for bigrams). Keeps its buffers between texts.
class FeatureExtractor {
 public:
  explicit FeatureExtractor(const TfidfLsaOptions& o) : o_(o) {}

  template <typename Emit>
  void run(std::string_view text, Emit&& emit) {
    split(text);
    word_ngrams(emit);
    for (const auto w : words_) char_ngrams(w, emit);
  }

  /// Lowercases `text` and splits it into words(), which stay valid until the next call.
  void split(std::string_view text) {
    lower_.assign(text);
    for (auto& ch : lower_)
      if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
    words_.clear();
    for (std::size_t i = 0; i < lower_.size();) {
      if (!is_word_byte(static_cast<unsigned char>(lower_[i]))) {
        ++i;
        continue;
      }
      std::size_t j = i;
      while (j < lower_.size() && is_word_byte(static_cast<unsigned char>(lower_[j]))) ++j;
      words_.emplace_back(lower_.data() + i, j - i);
      i = j;
    }
  }
  const std::vector<std::string_view>& words() const { return words_; }

  /// Word unigrams and bigrams over the split words of >= 2 bytes.
  template <typename Emit>
  void word_ngrams(Emit&& emit) {
    std::string_view prev;
    for (const auto w : words_) {
      if (w.size() < 2) continue;
      emit(kWordKind, feature_hash(kWordKind, w), w, std::string_view{});
      if (o_.word_ngram_max >= 2 && !prev.empty()) emit(kWordKind, feature_hash(kWordKind, prev, w), prev, w);
      prev = w;
    }
  }

  /// Character n-grams of " word ", in code points (char_wb); none when they are disabled.
  template <typename Emit>
  void char_ngrams(std::string_view word, Emit&& emit) {
    if (o_.char_ngram_max <= 0) return;
    padded_.assign(1, ' ');
    padded_.append(word);
    padded_.push_back(' ');
    starts_.clear();
    for (std::size_t i = 0; i < padded_.size(); ++i)
      if ((static_cast<unsigned char>(padded_[i]) & 0xC0) != 0x80) starts_.push_back(i);
    const auto len = static_cast<std::int64_t>(starts_.size());
    starts_.push_back(padded_.size());
    for (std::int64_t n = o_.char_ngram_min; n <= o_.char_ngram_max; ++n) {
      std::int64_t offset = 0;
      do {
        const auto end = static_cast<std::size_t>(std::min(offset + n, len));
        const std::string_view g(padded_.data() + starts_[offset], starts_[end] - starts_[offset]);
        emit(kCharKind, feature_hash(kCharKind, g), g, std::string_view{});
        ++offset;
      } while (offset + n <= len);
      if (len <= n) break;  // a word no longer than n gives itself once, for the smallest such n
    }
  }

 private:
  const TfidfLsaOptions& o_;
  std::string lower_;
  std::vector<std::string_view> words_;
  std::string padded_;
  std::vector<std::size_t> starts_;
};

/// Open-addressing hash table from feature hash to column, built once per vocabulary.
class TermIndex {
 public:
  void build(const std::vector<std::uint64_t>& keys) {
    std::size_t cap = 16;
    while (cap < 2 * keys.size()) cap <<= 1;
    mask_ = cap - 1;
    keys_.assign(cap, 0);
    cols_.assign(cap, -1);
    for (std::size_t c = 0; c < keys.size(); ++c) {
      std::size_t i = slot(keys[c]);
      while (keys_[i] != 0 && keys_[i] != keys[c]) i = (i + 1) & mask_;
      if (keys_[i] == keys[c]) throw Error(fmt::format("tfidf: two vocabulary terms share the hash {:016x}", keys[c]));
      keys_[i] = keys[c];
      cols_[i] = static_cast<std::int32_t>(c);
    }
  }
  std::int32_t find(std::uint64_t key) const {
    for (std::size_t i = slot(key);; i = (i + 1) & mask_) {
      if (keys_[i] == key) return cols_[i];
      if (keys_[i] == 0) return -1;
    }
  }

 private:
  std::size_t slot(std::uint64_t key) const { return static_cast<std::size_t>((key * 0x9E3779B97F4A7C15ULL) >> 17) & mask_; }
  std::size_t mask_ = 0;
  std::vector<std::uint64_t> keys_;
  std::vector<std::int32_t> cols_;
};

/// The character n-gram columns of each vocabulary word (a unigram column), repeats kept, by word column: a
/// known word's n-grams are read from here instead of hashing and looking up each (~20 a word), which was
/// most of encoding a session's titles in serving. Made by the extractor's own char_ngrams, so a row counts
/// the same columns the same number of times either way.
class WordCharColumns {
 public:
  void build(const std::vector<std::string>& terms, std::int64_t n_char, const TermIndex& index,
             const TfidfLsaOptions& o) {
    first_ = n_char;
    ptr_.assign(1, 0);
    cols_.clear();
    FeatureExtractor extract(o);
    for (auto c = static_cast<std::size_t>(n_char); c < terms.size(); ++c) {
      if (terms[c].find(' ') == std::string::npos)  // a bigram has none
        extract.char_ngrams(terms[c], [&](char, std::uint64_t h, std::string_view, std::string_view) {
          if (const auto col = index.find(h); col >= 0) cols_.push_back(col);
        });
      ptr_.push_back(static_cast<std::int64_t>(cols_.size()));
    }
  }
  /// Calls count(col) for each character n-gram column of word column `word`.
  template <typename Count>
  void for_each(std::int32_t word, Count&& count) const {
    const auto w = static_cast<std::size_t>(word - first_);
    for (auto p = ptr_[w]; p < ptr_[w + 1]; ++p) count(cols_[static_cast<std::size_t>(p)]);
  }

 private:
  std::int64_t first_ = 0;          ///< the first word column
  std::vector<std::int64_t> ptr_;   ///< [word columns + 1]
  std::vector<std::int32_t> cols_;
};

void check_options(const TfidfLsaOptions& o) {
  auto bad = [](const std::string& key, const std::string& what) {
    throw ConfigError(fmt::format("tfidf option '{}': {}", key, what));
  };
  if (o.dim < 1) bad("dim", "must be >= 1");
  if (o.word_ngram_max < 1 || o.word_ngram_max > 2) bad("word_ngram_max", "must be 1 or 2");
  const bool no_chars = o.char_ngram_min == 0 && o.char_ngram_max == 0;
  if (!no_chars && (o.char_ngram_min < 1 || o.char_ngram_max < o.char_ngram_min))
    bad("char_ngram_min/char_ngram_max", "need 1 <= min <= max (or both 0 to disable)");
  if (o.word_min_df < 1) bad("word_min_df", "must be >= 1");
  if (o.char_min_df < 1) bad("char_min_df", "must be >= 1");
  if (o.max_features < 1) bad("max_features", "must be >= 1");
  if (!(o.word_weight >= 0.0 && o.word_weight <= 1.0)) bad("word_weight", "must be in [0, 1]");
  if (o.oversample < 0) bad("oversample", "must be >= 0");
  if (o.power_iterations < 0) bad("power_iterations", "must be >= 0");
  if (o.threads < 0) bad("threads", "must be >= 0 (0 = all cores)");
}

nlohmann::json options_json(const TfidfLsaOptions& o) {
  return {{"dim", o.dim},
          {"word_ngram_max", o.word_ngram_max},
          {"char_ngram_min", o.char_ngram_min},
          {"char_ngram_max", o.char_ngram_max},
          {"word_min_df", o.word_min_df},
          {"char_min_df", o.char_min_df},
          {"max_features", o.max_features},
          {"word_weight", o.word_weight},
          {"oversample", o.oversample},
          {"power_iterations", o.power_iterations},
          {"seed", o.seed},
          {"threads", o.threads},
          {"normalize", o.normalize}};
}

}  // namespace

// --- options ------------------------------------------------------------------------------------------

SettingsSchema TfidfLsaOptions::settings(const std::string& section) {
  using enum SettingType;
  return {section,
          {{"dim", kInteger}, {"word_ngram_max", kInteger}, {"char_ngram_min", kInteger}, {"char_ngram_max", kInteger},
           {"word_min_df", kInteger}, {"char_min_df", kInteger}, {"max_features", kInteger}, {"word_weight", kNumber},
           {"oversample", kInteger}, {"power_iterations", kInteger}, {"seed", kInteger}, {"threads", kInteger},
           {"normalize", kBool}}};
}

TfidfLsaOptions TfidfLsaOptions::from_config(const Config& s) {
  TfidfLsaOptions o;
  o.dim = s.get<std::int64_t>("dim", o.dim);
  o.word_ngram_max = s.get<std::int64_t>("word_ngram_max", o.word_ngram_max);
  o.char_ngram_min = s.get<std::int64_t>("char_ngram_min", o.char_ngram_min);
  o.char_ngram_max = s.get<std::int64_t>("char_ngram_max", o.char_ngram_max);
  o.word_min_df = s.get<std::int64_t>("word_min_df", o.word_min_df);
  o.char_min_df = s.get<std::int64_t>("char_min_df", o.char_min_df);
  o.max_features = s.get<std::int64_t>("max_features", o.max_features);
  o.word_weight = s.get<double>("word_weight", o.word_weight);
  o.oversample = s.get<std::int64_t>("oversample", o.oversample);
  o.power_iterations = s.get<std::int64_t>("power_iterations", o.power_iterations);
  o.seed = s.get<std::uint64_t>("seed", o.seed);
  o.threads = s.get<std::int64_t>("threads", o.threads);
  o.normalize = s.get<bool>("normalize", o.normalize);
  check_options(o);
  return o;
}

// --- the fitted model -------------------------------------------------------------------------------------

struct TfidfLsaEncoder::Model {
  std::vector<char> kinds;          ///< per column: 'c' (columns [0, n_char)) or 'w'
  std::vector<std::string> terms;   ///< per column, without the kind
  std::vector<std::int64_t> df;     ///< per column, on the fitting corpus
  std::int64_t n_char = 0;
  std::vector<float> idf;
  TermIndex index;
  WordCharColumns word_chars;
  torch::Tensor projection;         ///< [V, dim] float32, contiguous
  std::vector<float> singular;      ///< [dim]
  std::int64_t n_docs = 0;
  double fit_seconds = 0;

  std::int64_t vocabulary() const { return static_cast<std::int64_t>(terms.size()); }
  std::int64_t dim() const { return projection.size(1); }

  void build_index(const TfidfLsaOptions& o) {
    std::vector<std::uint64_t> keys(terms.size());
    for (std::size_t c = 0; c < terms.size(); ++c) {
      const auto& t = terms[c];
      if (kinds[c] == kWordKind) {
        const auto space = t.find(' ');
        keys[c] = space == std::string::npos
                      ? feature_hash(kWordKind, t)
                      : feature_hash(kWordKind, std::string_view(t).substr(0, space),
                                     std::string_view(t).substr(space + 1));
      } else {
        keys[c] = feature_hash(kCharKind, t);
      }
    }
    index.build(keys);
    word_chars.build(terms, n_char, index, o);
  }
};

namespace {

/// Turns texts into TF-IDF rows with a fitted vocabulary; one per thread.
class Vectorizer {
 public:
  Vectorizer(const TfidfLsaOptions& o, const std::vector<float>& idf, std::int64_t n_char, const TermIndex& index,
             const WordCharColumns& word_chars)
      : o_(o), idf_(idf), n_char_(n_char), index_(index), word_chars_(word_chars), extract_(o),
        counts_(idf.size(), 0), seen_((idf.size() + 63) / 64, 0) {}

  /// The L2-normalised row of `text` as sorted (column, value) pairs; empty if no feature is known.
  void row(std::string_view text, std::vector<std::int32_t>& cols, std::vector<float>& vals) {
    cols.clear();
    vals.clear();
    const auto count = [&](std::int32_t c) {
      if (counts_[static_cast<std::size_t>(c)]++ == 0) {
        cols.push_back(c);
        seen_[static_cast<std::size_t>(c) / 64] |= std::uint64_t{1} << (c % 64);
      }
    };
    const auto count_feature = [&](char, std::uint64_t h, std::string_view, std::string_view) {
      if (const auto c = index_.find(h); c >= 0) count(c);
    };
    // FeatureExtractor::run, with a vocabulary word's character n-grams read from word_chars_.
    extract_.split(text);
    extract_.word_ngrams(count_feature);
    for (const auto w : extract_.words()) {
      const auto word = w.size() >= 2 ? index_.find(feature_hash(kWordKind, w)) : -1;
      if (word >= n_char_) word_chars_.for_each(word, count);
      else extract_.char_ngrams(w, count_feature);
    }
    detail::sort_marked_columns(cols, seen_);
    double sq_char = 0, sq_word = 0;
    vals.resize(cols.size());
    for (std::size_t p = 0; p < cols.size(); ++p) {
      auto& count = counts_[static_cast<std::size_t>(cols[p])];
      const double w = (1.0 + std::log(static_cast<double>(count))) * idf_[static_cast<std::size_t>(cols[p])];
      count = 0;
      vals[p] = static_cast<float>(w);
      (cols[p] < n_char_ ? sq_char : sq_word) += w * w;
    }
    const double s_char = sq_char > 0 ? std::sqrt((1.0 - o_.word_weight) / sq_char) : 0.0;
    const double s_word = sq_word > 0 ? std::sqrt(o_.word_weight / sq_word) : 0.0;
    double sq = 0;
    for (std::size_t p = 0; p < cols.size(); ++p) {
      const double v = vals[p] * (cols[p] < n_char_ ? s_char : s_word);
      vals[p] = static_cast<float>(v);
      sq += v * v;
    }
    if (sq > 0) {
      const double inv = 1.0 / std::sqrt(sq);
      for (auto& v : vals) v = static_cast<float>(v * inv);
    }
  }

 private:
  const TfidfLsaOptions& o_;
  const std::vector<float>& idf_;
  std::int64_t n_char_;
  const TermIndex& index_;
  const WordCharColumns& word_chars_;
  FeatureExtractor extract_;
  std::vector<std::int32_t> counts_;
  std::vector<std::uint64_t> seen_;  ///< a bit a column: set when its first feature is counted
};

}  // namespace

// Sorting a session's thousands of columns was 4 % of a served request; reading them off the bitmap (~1,500
// words on Beauty) is a few microseconds.
void detail::sort_marked_columns(std::vector<std::int32_t>& cols, std::vector<std::uint64_t>& seen) {
  if (cols.size() * 8 < seen.size()) {
    for (const auto c : cols) seen[static_cast<std::size_t>(c) / 64] = 0;
    std::sort(cols.begin(), cols.end());
    return;
  }
  cols.clear();
  for (std::size_t w = 0; w < seen.size(); ++w)
    for (auto bits = std::exchange(seen[w], 0); bits != 0; bits &= bits - 1)
      cols.push_back(static_cast<std::int32_t>(w * 64 + static_cast<std::size_t>(__builtin_ctzll(bits))));
}

// --- TfidfLsaEncoder ---------------------------------------------------------------------------------------

TfidfLsaEncoder::TfidfLsaEncoder(TfidfLsaOptions options) : options_(std::move(options)) { check_options(options_); }

TfidfLsaEncoder::~TfidfLsaEncoder() = default;

bool TfidfLsaEncoder::fitted() const { return model_ != nullptr; }

std::int64_t TfidfLsaEncoder::dim() const { return model_ ? model_->dim() : options_.dim; }

std::int64_t TfidfLsaEncoder::vocabulary_size() const { return model_ ? model_->vocabulary() : 0; }

double TfidfLsaEncoder::fit_seconds() const { return model_ ? model_->fit_seconds : 0.0; }

std::vector<float> TfidfLsaEncoder::singular_values() const { return model_ ? model_->singular : std::vector<float>{}; }

std::string TfidfLsaEncoder::name() const {
  if (!model_) return fmt::format("tfidf-lsa(d={}, unfitted)", options_.dim);
  return fmt::format("tfidf-lsa(d={}, vocab={}, docs={}, seed={})", model_->dim(), model_->vocabulary(),
                     model_->n_docs, options_.seed);
}

std::vector<std::string> TfidfLsaEncoder::feature_names() const {
  std::vector<std::string> out;
  if (!model_) return out;
  out.reserve(model_->terms.size());
  for (std::size_t c = 0; c < model_->terms.size(); ++c)
    out.push_back(std::string(1, model_->kinds[c]) + ":" + model_->terms[c]);
  return out;
}

void TfidfLsaEncoder::fit(const std::vector<std::string>& corpus) {
  const auto t0 = std::chrono::steady_clock::now();
  const int threads = resolve_threads(options_.threads);
  auto m = std::make_unique<Model>();
  m->n_docs = static_cast<std::int64_t>(corpus.size());

  // 1. Document frequencies of every feature of the corpus.
  struct Candidate {
    char kind;
    std::string term;
    std::int64_t df = 0;
    std::int64_t last_doc = -1;
  };
  std::vector<Candidate> cand;
  std::unordered_map<std::uint64_t, std::size_t> slot_of;
  {
    FeatureExtractor extract(options_);
    for (std::int64_t d = 0; d < m->n_docs; ++d) {
      extract.run(corpus[static_cast<std::size_t>(d)],
                  [&](char kind, std::uint64_t h, std::string_view a, std::string_view b) {
                    auto [it, inserted] = slot_of.try_emplace(h, cand.size());
                    if (inserted) {
                      std::string term(a);
                      if (!b.empty()) (term += ' ') += b;
                      cand.push_back({kind, std::move(term)});
                    }
                    auto& c = cand[it->second];
                    if (c.last_doc != d) {
                      c.last_doc = d;
                      ++c.df;
                    }
                  });
    }
  }

  // 2. Pruning: min_df per kind, then the max_features highest df; columns in (kind, term) order.
  std::vector<std::size_t> kept;
  for (std::size_t i = 0; i < cand.size(); ++i)
    if (cand[i].df >= (cand[i].kind == kCharKind ? options_.char_min_df : options_.word_min_df)) kept.push_back(i);
  if (static_cast<std::int64_t>(kept.size()) > options_.max_features) {
    const auto cut = kept.begin() + options_.max_features;
    std::nth_element(kept.begin(), cut, kept.end(), [&](std::size_t a, std::size_t b) {
      if (cand[a].df != cand[b].df) return cand[a].df > cand[b].df;
      if (cand[a].kind != cand[b].kind) return cand[a].kind < cand[b].kind;
      return cand[a].term < cand[b].term;
    });
    kept.erase(cut, kept.end());
  }
  std::sort(kept.begin(), kept.end(), [&](std::size_t a, std::size_t b) {
    if (cand[a].kind != cand[b].kind) return cand[a].kind < cand[b].kind;
    return cand[a].term < cand[b].term;
  });
  if (kept.empty())
    throw InputError("tfidf corpus", 0, "", fmt::format("none of the {} texts has a word or character n-gram "
                                                        "that passes min_df: nothing to fit",
                                                        corpus.size()));
  const auto vocab = static_cast<std::int64_t>(kept.size());
  m->kinds.reserve(kept.size());
  m->terms.reserve(kept.size());
  m->df.reserve(kept.size());
  m->idf.reserve(kept.size());
  for (const auto i : kept) {
    m->kinds.push_back(cand[i].kind);
    m->terms.push_back(std::move(cand[i].term));
    m->df.push_back(cand[i].df);
    m->idf.push_back(static_cast<float>(std::log((1.0 + m->n_docs) / (1.0 + cand[i].df)) + 1.0));
    if (cand[i].kind == kCharKind) ++m->n_char;
  }
  cand.clear();
  cand.shrink_to_fit();
  slot_of.clear();
  m->build_index(options_);

  // 3. The TF-IDF matrix of the corpus.
  Csr x;
  x.rows = m->n_docs;
  x.cols = vocab;
  {
    std::vector<std::vector<std::int32_t>> row_cols(corpus.size());
    std::vector<std::vector<float>> row_vals(corpus.size());
    parallel_for(m->n_docs, threads, 256, [&](std::int64_t begin, std::int64_t end) {
      Vectorizer vec(options_, m->idf, m->n_char, m->index, m->word_chars);
      for (auto d = begin; d < end; ++d)
        vec.row(corpus[static_cast<std::size_t>(d)], row_cols[static_cast<std::size_t>(d)],
                row_vals[static_cast<std::size_t>(d)]);
    });
    x.ptr.resize(corpus.size() + 1);
    for (std::size_t d = 0; d < corpus.size(); ++d) x.ptr[d + 1] = x.ptr[d] + static_cast<std::int64_t>(row_cols[d].size());
    x.idx.reserve(static_cast<std::size_t>(x.ptr.back()));
    x.val.reserve(static_cast<std::size_t>(x.ptr.back()));
    for (std::size_t d = 0; d < corpus.size(); ++d) {
      x.idx.insert(x.idx.end(), row_cols[d].begin(), row_cols[d].end());
      x.val.insert(x.val.end(), row_vals[d].begin(), row_vals[d].end());
    }
  }
  const double t_tfidf = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  // 4. Randomized truncated SVD of X (randomized_svd.hpp); its right singular vectors are the projection.
  const std::int64_t dim = std::min({options_.dim, m->n_docs, vocab});
  if (dim < options_.dim)
    spdlog::warn("tfidf: dim {} capped at {} (corpus of {} texts, vocabulary of {})", options_.dim, dim, m->n_docs,
                 vocab);
  const auto svd = randomized_svd(x, dim, options_.oversample, options_.power_iterations, options_.seed, threads);
  m->projection = svd.right;
  m->singular = svd.singular;
  m->fit_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  spdlog::info("tfidf: fitted on {} texts in {:.2f}s (tf-idf {:.2f}s, range finder {:.2f}s of which sparse products "
               "{:.2f}s and QR {:.2f}s, svd {:.2f}s): vocabulary {} ({} char n-grams, {} words), nnz {}, d {}, "
               "{} thread(s)",
               m->n_docs, m->fit_seconds, t_tfidf, svd.range_seconds, svd.sparse_seconds, svd.qr_seconds,
               svd.seconds - svd.range_seconds, vocab, m->n_char, vocab - m->n_char, x.ptr.back(), dim, threads);
  model_ = std::move(m);
}

torch::Tensor TfidfLsaEncoder::encode(const std::vector<std::string>& texts) {
  if (!model_) throw Error("tfidf: encode() called before fit() or load()");
  const Model& m = *model_;
  const auto n = static_cast<std::int64_t>(texts.size());
  const auto d = m.dim();
  auto out = torch::zeros({n, d}, torch::kFloat32);
  float* op = out.data_ptr<float>();
  const float* pp = m.projection.data_ptr<float>();
  parallel_for(n, resolve_threads(options_.threads), 64, [&](std::int64_t begin, std::int64_t end) {
    Vectorizer vec(options_, m.idf, m.n_char, m.index, m.word_chars);
    std::vector<std::int32_t> cols;
    std::vector<float> vals;
    for (auto i = begin; i < end; ++i) {
      vec.row(texts[static_cast<std::size_t>(i)], cols, vals);
      float* row = op + i * d;
      sparse_row_times_dense(cols.data(), vals.data(), static_cast<std::int64_t>(cols.size()), pp, d, row);
      if (!options_.normalize) continue;
      double sq = 0;
      for (std::int64_t c = 0; c < d; ++c) sq += static_cast<double>(row[c]) * row[c];
      if (sq > 0) {
        const auto inv = static_cast<float>(1.0 / std::sqrt(sq));
        for (std::int64_t c = 0; c < d; ++c) row[c] *= inv;
      }
    }
  });
  return out;
}

torch::Tensor TfidfLsaEncoder::tfidf(const std::vector<std::string>& texts) const {
  if (!model_) throw Error("tfidf: tfidf() called before fit() or load()");
  const Model& m = *model_;
  Vectorizer vec(options_, m.idf, m.n_char, m.index, m.word_chars);
  std::vector<std::int64_t> rows, cols;
  std::vector<float> vals;
  std::vector<std::int32_t> rc;
  std::vector<float> rv;
  for (std::size_t i = 0; i < texts.size(); ++i) {
    vec.row(texts[i], rc, rv);
    for (std::size_t p = 0; p < rc.size(); ++p) {
      rows.push_back(static_cast<std::int64_t>(i));
      cols.push_back(rc[p]);
      vals.push_back(rv[p]);
    }
  }
  const auto nnz = static_cast<std::int64_t>(vals.size());
  auto index = torch::empty({2, nnz}, torch::kInt64);
  std::copy(rows.begin(), rows.end(), index.data_ptr<std::int64_t>());
  std::copy(cols.begin(), cols.end(), index.data_ptr<std::int64_t>() + nnz);
  auto values = torch::from_blob(vals.data(), {nnz}, torch::kFloat32).clone();
  return torch::sparse_coo_tensor(index, values, {static_cast<std::int64_t>(texts.size()), m.vocabulary()})
      .coalesce();
}

// --- save / load -------------------------------------------------------------------------------------------

void TfidfLsaEncoder::save(const fs::path& dir) const {
  if (!model_) throw Error("tfidf: save() called before fit()");
  const Model& m = *model_;
  fs::create_directories(dir);
  std::error_code ec;
  fs::remove(dir / "encoder.json", ec);  // a directory being rewritten is never mistaken for a finished one
  {
    AtomicFile vocab(dir / "vocabulary.tsv");
    std::string buf;
    for (std::size_t c = 0; c < m.terms.size(); ++c) {
      buf.clear();
      fmt::format_to(std::back_inserter(buf), "{}\t{}\t{}\n", m.kinds[c], m.df[c], m.terms[c]);
      vocab.write(buf);
    }
    vocab.commit();
  }
  write_npy(dir / "idf.npy", m.idf.data(), {m.vocabulary()});
  write_npy(dir / "projection.npy", m.projection.data_ptr<float>(), {m.vocabulary(), m.dim()});
  write_npy(dir / "singular_values.npy", m.singular.data(), {m.dim()});
  nlohmann::json meta = {{"kind", "tfidf"},
                         {"format", kFormatVersion},
                         {"name", name()},
                         {"options", options_json(options_)},
                         {"dim", m.dim()},
                         {"vocabulary", m.vocabulary()},
                         {"char_features", m.n_char},
                         {"documents", m.n_docs},
                         {"fit_seconds", m.fit_seconds}};
  write_file_atomically(dir / "encoder.json", meta.dump(2) + "\n");
}

std::unique_ptr<TfidfLsaEncoder> TfidfLsaEncoder::load(const fs::path& dir) {
  const auto meta_file = dir / "encoder.json";
  std::ifstream in(meta_file);
  if (!in) throw InputError(meta_file.string(), 0, "", "cannot open (not a saved encoder directory?)");
  nlohmann::json meta;
  TfidfLsaOptions o;
  std::int64_t dim = 0, vocab = 0, n_docs = 0;
  try {
    meta = nlohmann::json::parse(in);
    if (meta.at("kind").get<std::string>() != "tfidf")
      throw InputError(meta_file.string(), 0, "kind", "not a tfidf encoder: " + meta.at("kind").dump());
    if (meta.at("format").get<int>() != kFormatVersion)
      throw InputError(meta_file.string(), 0, "format", "unsupported format " + meta.at("format").dump());
    const auto& j = meta.at("options");
    o.dim = j.at("dim");
    o.word_ngram_max = j.at("word_ngram_max");
    o.char_ngram_min = j.at("char_ngram_min");
    o.char_ngram_max = j.at("char_ngram_max");
    o.word_min_df = j.at("word_min_df");
    o.char_min_df = j.at("char_min_df");
    o.max_features = j.at("max_features");
    o.word_weight = j.at("word_weight");
    o.oversample = j.at("oversample");
    o.power_iterations = j.at("power_iterations");
    o.seed = j.at("seed");
    o.threads = j.at("threads");
    o.normalize = j.at("normalize");
    dim = meta.at("dim");
    vocab = meta.at("vocabulary");
    n_docs = meta.at("documents");
  } catch (const nlohmann::json::exception& e) {
    throw InputError(meta_file.string(), 0, "", std::string("bad encoder metadata: ") + e.what());
  }
  auto enc = std::make_unique<TfidfLsaEncoder>(o);
  auto m = std::make_unique<Model>();
  m->n_docs = n_docs;

  const auto vocab_file = dir / "vocabulary.tsv";
  std::ifstream vin(vocab_file, std::ios::binary);
  if (!vin) throw InputError(vocab_file.string(), 0, "", "cannot open");
  std::string line;
  std::size_t lineno = 0;
  while (std::getline(vin, line)) {
    ++lineno;
    const auto t1 = line.find('\t');
    const auto t2 = t1 == std::string::npos ? t1 : line.find('\t', t1 + 1);
    if (t1 != 1 || t2 == std::string::npos || (line[0] != kCharKind && line[0] != kWordKind))
      throw InputError(vocab_file.string(), lineno, "", "expected 'c|w <TAB> df <TAB> term'");
    if (line[0] == kCharKind && !m->kinds.empty() && m->kinds.back() == kWordKind)
      throw InputError(vocab_file.string(), lineno, "kind", "character n-grams must come before words");
    m->kinds.push_back(line[0]);
    m->df.push_back(std::strtoll(line.c_str() + t1 + 1, nullptr, 10));
    m->terms.push_back(line.substr(t2 + 1));
    if (line[0] == kCharKind) ++m->n_char;
  }
  if (m->vocabulary() != vocab)
    throw InputError(vocab_file.string(), 0, "", fmt::format("{} terms, encoder.json says {}", m->vocabulary(), vocab));

  auto idf = read_npy_float32(dir / "idf.npy");
  if (idf.shape != std::vector<std::int64_t>{vocab})
    throw InputError((dir / "idf.npy").string(), 0, "shape", fmt::format("expected ({},)", vocab));
  m->idf = std::move(idf.data);
  const auto proj_file = dir / "projection.npy";
  const auto ph = read_npy_header(proj_file);
  if (ph.shape != std::vector<std::int64_t>{vocab, dim})
    throw InputError(proj_file.string(), 0, "shape", fmt::format("expected ({}, {})", vocab, dim));
  m->projection = torch::empty({vocab, dim}, torch::kFloat32);
  read_npy_data(proj_file, ph, NpyDtype::kFloat32, m->projection.data_ptr<float>());
  auto sv = read_npy_float32(dir / "singular_values.npy");
  if (sv.shape != std::vector<std::int64_t>{dim})
    throw InputError((dir / "singular_values.npy").string(), 0, "shape", fmt::format("expected ({},)", dim));
  m->singular = std::move(sv.data);
  m->fit_seconds = meta.value("fit_seconds", 0.0);
  m->build_index(enc->options_);
  enc->model_ = std::move(m);
  return enc;
}

}  // namespace llm4sbr::embed
