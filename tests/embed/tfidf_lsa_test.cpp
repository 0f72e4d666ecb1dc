#include "llm4sbr/embed/tfidf_lsa.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <random>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/core/error.hpp"
#include "llm4sbr/data/prepare.hpp"
#include "llm4sbr/data/readers.hpp"
#include "llm4sbr/embed/text_encoder.hpp"
#include "llm4sbr/intent/intents.hpp"
#include "llm4sbr/intent/localizer.hpp"
#include "test_support.hpp"

namespace llm4sbr::embed {
namespace {

using llm4sbr::testing::data_dir;
using llm4sbr::testing::TempDir;
namespace fs = std::filesystem;

std::vector<std::string> toy_titles() {
  return {"Macadamia Oil Nourishing Leave-In Cream, 10 ounces Bottle",
          "Nourishing Leave-In Cream by Macadamia for Unisex Cream, 2 Ounce",
          "Macadamia Oil Rejuvenating Shampoo, 10 ounces Bottle",
          "100% Pure Pink Grapefruit Nourishing Body Cream (8 oz Tube)",
          "Mizani Moisturizing Leave-In Milk, D'tangle, 8.5 Ounce",
          "Beauty Flawless Makeup Blender Sponge Puff (size 1)",
          "Hot Tools Big Bumper Spring Curling Iron, 1-1/2",
          "10 Color Makeup Cosmetic Blush Blusher",
          "Versace Bright Crystal Eau de Toilette Spray for Women, 3 Ounce",
          "Prada Candy By Prada Eau De Parfum Spray 1.7 Oz For Women",
          "Avalon Biotin B-Complex Thickening Conditioner, 14 Ounce",
          "Xtreme Brite Brightening Gel 1oz.",
          ""};
}

/// 300 random "titles" over a 60-word vocabulary (a corpus with a slowly decaying spectrum).
std::vector<std::string> random_titles(std::size_t n, std::uint64_t seed) {
  std::vector<std::string> words;
  for (int w = 0; w < 60; ++w) {
    std::string s;
    for (int c = 0; c < 3 + w % 5; ++c) s.push_back(static_cast<char>('a' + (w * 7 + c * 3) % 26));
    words.push_back(s + std::to_string(w % 10));
  }
  std::mt19937_64 rng(seed);
  std::vector<std::string> out;
  for (std::size_t i = 0; i < n; ++i) {
    std::string t;
    const auto len = 3 + rng() % 6;
    for (std::size_t k = 0; k < len; ++k) t += words[rng() % (k == 0 ? 10 : words.size())] + " ";
    out.push_back(t);
  }
  return out;
}

TfidfLsaOptions small(std::int64_t dim) {
  TfidfLsaOptions o;
  o.dim = dim;
  return o;
}

TEST(TfidfLsa, WordAndCharWbFeatures) {
  TfidfLsaOptions o = small(2);
  o.char_min_df = 1;
  TfidfLsaEncoder enc(o);
  enc.fit({"Leave-In Cream", "leave in CREAM 10oz x"});
  const auto names = enc.feature_names();
  auto has = [&](const std::string& f) { return std::find(names.begin(), names.end(), f) != names.end(); };
  EXPECT_TRUE(has("w:leave"));
  EXPECT_TRUE(has("w:leave in"));  // "Leave-In" and "leave in" give the same words
  EXPECT_TRUE(has("w:in cream"));
  EXPECT_TRUE(has("w:10oz"));
  EXPECT_FALSE(has("w:x"));        // tokens need 2 bytes
  EXPECT_FALSE(has("w:10oz x"));   // ... and bigrams are made of tokens only
  EXPECT_TRUE(has("c: le"));
  EXPECT_TRUE(has("c:leave"));
  EXPECT_TRUE(has("c:eave "));
  EXPECT_TRUE(has("c: in"));       // " in ": n = 3 gives " in" and "in ", n = 4 the whole padded word
  EXPECT_TRUE(has("c:in "));
  EXPECT_TRUE(has("c: in "));
  EXPECT_TRUE(has("c: x "));       // shorter than every n: itself, once
  EXPECT_TRUE(has("c: 10oz"));
  EXPECT_TRUE(has("c:10oz "));
  EXPECT_FALSE(has("c: 10oz "));   // 6 code points > 5
  EXPECT_EQ(enc.vocabulary_size(), static_cast<std::int64_t>(names.size()));
  // Columns: character n-grams first, then words, each sorted.
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
}

TEST(TfidfLsa, RowsAreUnitOrZeroAndBatchIndependent) {
  TfidfLsaEncoder enc(small(6));
  const auto titles = toy_titles();
  enc.fit(titles);
  EXPECT_EQ(enc.dim(), 6);
  const std::vector<std::string> queries{"Macadamia Oil Leave In Cream 10oz", "", "zzzz qqqq", "blush", "!!! ..."};
  const auto e = enc.encode(queries);
  ASSERT_EQ(e.sizes(), (std::vector<std::int64_t>{5, 6}));
  const auto norms = e.norm(2, 1);
  EXPECT_NEAR(norms[0].item<float>(), 1.0f, 1e-5);
  EXPECT_EQ(norms[1].item<float>(), 0.0f) << "empty text";
  EXPECT_EQ(norms[2].item<float>(), 0.0f) << "only unknown n-grams";
  EXPECT_NEAR(norms[3].item<float>(), 1.0f, 1e-5);
  EXPECT_EQ(norms[4].item<float>(), 0.0f) << "no word at all";
  // Each row depends on its text only.
  for (std::size_t i = 0; i < queries.size(); ++i)
    EXPECT_TRUE(torch::equal(enc.encode({queries[i]})[0], e[static_cast<std::int64_t>(i)])) << i;
  // The catalogue's empty title is a zero row as well.
  const auto cat = enc.encode(titles);
  EXPECT_EQ(cat[static_cast<std::int64_t>(titles.size() - 1)].norm().item<float>(), 0.0f);
}

// A row's columns come out in increasing order with the bitmap cleared, whether they are few (sorted) or many
// (read off the bitmap): 20,000 columns are 313 words, so up to 39 columns sort. Columns in the first and last
// words of the bitmap included.
TEST(TfidfLsa, MarkedColumnsComeOutSortedAndTheBitmapCleared) {
  const std::int32_t vocabulary = 20000;
  std::vector<std::uint64_t> seen((vocabulary + 63) / 64, 0);
  std::mt19937 rng(7);
  for (const std::size_t count : {0, 1, 2, 38, 39, 40, 500, 20000}) {
    std::vector<std::int32_t> all(vocabulary);
    for (std::int32_t c = 0; c < vocabulary; ++c) all[static_cast<std::size_t>(c)] = c;
    std::swap(all[1], all.back());  // 0 and the last column first, then the others shuffled
    std::shuffle(all.begin() + 2, all.end(), rng);
    std::vector<std::int32_t> cols(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(count));
    std::shuffle(cols.begin(), cols.end(), rng);  // in the order first counted
    for (const auto c : cols) seen[static_cast<std::size_t>(c) / 64] |= std::uint64_t{1} << (c % 64);
    auto want = cols;
    std::sort(want.begin(), want.end());
    detail::sort_marked_columns(cols, seen);
    EXPECT_EQ(cols, want) << count << " columns";
    EXPECT_TRUE(std::all_of(seen.begin(), seen.end(), [](std::uint64_t w) { return w == 0; })) << count << " columns";
  }
}

// A vocabulary word's character n-grams are read from a table built at fit/load time; any other word's are
// extracted from the text. Both must count the same columns the same number of times: with word_min_df = 1
// every word below is a vocabulary word, with word_min_df = 9 none is, and the character vocabulary (and its
// idf) is the same in both, so the character blocks of the rows must match up to their scale. The text has a
// repeated word, a word of one byte (never a word feature), multi-byte code points and one unknown word.
TEST(TfidfLsa, AVocabularyWordsCharacterNgramsAreTheExtractedOnes) {
  const std::vector<std::string> corpus{"Leave-In Crème Brûlée, leave x", "Oil crème for hair", "x leave oil 10oz"};
  const std::string text = "leave LEAVE-in crème oil x brûlée 10oz zzyzx";
  std::vector<torch::Tensor> char_blocks;
  for (const std::int64_t word_min_df : {1, 9}) {
    TfidfLsaOptions o = small(2);
    o.char_min_df = 1;
    o.word_min_df = word_min_df;
    TfidfLsaEncoder enc(o);
    enc.fit(corpus);
    const auto names = enc.feature_names();
    const auto n_char = std::count_if(names.begin(), names.end(), [](const std::string& f) { return f.rfind("c:", 0) == 0; });
    EXPECT_EQ(n_char == static_cast<std::int64_t>(names.size()), word_min_df == 9) << "words in the vocabulary";
    const auto block = enc.tfidf({text}).to_dense()[0].slice(0, 0, n_char).to(torch::kFloat64);
    char_blocks.push_back(block / block.norm());
  }
  ASSERT_EQ(char_blocks[0].size(0), char_blocks[1].size(0));
  EXPECT_TRUE(torch::equal(char_blocks[0] != 0, char_blocks[1] != 0)) << "the same character n-grams";
  EXPECT_TRUE(torch::allclose(char_blocks[0], char_blocks[1], 1e-6, 1e-7)) << "counted as often";
}

TEST(TfidfLsa, DeterministicForASeedAndAnyThreadCount) {
  const auto corpus = random_titles(400, 1);
  TfidfLsaOptions o = small(16);
  o.threads = 1;
  TfidfLsaEncoder a(o);
  a.fit(corpus);
  o.threads = 2;
  TfidfLsaEncoder b(o);
  b.fit(corpus);
  const auto ea = a.encode(corpus);
  EXPECT_TRUE(torch::equal(ea, b.encode(corpus)));
  o.threads = 0;
  TfidfLsaEncoder c(o);
  c.fit(corpus);
  EXPECT_TRUE(torch::equal(ea, c.encode(corpus)));
  // Another seed is another random start: with enough power iterations the same subspace, so the
  // same cosine geometry (this corpus has a flat spectrum, the hardest case for the range finder).
  o.power_iterations = 12;
  o.oversample = 20;
  TfidfLsaEncoder d(o);
  d.fit(corpus);
  o.seed = 99;
  TfidfLsaEncoder e(o);
  e.fit(corpus);
  const auto ed = d.encode(corpus);
  const auto ee = e.encode(corpus);
  EXPECT_FALSE(torch::equal(ed, ee));
  EXPECT_LT((ed.mm(ed.t()) - ee.mm(ee.t())).abs().mean().item<float>(), 0.01f);
}

/// Singular values of a sparse matrix, largest first, through the eigenvalues of X Xᵀ in float64
/// (sparse times dense: cheap for a few thousand rows).
torch::Tensor exact_singular_values(const torch::Tensor& sparse) {
  const auto xs = sparse.to(torch::kFloat64);
  const auto gram = torch::mm(xs, xs.to_dense().t().contiguous());
  return std::get<0>(torch::sort(torch::linalg_eigvalsh(gram).clamp_min(0).sqrt(), 0, true));
}

TEST(TfidfLsa, RandomizedSvdConvergesToTheExactSvd) {
  // A flat spectrum needs many power iterations; with them every value must be exact.
  const auto corpus = random_titles(300, 2);
  TfidfLsaOptions o = small(24);
  o.normalize = false;
  o.power_iterations = 12;
  o.oversample = 20;
  TfidfLsaEncoder enc(o);
  enc.fit(corpus);
  const auto xs = enc.tfidf(corpus);
  const auto x = xs.to_dense();
  ASSERT_EQ(x.size(1), enc.vocabulary_size());
  EXPECT_LT((x.norm(2, 1) - 1).abs().max().item<float>(), 1e-5f) << "TF-IDF rows are unit vectors";
  const auto exact = exact_singular_values(xs);
  const auto fitted = enc.singular_values();
  ASSERT_EQ(fitted.size(), 24u);
  for (std::size_t i = 0; i < fitted.size(); ++i) {
    const double want = exact[static_cast<std::int64_t>(i)].item<double>();
    EXPECT_NEAR(fitted[i], want, 1e-3 * want) << "singular value " << i;
  }
  // Unnormalised encodings are X P with P the top right singular vectors: energy = Σ σ².
  const auto xp = enc.encode(corpus).to(torch::kFloat64);
  EXPECT_EQ(xp.size(1), 24);
  double energy = 0;
  for (const auto s : fitted) energy += static_cast<double>(s) * s;
  EXPECT_NEAR(xp.pow(2).sum().item<double>(), energy, 1e-3 * energy);
}

TEST(TfidfLsa, SaveLoadRoundTrip) {
  TempDir tmp;
  TfidfLsaEncoder enc(small(8));
  enc.fit(toy_titles());
  enc.save(tmp / "enc");
  EXPECT_TRUE(fs::exists(tmp / "enc" / "encoder.json"));
  const auto loaded = load_text_encoder(tmp / "enc");
  EXPECT_EQ(loaded->name(), enc.name());
  EXPECT_EQ(loaded->dim(), enc.dim());
  const std::vector<std::string> q{"Macadamia Oil Leave In Cream 10oz", "pink grapefruit body cream", ""};
  EXPECT_TRUE(torch::equal(loaded->encode(q), enc.encode(q)));
  // A directory without encoder.json (e.g. an interrupted save) is not an encoder.
  fs::remove(tmp / "enc" / "encoder.json");
  EXPECT_THROW(load_text_encoder(tmp / "enc"), InputError);
}

TEST(TfidfLsa, FactoryReadsSettingsAndRejectsUnknownSpecs) {
  const Config settings = Config::parse("tfidf:\n  dim: 12\n  seed: 7\n  max_features: 5000\n");
  auto enc = make_text_encoder("tfidf", settings);
  auto* tfidf = dynamic_cast<TfidfLsaEncoder*>(enc.get());
  ASSERT_NE(tfidf, nullptr);
  EXPECT_EQ(tfidf->options().dim, 12);
  EXPECT_EQ(tfidf->options().seed, 7u);
  EXPECT_EQ(tfidf->options().max_features, 5000);
  EXPECT_FALSE(enc->fitted());
  EXPECT_THROW(enc->encode({"x"}), Error);
  try {
    make_text_encoder("bert", settings);
    FAIL() << "no ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("tfidf"), std::string::npos) << e.what();
  }
  EXPECT_THROW(make_text_encoder("tfidf", Config::parse("tfidf: {dim: 0}")), ConfigError);
}

TEST(TfidfLsa, MaxFeaturesCapsTheVocabulary) {
  TfidfLsaOptions o = small(4);
  o.max_features = 50;
  TfidfLsaEncoder enc(o);
  enc.fit(random_titles(200, 3));
  EXPECT_EQ(enc.vocabulary_size(), 50);
  EXPECT_THROW(TfidfLsaEncoder(small(4)).fit({"", "!", "a"}), InputError);
}

// --- real Beauty titles -------------------------------------------------------------------------------------

const data::PreparedDataset& prepared_beauty() {
  static const data::PreparedDataset ds = [] {
    const auto cfg = Config::load(fs::path(LLM4SBR_SOURCE_DIR) / "configs" / "beauty.yaml");
    const auto raw = data::read_dataset("beauty", data_dir() / data::dataset_folder("beauty"));
    return data::prepare(raw, data::prepare_options_from_config(cfg));
  }();
  return ds;
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

TEST(TfidfLsaBeauty, HallucinatedTitleLocalizesToMacadamiaItems) {
  LLM4SBR_REQUIRE_DATA("amazon-beauty-2014");
  const auto& ds = prepared_beauty();
  ASSERT_GT(ds.n_items(), 12000);
  std::vector<std::string> titles;
  for (const auto& it : ds.items) titles.push_back(it.title);
  TfidfLsaEncoder enc;  // the defaults: d 256
  enc.fit(titles);
  std::printf("tfidf fit on %lld Beauty titles: %.2f s, vocabulary %lld, d %lld\n",
              static_cast<long long>(titles.size()), enc.fit_seconds(), static_cast<long long>(enc.vocabulary_size()),
              static_cast<long long>(enc.dim()));
  EXPECT_EQ(enc.dim(), 256);
  EXPECT_LT(enc.fit_seconds(), 60.0);

  const auto catalogue = intent::catalogue_embeddings(ds, enc);
  const auto query = enc.encode({"Macadamia Oil Leave In Cream 10oz"});
  const auto loc = intent::localize(query, catalogue, 5);
  int macadamia = 0;
  for (std::int64_t j = 0; j < 5; ++j) {
    const auto id = loc.ids[0][j].item<std::int64_t>();
    const auto& title = ds.items[static_cast<std::size_t>(id - 1)].title;
    std::printf("  %lld  %.3f  %s\n", static_cast<long long>(id), loc.scores[0][j].item<float>(), title.c_str());
    macadamia += lower(title).find("macadamia") != std::string::npos;
  }
  EXPECT_NE(lower(ds.items[static_cast<std::size_t>(loc.ids[0][0].item<std::int64_t>() - 1)].title).find("macadamia"),
            std::string::npos);
  EXPECT_GE(macadamia, 3);
  // On real titles the default range finder (oversample 10, 3 power iterations) finds the leading
  // singular values to about a percent and captures nearly all the energy of the exact top-d subspace.
  {
    const std::vector<std::string> part(titles.begin(), titles.begin() + 1500);
    const auto x = [&] {
      TfidfLsaEncoder probe(TfidfLsaOptions{});
      probe.fit(part);
      return probe.tfidf(part);
    }();
    const auto exact = exact_singular_values(x);
    for (const std::int64_t iters : {3}) {  // 2: 2.7e-2 / 0.964; 4: 4.9e-3 / 0.989; 6: 8e-4 / 0.995
      TfidfLsaOptions o;
      o.dim = 64;
      o.power_iterations = iters;
      TfidfLsaEncoder small_enc(o);
      small_enc.fit(part);
      const auto fitted = small_enc.singular_values();
      double worst_top = 0, worst = 0, energy = 0, exact_energy = 0;
      for (std::size_t i = 0; i < fitted.size(); ++i) {
        const double want = exact[static_cast<std::int64_t>(i)].item<double>();
        const double rel = std::abs(fitted[i] - want) / want;
        if (i < 32) worst_top = std::max(worst_top, rel);
        worst = std::max(worst, rel);
        energy += static_cast<double>(fitted[i]) * fitted[i];
        exact_energy += want * want;
      }
      std::printf("1500 Beauty titles, d 64, %lld power iterations: worst relative singular value error %.2e (top 32), "
                  "%.2e (all); energy captured %.4f; fit %.2f s\n",
                  static_cast<long long>(iters), worst_top, worst, energy / exact_energy, small_enc.fit_seconds());
      if (iters == 3) {
        EXPECT_LT(worst_top, 3e-2);
        EXPECT_LT(worst, 1e-1);
        EXPECT_GT(energy / exact_energy, 0.97);
      }
    }
  }
  // Encoding the catalogue again gives the same rows (the fit's own embedding path is encode()).
  EXPECT_TRUE(torch::equal(enc.encode({titles[0], titles[1]}), catalogue.slice(0, 0, 2)));
}

}  // namespace
}  // namespace llm4sbr::embed
