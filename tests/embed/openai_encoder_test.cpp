// OpenAiEncoder against a real llama-server --embedding with the tiny BERT model: the same embeddings as
// the in-process LlamaEncoder of the same GGUF, batching, empty texts, save/load, and clear failures.
#include "llm4sbr/embed/openai_encoder.hpp"

#include <gtest/gtest.h>

#include "llm/llama_server.hpp"
#include "llm4sbr/core/error.hpp"
#include "llm4sbr/embed/text_encoder.hpp"
#include "test_support.hpp"

using namespace llm4sbr;
using llm4sbr::testing::LlamaServer;
using llm4sbr::testing::TempDir;

namespace {

std::vector<std::string> titles() {
  return {"Macadamia Oil Nourishing Leave-In Cream, 10 ounces Bottle",
          "Nourishing Leave-In Cream by Macadamia for Unisex Cream, 2 Ounce",
          "",
          "Mizani Moisturizing Leave-In Milk, D'tangle, 8.5 Ounce",
          "Beauty Flawless Makeup Blender Sponge Puff (size 1)",
          "Hot Tools Big Bumper Spring Curling Iron, 1-1/2",
          "10 Color Makeup Cosmetic Blush Blusher",
          "Versace Bright Crystal Eau de Toilette Spray for Women, 3 Ounce"};
}

std::unique_ptr<LlamaServer> embedding_server(const TempDir& tmp, const std::string& name) {
  const auto model = llm4sbr::testing::tiny_model("tiny-bert-embed.gguf");
  return std::make_unique<LlamaServer>(model, std::vector<std::string>{"--embedding", "-np", "2", "-c", "1024", "-t", "1"},
                                       tmp / (name + ".log"));
}

}  // namespace

TEST(OpenAiEncoder, EqualsTheInProcessEncoderOfTheSameModel) {
  LLM4SBR_REQUIRE_LLAMA_SERVER();
  TempDir tmp;
  auto a = embedding_server(tmp, "a"), b = embedding_server(tmp, "b");
  auto http = embed::make_text_encoder(fmt::format("openai:{},{}", a->url(), b->url()),
                                       Config::parse("batch: 3\nhttp: {concurrency: 2}"));
  auto local = embed::make_text_encoder("llama:" + llm4sbr::testing::tiny_model("tiny-bert-embed.gguf").string(), Config());
  EXPECT_EQ(http->dim(), 64);
  const auto over_http = http->encode(titles());
  const auto in_process = local->encode(titles());
  ASSERT_EQ(over_http.sizes(), in_process.sizes());
  EXPECT_LT((over_http - in_process).abs().max().item<float>(), 1e-4);
  EXPECT_EQ(over_http[2].abs().sum().item<float>(), 0.0f);  // the empty text: a zero row, never sent
  EXPECT_NEAR(over_http[0].norm().item<float>(), 1.0f, 1e-5);

  // Saved and loaded: the same servers, the same rows, no probe needed.
  http->save(tmp / "enc");
  EXPECT_NE(llm4sbr::testing::read_text(tmp / "enc/encoder.json").find("OPENAI_API_KEY"), std::string::npos);  // the name only
  auto loaded = embed::load_text_encoder(tmp / "enc");
  EXPECT_TRUE(torch::allclose(loaded->encode(titles()), over_http, 1e-6, 1e-6));
}

TEST(OpenAiEncoder, UnreachableServerFailsWhenTheEncoderIsMade) {
  try {
    embed::make_text_encoder("openai:http://127.0.0.1:1", Config());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no endpoint could be reached: http://127.0.0.1:1/v1"), std::string::npos) << e.what();
  }
  EXPECT_THROW(embed::make_text_encoder("openai:http://127.0.0.1:1", Config::parse("batch: 0")), ConfigError);
}
