// Settings of the OpenAI-compatible text encoder that need no server.
#include <gtest/gtest.h>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/core/error.hpp"
#include "llm4sbr/embed/openai_encoder.hpp"

using namespace llm4sbr;

TEST(OpenAiEncoderOptions, TextsAreCutToTheModelsContextByDefault) {
  Config cfg;
  const auto o = embed::OpenAiEncoderOptions::from_config({"http://127.0.0.1:1"}, cfg);
  EXPECT_EQ(o.max_chars, 1500);  // a BERT-family context of 512 tokens; a long-view title list exceeds it
  cfg.set("max_chars", "0");
  EXPECT_EQ(embed::OpenAiEncoderOptions::from_config({"http://127.0.0.1:1"}, cfg).max_chars, 0);
  cfg.set("max_chars", "-1");
  EXPECT_THROW(embed::OpenAiEncoderOptions::from_config({"http://127.0.0.1:1"}, cfg), ConfigError);
}
