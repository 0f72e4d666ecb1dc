#include "llm4sbr/intent/intents.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <limits>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/core/error.hpp"
#include "llm4sbr/core/npy.hpp"
#include "llm4sbr/data/prepare.hpp"
#include "llm4sbr/data/readers.hpp"
#include "llm4sbr/embed/tfidf_lsa.hpp"
#include "llm4sbr/intent/localizer.hpp"
#include "llm4sbr/intent/titles_source.hpp"
#include "test_support.hpp"

namespace llm4sbr::intent {
namespace {

using llm4sbr::testing::data_dir;
using llm4sbr::testing::TempDir;
namespace fs = std::filesystem;

/// Five items (one without a title) and three samples.
data::PreparedDataset toy_dataset() {
  data::PreparedDataset ds;
  ds.name = "toy";
  const std::vector<std::string> titles{"Macadamia Oil Nourishing Leave-In Cream", "Macadamia Oil Shampoo", "",
                                        "Pink Grapefruit Body Cream", "Blush Blusher Makeup Palette"};
  for (std::size_t k = 0; k < titles.size(); ++k)
    ds.items.push_back({static_cast<std::int64_t>(k + 1), "raw" + std::to_string(k), titles[k]});
  ds.sessions.push_back({"u1", {1, 2, 3, 4}, 0});
  ds.train = {{0, 0, {1, 2, 3}, 4}, {1, 0, {1, 2}, 3}, {2, 0, {3}, 2}};
  return ds;
}

std::vector<std::string> read_lines(const fs::path& p) {
  std::ifstream in(p);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

TEST(TitlesSource, ViewTexts) {
  const auto ds = toy_dataset();
  const auto long_texts = view_texts(ds, ds.train, "long");
  EXPECT_EQ(long_texts, (std::vector<std::string>{"Macadamia Oil Nourishing Leave-In Cream; Macadamia Oil Shampoo",
                                                  "Macadamia Oil Nourishing Leave-In Cream; Macadamia Oil Shampoo",
                                                  ""}));
  EXPECT_EQ(view_texts(ds, ds.train, "normal"), long_texts);
  EXPECT_EQ(view_texts(ds, ds.train, "short"),
            (std::vector<std::string>{"", "Macadamia Oil Shampoo", ""}));  // item 3 has no title
  EXPECT_THROW(view_texts(ds, ds.train, "medium"), ConfigError);
  auto bad = ds.train;
  bad[1].prefix = {1, 9};
  EXPECT_THROW(view_texts(ds, bad, "long"), InputError);
}

std::unique_ptr<embed::TfidfLsaEncoder> fitted_toy_encoder(const data::PreparedDataset& ds) {
  embed::TfidfLsaOptions o;
  o.dim = 4;
  o.char_min_df = 1;
  auto enc = std::make_unique<embed::TfidfLsaEncoder>(o);
  std::vector<std::string> titles;
  for (const auto& it : ds.items) titles.push_back(it.title);
  enc->fit(titles);
  return enc;
}

TEST(Intents, WritesIntentsRecordsAndDoneLast) {
  TempDir tmp;
  const auto ds = toy_dataset();
  auto enc_ptr = fitted_toy_encoder(ds);
  auto& enc = *enc_ptr;
  const auto catalogue = catalogue_embeddings(ds, enc);
  EXPECT_EQ(catalogue[2].abs().max().item<float>(), 0.0f) << "the untitled item has a zero row";
  IntentsOptions opt;
  opt.r = 2;
  opt.key = "abc123";
  const auto sum = write_intents(tmp / "intents", ds, ds.train, titles_text_source(ds), enc, catalogue, opt);
  EXPECT_EQ(sum.samples, 3);
  EXPECT_EQ(sum.texts, 6);
  EXPECT_EQ(sum.distinct_texts, 3);  // "A; B", "", "B"
  EXPECT_EQ(sum.zero_texts, 1);
  ASSERT_TRUE(intents_done(tmp / "intents"));
  EXPECT_TRUE(intents_ready(tmp / "intents", "abc123"));
  EXPECT_FALSE(intents_ready(tmp / "intents", "other"));

  const auto intents = read_intents(tmp / "intents");
  ASSERT_EQ(intents.sizes(), (std::vector<std::int64_t>{3, 2, 4}));
  // Each intent is Eq. 5 applied to the encoded view text.
  const auto index = make_faiss_localizer(catalogue);
  for (const std::string view : {"long", "short"}) {
    const auto v = view == "long" ? 0 : 1;
    const auto want = localize(*index, enc.encode(view_texts(ds, ds.train, view)), 2).intents;
    EXPECT_TRUE(torch::allclose(intents.select(1, v), want, 1e-6, 1e-6)) << view;
  }
  EXPECT_EQ(intents[0][1].abs().max().item<float>(), 0.0f) << "empty short text -> zero intent";

  const auto lines = read_lines(tmp / "intents" / "localization.jsonl");
  ASSERT_EQ(lines.size(), 6u);
  const auto rec = nlohmann::json::parse(lines[2]);  // sample 1, long
  EXPECT_EQ(rec.at("sample"), 1);
  EXPECT_EQ(rec.at("view"), "long");
  EXPECT_EQ(rec.at("text"), "Macadamia Oil Nourishing Leave-In Cream; Macadamia Oil Shampoo");
  ASSERT_EQ(rec.at("items").size(), 2u);
  for (const auto& id : rec.at("items")) EXPECT_NE(id.get<std::int64_t>(), 3) << "untitled items are never hits";
  EXPECT_EQ(rec.at("titles")[0], ds.items[rec.at("items")[0].get<std::size_t>() - 1].title);
  EXPECT_GE(rec.at("scores")[0].get<double>(), rec.at("scores")[1].get<double>());
  EXPECT_TRUE(nlohmann::json::parse(lines[1]).at("items").empty()) << "zero text: no items";

  const auto done = *intents_done(tmp / "intents");
  EXPECT_EQ(done.at("shape"), nlohmann::json({3, 2, 4}));
  EXPECT_EQ(done.at("r"), 2);
  EXPECT_EQ(done.at("views"), nlohmann::json({"long", "short"}));
}

/// The toy dataset's intents (r = 2) written by the one-step stage into `dir`, with what made them.
struct ToyStage {
  data::PreparedDataset ds = toy_dataset();
  std::unique_ptr<embed::TfidfLsaEncoder> enc = fitted_toy_encoder(ds);
  torch::Tensor catalogue = catalogue_embeddings(ds, *enc);
  IntentsOptions opt = [] {
    IntentsOptions o;
    o.r = 2;
    return o;
  }();
  explicit ToyStage(const fs::path& dir) { write_intents(dir, ds, ds.train, titles_text_source(ds), *enc, catalogue, opt); }
};

TEST(Intents, EncodeThenLocalizeInTwoStepsEqualsTheOneStepStage) {
  // `llm4sbr encode` + `llm4sbr localize` write through files what write_intents does in memory.
  TempDir tmp;
  const ToyStage toy(tmp / "one");
  const auto& [ds, enc, catalogue, opt] = toy;

  const auto encoded = encode_view_texts(ds, ds.train, titles_text_source(ds), *enc, opt);
  EXPECT_EQ(encoded.distinct.size(), 3u);
  save_encoded_texts(tmp / "enc", encoded);
  save_catalogue(tmp / "catalogue.npy", catalogue);
  const auto loaded = load_encoded_texts(tmp / "enc");
  EXPECT_EQ(loaded.distinct, encoded.distinct);
  EXPECT_EQ(loaded.text_index, encoded.text_index);
  EXPECT_EQ(loaded.sample_ids, encoded.sample_ids);
  EXPECT_TRUE(torch::equal(loaded.embeddings, encoded.embeddings));
  localize_texts(tmp / "two", ds, loaded, load_catalogue(tmp / "catalogue.npy"), opt);

  EXPECT_TRUE(torch::equal(read_intents(tmp / "one"), read_intents(tmp / "two")));
  EXPECT_EQ(read_lines(tmp / "one" / "localization.jsonl"), read_lines(tmp / "two" / "localization.jsonl"));

  // An unfinished or mixed-up encode directory is refused with the file named.
  fs::remove(tmp / "enc" / "encoded.json");
  EXPECT_THROW(load_encoded_texts(tmp / "enc"), InputError);
  save_encoded_texts(tmp / "enc", encoded);
  std::ofstream(tmp / "enc" / "texts.jsonl", std::ios::app) << "\"one text too many\"\n";
  EXPECT_THROW(load_encoded_texts(tmp / "enc"), InputError);
}

TEST(Intents, InMemoryIntentsEqualWhatTheFileStageWrites) {
  // The online service turns texts into intents without files; it must give what training read.
  TempDir tmp;
  const ToyStage toy(tmp / "stage");
  const auto& [ds, enc, catalogue, opt] = toy;
  const auto index = catalogue_index(catalogue, opt.localizer);
  const auto memory = intents_in_memory(ds, ds.train, titles_text_source(ds), *enc, *index, opt);
  EXPECT_TRUE(torch::equal(memory.intents, read_intents(tmp / "stage")));
  EXPECT_EQ(memory.localized.r, 2);
  EXPECT_EQ(memory.texts.distinct.size(), 3u);
  // One sample at a time (a request) gives that sample's rows.
  const auto one = intents_in_memory(ds, {ds.train[1]}, titles_text_source(ds), *enc, *index, opt);
  EXPECT_TRUE(torch::allclose(one.intents[0], memory.intents[1], 1e-6, 1e-6));
}

/// The toy stage with its index and every catalogue title precomputed, as the service keeps them.
struct ToyWithTitles {
  TempDir tmp;
  ToyStage toy{tmp / "stage"};
  std::unique_ptr<IntentLocalizer> index = catalogue_index(toy.catalogue, toy.opt.localizer);
  PrecomputedTexts titles = [this] {
    std::vector<data::Sample> one_click;
    for (const auto& item : toy.ds.items) one_click.push_back({item.id, 0, {item.id}, item.id});
    return precompute_texts(view_texts(toy.ds, one_click, "short"), *toy.enc, *index, toy.opt);
  }();
};

// The service looks every catalogue title up instead of encoding and localizing it again: a request's intents
// must be the ones computed in full, whether none, some or all of its texts are known.
TEST(Intents, PrecomputedTextsGiveTheIntentsComputedInFull) {
  const ToyWithTitles t;
  const auto& [ds, enc, catalogue, opt] = t.toy;
  const auto& index = t.index;
  const auto& titles = t.titles;
  const auto unrelated = precompute_texts({"Argan oil hair mask"}, *enc, *index, opt);
  const auto all_train = precompute_texts(encode_view_texts(ds, ds.train, titles_text_source(ds), *enc, opt).distinct,
                                          *enc, *index, opt);
  const auto full = intents_in_memory(ds, ds.train, titles_text_source(ds), *enc, *index, opt);
  // The train texts are "A; B" (not a title), "" (the untitled item's) and "B": some known, none, all.
  for (const auto* known : {&titles, &unrelated, &all_train}) {
    const auto got = intents_in_memory(ds, ds.train, titles_text_source(ds), *enc, *index, opt, known);
    EXPECT_EQ(got.texts.distinct, full.texts.distinct);
    EXPECT_EQ(got.texts.text_index, full.texts.text_index);
    EXPECT_EQ(got.texts.zero_texts, full.texts.zero_texts);
    EXPECT_TRUE(torch::allclose(got.texts.embeddings, full.texts.embeddings, 1e-6, 1e-6));
    EXPECT_TRUE(torch::equal(got.localized.distinct.ids, full.localized.distinct.ids));
    EXPECT_TRUE(torch::allclose(got.localized.distinct.scores, full.localized.distinct.scores, 1e-6, 1e-6));
    EXPECT_TRUE(torch::allclose(got.intents, full.intents, 1e-6, 1e-6));
    EXPECT_EQ(got.localized.r, full.localized.r);
  }
  EXPECT_EQ(titles.row_of.size(), ds.items.size()) << "each title once";
  EXPECT_EQ(titles.embeddings.size(0), static_cast<std::int64_t>(ds.items.size()));
}

/// The toy encoder, but one text embeds to NaN.
class PoisonedEncoder final : public embed::TextEncoder {
 public:
  PoisonedEncoder(embed::TextEncoder& inner, std::string poisoned) : inner_(inner), poisoned_(std::move(poisoned)) {}
  torch::Tensor encode(const std::vector<std::string>& texts) override {
    auto e = inner_.encode(texts);
    for (std::size_t i = 0; i < texts.size(); ++i)
      if (texts[i] == poisoned_) e[static_cast<std::int64_t>(i)].fill_(std::numeric_limits<float>::quiet_NaN());
    return e;
  }
  std::int64_t dim() const override { return inner_.dim(); }
  std::string name() const override { return "poisoned"; }
  void save(const fs::path&) const override {}

 private:
  embed::TextEncoder& inner_;
  std::string poisoned_;
};

// A view text that embeds to NaN is an InputError naming the sample and view that first use it, whether or not
// the request's other texts are precomputed.
TEST(Intents, ATextEmbeddingToNanNamesItsSampleAndView) {
  const ToyWithTitles t;
  const auto& [ds, enc, catalogue, opt] = t.toy;
  const auto& index = t.index;
  const auto& titles = t.titles;
  // Sample 7's texts are a title (known); sample 8's long text is not, and embeds to NaN.
  const std::vector<data::Sample> samples{{7, 0, {4}, 5}, {8, 0, {4, 5}, 1}};
  PoisonedEncoder poisoned(*enc, "Pink Grapefruit Body Cream; Blush Blusher Makeup Palette");
  for (const auto* known : {static_cast<const PrecomputedTexts*>(nullptr), &titles}) {
    try {
      intents_in_memory(ds, samples, titles_text_source(ds), poisoned, *index, opt, known);
      ADD_FAILURE() << "no error";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("toy sample 8"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("view long"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(precompute_texts({"Macadamia Oil Shampoo", "Pink Grapefruit Body Cream; Blush Blusher Makeup Palette"},
                                poisoned, *index, opt),
               InputError);
}

TEST(Intents, InterruptedRunIsNeverMistakenForAFinishedOne) {
  TempDir tmp;
  const auto ds = toy_dataset();
  auto enc_ptr = fitted_toy_encoder(ds);
  auto& enc = *enc_ptr;
  const auto catalogue = catalogue_embeddings(ds, enc);
  IntentsOptions opt;
  write_intents(tmp.path(), ds, ds.train, titles_text_source(ds), enc, catalogue, opt);
  ASSERT_TRUE(intents_done(tmp.path()));
  // A re-run that dies half-way (here: its text source throws for the second view) removes done.json.
  int calls = 0;
  ViewTextSource failing = [&](const std::vector<data::Sample>& s, const std::string& view) {
    if (++calls == 2) throw Error("LLM server went away");
    return view_texts(ds, s, view);
  };
  EXPECT_THROW(write_intents(tmp.path(), ds, ds.train, failing, enc, catalogue, opt), Error);
  EXPECT_FALSE(intents_done(tmp.path()));
  EXPECT_THROW(read_intents(tmp.path()), InputError);
  for (const auto& e : fs::directory_iterator(tmp.path()))
    EXPECT_EQ(e.path().string().find(".tmp."), std::string::npos) << e.path();
  // A source with the wrong number of texts is an error, not a silent misalignment.
  ViewTextSource short_source = [](const std::vector<data::Sample>&, const std::string&) {
    return std::vector<std::string>{"x"};
  };
  EXPECT_THROW(write_intents(tmp.path(), ds, ds.train, short_source, enc, catalogue, opt), Error);
}

TEST(Intents, RZeroWritesTheRawTextEmbeddings) {
  TempDir tmp;
  const auto ds = toy_dataset();
  auto enc_ptr = fitted_toy_encoder(ds);
  auto& enc = *enc_ptr;
  IntentsOptions opt;
  opt.r = 0;
  opt.views = {"short"};
  opt.localizer = "blocked";
  write_intents(tmp.path(), ds, ds.train, titles_text_source(ds), enc, catalogue_embeddings(ds, enc), opt);
  const auto intents = read_intents(tmp.path());
  ASSERT_EQ(intents.sizes(), (std::vector<std::int64_t>{3, 1, 4}));
  EXPECT_TRUE(torch::equal(intents.select(1, 0), enc.encode(view_texts(ds, ds.train, "short"))));
  EXPECT_TRUE(nlohmann::json::parse(read_lines(tmp.path() / "localization.jsonl")[1]).at("items").empty());
}

TEST(Intents, TitlesSourceOnARealBeautySubset) {
  LLM4SBR_REQUIRE_DATA("amazon-beauty-2014");
  auto cfg = Config::load(fs::path(LLM4SBR_SOURCE_DIR) / "configs" / "beauty.yaml");
  cfg.set("data.max_sessions", "400");
  cfg.set("data.min_item_count", "1");  // 400 users of a 5-core dataset: keep every item they touched
  const auto raw = data::read_dataset("beauty", data_dir() / data::dataset_folder("beauty"));
  const auto ds = data::prepare(raw, data::prepare_options_from_config(cfg));
  ASSERT_FALSE(ds.test.empty());
  std::vector<std::string> titles;
  for (const auto& it : ds.items) titles.push_back(it.title);
  embed::TfidfLsaOptions o;
  o.dim = 64;
  embed::TfidfLsaEncoder enc(o);
  enc.fit(titles);
  const auto catalogue = catalogue_embeddings(ds, enc);

  TempDir tmp;
  for (const std::string split : {"train", "test"}) {
    const auto& samples = ds.split(split);
    IntentsOptions opt;
    opt.r = 5;
    const auto sum =
        write_intents(tmp / split, ds, samples, titles_text_source(ds), enc, catalogue, opt);
    const auto intents = read_intents(tmp / split);
    ASSERT_EQ(intents.sizes(), (std::vector<std::int64_t>{static_cast<std::int64_t>(samples.size()), 2, enc.dim()}));
    EXPECT_TRUE(torch::isfinite(intents).all().item<bool>());
    // A sample gets a zero intent exactly when its view text is empty (no titled item in the window).
    bool any_empty = false;
    for (const std::string view : {"long", "short"}) {
      const auto texts = view_texts(ds, samples, view);
      const auto norms = intents.select(1, view == "long" ? 0 : 1).norm(2, 1);
      for (std::size_t s = 0; s < texts.size(); ++s) {
        any_empty |= texts[s].empty();
        EXPECT_EQ(norms[static_cast<std::int64_t>(s)].item<float>() == 0.0f, texts[s].empty()) << split << " " << s;
      }
    }
    EXPECT_EQ(sum.zero_texts, any_empty ? 1 : 0);
    EXPECT_EQ(read_lines(tmp / split / "localization.jsonl").size(), 2 * samples.size());
    // The short view of a sample is its last item's title, which is in the catalogue: that item is a
    // top hit with cosine ~1.
    const auto rec = nlohmann::json::parse(read_lines(tmp / split / "localization.jsonl")[1]);
    EXPECT_EQ(rec.at("view"), "short");
    const auto last = samples[0].prefix.back();
    if (ds.items[static_cast<std::size_t>(last - 1)].title.empty()) continue;
    EXPECT_GT(rec.at("scores")[0].get<double>(), 0.999);
    const auto& top_title = rec.at("titles")[0].get<std::string>();
    EXPECT_EQ(top_title, ds.items[static_cast<std::size_t>(last - 1)].title);
  }
}

}  // namespace
}  // namespace llm4sbr::intent
