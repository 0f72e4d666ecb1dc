#include "llm4sbr/core/config.hpp"

#include <gtest/gtest.h>

#include <fstream>

#include "test_support.hpp"

using llm4sbr::Config;
using llm4sbr::ConfigError;

TEST(Config, OverridesParseYamlScalars) {
  Config c = Config::parse("train: {epochs: 30}\nmodel: srgnn\n");
  c.apply_overrides({"train.epochs=3", "model=tagnn", "data.valid_fraction=0.2", "eval.ks=[5, 20]"});
  EXPECT_EQ(c.get<int>("train.epochs", 0), 3);
  EXPECT_EQ(c.get<std::string>("model", ""), "tagnn");
  EXPECT_DOUBLE_EQ(c.get<double>("data.valid_fraction", 0), 0.2);
  EXPECT_EQ(c.get<std::vector<int>>("eval.ks", {}), (std::vector<int>{5, 20}));
}

TEST(Config, BadOverridesAndTypesNameTheKey) {
  Config c = Config::parse("train: {epochs: thirty}\n");
  EXPECT_THROW(c.apply_overrides({"train.epochs"}), ConfigError);
  try {
    c.get<int>("train.epochs", 0);
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("train.epochs"), std::string::npos);
  }
}

// `--set train.epochs=` (an unset shell variable) was a null, read as "not set": 30 epochs, exit 0.
TEST(Config, AnOverrideWithoutAValueIsAnErrorAndNullFallsBackToTheDefault) {
  Config c = Config::parse("train: {epochs: 30}\n");
  for (const std::string empty : {"train.epochs=", "train.epochs=  "}) {
    try {
      c.apply_overrides({empty});
      FAIL() << empty;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("no value for config key 'train.epochs'"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(c.get<int>("train.epochs", 0), 30);
  c.apply_overrides({"prompt.system=\"\""});
  EXPECT_EQ(c.get<std::string>("prompt.system", "default"), "");
  c.apply_overrides({"train.epochs=null"});
  EXPECT_EQ(c.get<int>("train.epochs", 7), 7);
}

TEST(Config, IncludesMergeKeyByKey) {
  llm4sbr::testing::TempDir dir;
  std::ofstream(dir / "base.yaml") << "train: {epochs: 30, lr: 0.001}\nmodel: srgnn\n";
  std::ofstream(dir / "run.yaml") << "include: base.yaml\ntrain: {epochs: 5}\n";
  Config c = Config::load(dir / "run.yaml");
  EXPECT_EQ(c.get<int>("train.epochs", 0), 5);
  EXPECT_DOUBLE_EQ(c.get<double>("train.lr", 0), 0.001);
  EXPECT_EQ(c.get<std::string>("model", ""), "srgnn");
  EXPECT_FALSE(c.has("include"));
}

TEST(Config, IncludeCycleIsAnErrorNamingTheCycle) {
  llm4sbr::testing::TempDir dir;
  std::ofstream(dir / "a.yaml") << "include: b.yaml\nmodel: srgnn\n";
  std::ofstream(dir / "b.yaml") << "include: [a.yaml]\n";
  std::ofstream(dir / "self.yaml") << "include: self.yaml\n";
  for (const char* file : {"a.yaml", "self.yaml"}) {
    try {
      Config::load(dir / file);
      ADD_FAILURE() << file << ": an include cycle was accepted";
    } catch (const llm4sbr::InputError& e) {
      EXPECT_NE(std::string(e.what()).find("include cycle"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(file), std::string::npos) << e.what();
    }
  }
  // A missing include names the file that includes it; a directory is not a config.
  std::ofstream(dir / "lost.yaml") << "include: nowhere.yaml\n";
  std::ofstream(dir / "folder.yaml") << "include: .\n";
  for (const auto& [file, says] : {std::pair{"lost.yaml", "included file"}, std::pair{"folder.yaml", "not a config file"}}) {
    try {
      Config::load(dir / file);
      ADD_FAILURE() << file << " was loaded";
    } catch (const llm4sbr::InputError& e) {
      EXPECT_NE(std::string(e.what()).find(file), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
    }
  }
  // An include the file system refuses (a name too long; found by fuzz/config_yaml_fuzz.cpp, where it escaped as
  // a std::filesystem exception): an InputError naming the including file.
  std::ofstream(dir / "long.yaml") << "include: " << std::string(300, 'x') << ".yaml\n";
  try {
    Config::load(dir / "long.yaml");
    ADD_FAILURE() << "an include with a 300-character name was loaded";
  } catch (const llm4sbr::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("long.yaml"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("cannot read"), std::string::npos) << e.what();
    EXPECT_EQ(e.field(), "include");
  }
  // The same file included twice along different branches is not a cycle.
  std::ofstream(dir / "base.yaml") << "train: {epochs: 3}\n";
  std::ofstream(dir / "left.yaml") << "include: base.yaml\n";
  std::ofstream(dir / "twice.yaml") << "include: [base.yaml, left.yaml]\n";
  EXPECT_EQ(Config::load(dir / "twice.yaml").get<int>("train.epochs", 0), 3);
}

TEST(Config, BadYamlNamesFileAndLine) {
  llm4sbr::testing::TempDir dir;
  std::ofstream(dir / "bad.yaml") << "train:\n  epochs: [1, 2\n";
  try {
    Config::load(dir / "bad.yaml");
    FAIL();
  } catch (const llm4sbr::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("bad.yaml"), std::string::npos);
    EXPECT_GT(e.line(), 0u);
  }
}

TEST(Config, CanonicalIgnoresKeyOrder) {
  EXPECT_EQ(Config::parse("a: 1\nb: {c: 2, d: 3}\n").canonical(), Config::parse("b: {d: 3, c: 2}\na: 1\n").canonical());
}
