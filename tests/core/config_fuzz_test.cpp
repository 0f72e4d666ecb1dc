// Regression tests for inputs that fuzz/ found crashing the config parser (fuzz_config_yaml, fuzz_config_set):
// each is refused with an InputError or ConfigError that names the file and line, never an exception from
// inside yaml-cpp.
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "llm4sbr/core/config.hpp"
#include "test_support.hpp"

namespace {

// Loads `text` as a config file and returns the error message (fails the test if it loads or throws anything
// other than an llm4sbr::InputError).
std::string load_error(const std::string& text) {
  llm4sbr::testing::TempDir dir;
  std::ofstream(dir / "run.yaml") << text;
  try {
    llm4sbr::Config::load(dir / "run.yaml");
  } catch (const llm4sbr::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("run.yaml"), std::string::npos) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "accepted:\n" << text;
  return "";
}

}  // namespace

TEST(ConfigFuzz, IncludeThatIsAMapIsRefusedNamingTheFileAndLine) {
  // fuzz_config_yaml: `include:` followed by an indented map (a comment after the colon made it one).
  const auto message = load_error("include: # comment\n  seed: 2020\nmodel: srgnn\n");
  EXPECT_NE(message.find("run.yaml:2"), std::string::npos) << message;
  EXPECT_NE(message.find("include"), std::string::npos) << message;
}

TEST(ConfigFuzz, IncludeListOfListsIsRefused) {
  const auto message = load_error("include: [[a.yaml], b.yaml]\n");
  EXPECT_NE(message.find("list of file names"), std::string::npos) << message;
}

TEST(ConfigFuzz, EmptyIncludeIncludesNothing) {
  llm4sbr::testing::TempDir dir;
  std::ofstream(dir / "run.yaml") << "include:\nmodel: srgnn\n";
  EXPECT_EQ(llm4sbr::Config::load(dir / "run.yaml").get<std::string>("model", ""), "srgnn");
}

TEST(ConfigFuzz, ComplexOrNullKeysAreRefusedNamingTheLine) {
  // fuzz_checkpoint_yaml: a `? key` whose key is a list ended in a bad conversion inside merge_yaml.
  auto message = load_error("model: srgnn\nconfig:\n  ? [a, b]\n  : 1\n");
  EXPECT_NE(message.find("run.yaml:3"), std::string::npos) << message;
  EXPECT_NE(message.find("plain name"), std::string::npos) << message;
  message = load_error("train:\n  ~: 3\n");
  EXPECT_NE(message.find("run.yaml:2"), std::string::npos) << message;
}

TEST(ConfigFuzz, OverrideWithAComplexKeyIsRefusedNamingTheKey) {
  llm4sbr::Config cfg;
  try {
    cfg.set("models.srgnn", "{[a]: 1}");
    FAIL() << "accepted a mapping with a list as key";
  } catch (const llm4sbr::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("models.srgnn"), std::string::npos) << e.what();
  }
  EXPECT_THROW(llm4sbr::Config::parse("? [a]\n: 1\n"), llm4sbr::ConfigError);
}
