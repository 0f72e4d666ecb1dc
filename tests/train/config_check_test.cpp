// The settings schema of a whole config: a misspelled key in any section is an error naming it, a value of
// the wrong type one naming the expected type, and every shipped config passes.
#include "llm4sbr/train/config_check.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "llm4sbr/core/error.hpp"

namespace llm4sbr::train {
namespace {

// The message check_config throws for cfg with one override ("" if none).
std::string error_of(const std::string& override_kv) {
  Config cfg = Config::parse("model: srgnn\ntrain: {epochs: 2}\n");
  cfg.apply_overrides({override_kv});
  try {
    check_config(cfg);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(ConfigCheck, ATypoInAnySectionIsAnErrorNamingTheKey) {
  for (const std::string key : {"embed.encodr", "embed.tfidf.dimm", "embed.http.concurency", "llm.max_token",
                                "llm.http.timeout", "prompt.heder", "train.epoch", "eval.k", "data.augmnt",
                                "intent.top", "enhance.tauu", "modl"}) {
    SCOPED_TRACE(key);
    const auto msg = error_of(key + "=1");
    EXPECT_NE(msg.find("unknown config key '" + key + "'"), std::string::npos) << msg;
  }
  EXPECT_NE(error_of("models.srgn.step=1").find("unknown config key 'models.srgn'"), std::string::npos);
}

TEST(ConfigCheck, AWrongTypeNamesTheExpectedType) {
  EXPECT_NE(error_of("train.epochs=three").find("config key 'train.epochs' must be an integer"), std::string::npos)
      << error_of("train.epochs=three");
  EXPECT_NE(error_of("embed.tfidf.word_weight=heavy").find("must be a number"), std::string::npos);
  EXPECT_NE(error_of("enhance.enabled=maybe").find("must be true or false"), std::string::npos);
  EXPECT_NE(error_of("intent.views=long").find("must be a list of strings"), std::string::npos);
  EXPECT_NE(error_of("eval.ks=[5,x]").find("must be a list of integers"), std::string::npos);
  EXPECT_NE(error_of("llm.http=4").find("must be a mapping"), std::string::npos);
  EXPECT_EQ(error_of("intent.views=[long]"), "");
  EXPECT_EQ(error_of("embed.tfidf.dim=64"), "");
  EXPECT_EQ(error_of("train.lr=1"), "") << "an integer is a number";
  EXPECT_NE(error_of("threads=-3").find("'threads' must be 0 (every core) or a number of threads, not -3"), std::string::npos)
      << error_of("threads=-3");
  EXPECT_EQ(error_of("threads=0"), "");
}

TEST(ConfigCheck, EveryShippedConfigPasses) {
  for (const auto& entry : std::filesystem::directory_iterator(std::filesystem::path(LLM4SBR_SOURCE_DIR) / "configs")) {
    if (entry.path().extension() != ".yaml") continue;
    SCOPED_TRACE(entry.path().string());
    EXPECT_NO_THROW(check_config(Config::load(entry.path())));
  }
}

}  // namespace
}  // namespace llm4sbr::train
