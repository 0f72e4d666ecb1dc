// LlamaEncoder: a GGUF embedding model in-process (the tiny random-weight BERT built from the vocab file of
// the llama.cpp source), through make_text_encoder("llama:PATH") and load_text_encoder.
#include "llm4sbr/embed/llama_encoder.hpp"

#include <gtest/gtest.h>

#include "llm4sbr/core/error.hpp"
#include "llm4sbr/embed/text_encoder.hpp"
#include "test_support.hpp"

using namespace llm4sbr;
using llm4sbr::testing::TempDir;

namespace {

std::string bert_spec() { return "llama:" + llm4sbr::testing::tiny_model("tiny-bert-embed.gguf").string(); }

const std::vector<std::string>& sample_texts() {
  static const std::vector<std::string> t = {"Macadamia Oil Nourishing Leave-In Cream, 10 ounces Bottle",
                                             "",
                                             "Beauty Flawless Makeup Blender Sponge Puff (size 1)",
                                             "Macadamia Oil Nourishing Leave-In Cream, 10 ounces Bottle",
                                             "   ",
                                             "Prada Candy By Prada Eau De Parfum Spray 1.7 Oz For Women"};
  return t;
}

}  // namespace

TEST(LlamaEncoder, UnitRowsZeroRowsForEmptyTextsAndDeterminism) {
  auto enc = embed::make_text_encoder(bert_spec(), Config::parse("threads: 2"));
  EXPECT_EQ(enc->dim(), 64);
  EXPECT_TRUE(enc->normalize());
  EXPECT_NE(enc->name().find("tiny-bert-embed.gguf"), std::string::npos);
  const auto e = enc->encode(sample_texts());
  ASSERT_EQ(e.sizes(), (std::vector<std::int64_t>{6, 64}));
  const auto norms = e.norm(2, 1);
  for (int i : {0, 2, 3, 5}) EXPECT_NEAR(norms[i].item<float>(), 1.0f, 1e-5) << i;
  for (int i : {1, 4}) EXPECT_EQ(norms[i].item<float>(), 0.0f) << i;
  EXPECT_TRUE(torch::equal(e[0], e[3]));              // identical texts, identical rows
  EXPECT_LT((e[0] - e[2]).abs().max().item<float>() , 1.0f);
  EXPECT_GT((e[0] - e[2]).abs().max().item<float>(), 1e-3);  // different texts differ
  EXPECT_TRUE(torch::equal(e, enc->encode(sample_texts())));  // the same run twice: the same rows
  // A text alone gets the row it gets in a batch, up to float rounding (a batch of another size takes
  // other matrix kernels: 1.6e-5 seen here).
  EXPECT_LT((enc->encode({sample_texts()[2]})[0] - e[2]).abs().max().item<float>(), 1e-4);
  EXPECT_EQ(enc->encode({}).sizes(), (std::vector<std::int64_t>{0, 64}));
}

TEST(LlamaEncoder, ALongTextIsCutToTheModelContext) {
  auto enc = embed::make_text_encoder(bert_spec(), Config());
  std::string long_text;
  for (int i = 0; i < 400; ++i) long_text += "moisturizing cream ";
  EXPECT_NEAR(enc->encode({long_text}).norm().item<float>(), 1.0f, 1e-5);
}

TEST(LlamaEncoder, SaveAndLoadGiveTheSameEncoder) {
  TempDir tmp;
  auto enc = embed::make_text_encoder(bert_spec(), Config());
  enc->save(tmp / "enc");
  auto loaded = embed::load_text_encoder(tmp / "enc");
  EXPECT_EQ(loaded->dim(), enc->dim());
  EXPECT_TRUE(torch::equal(loaded->encode(sample_texts()), enc->encode(sample_texts())));
}

TEST(LlamaEncoder, MissingFileIsAClearInputError) {
  try {
    embed::make_text_encoder("llama:/nonexistent/bert.gguf", Config());
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_EQ(e.file(), "/nonexistent/bert.gguf");
    EXPECT_NE(std::string(e.what()).find("not found"), std::string::npos) << e.what();
  }
  EXPECT_THROW(embed::make_text_encoder("llama:", Config()), ConfigError);
}
