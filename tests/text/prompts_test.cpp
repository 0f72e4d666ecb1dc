#include "llm4sbr/text/prompts.hpp"

#include <gtest/gtest.h>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/data/prepare.hpp"
#include "llm4sbr/data/readers.hpp"
#include "test_support.hpp"

using namespace llm4sbr;

namespace {

data::PreparedDataset tiny_dataset() {
  data::PreparedDataset ds;
  ds.items = {{1, "a", "Beauty Flawless Makeup Blender Sponge Puff (size 1)"},
              {2, "b", "Hot Tools Big Bumper Spring Curling Iron, 1-1/2"},
              {3, "c", ""}};
  return ds;
}

}  // namespace

TEST(Prompts, DefaultTemplateIsThePapersWordingByteForByte) {
  auto ds = tiny_dataset();
  data::Sample s{0, 0, {1, 2, 3}, 2};
  const auto tpl = text::prompt_template_from_config(Config());
  EXPECT_EQ(text::build_prompt(tpl, ds, s, "long"),
            "The order in which users click on items is as follows:\n"
            "1. Beauty Flawless Makeup Blender Sponge Puff (size 1)_1\n"
            "2. Hot Tools Big Bumper Spring Curling Iron, 1-1/2_2\n"
            "3. 3_3\n"  // no title: the id stands in for it, like the reference
            "Please guess an item that the user is interested in in the long-term. (Only output the item name "
            "without any explanation.)");
  EXPECT_NE(text::build_prompt(tpl, ds, s, "short").find("interested in in the short-term. (Only"), std::string::npos);
  EXPECT_NE(text::build_prompt(tpl, ds, s, "normal").find("interested in. (Only"), std::string::npos);
}

TEST(Prompts, OnARealBeautySession) {
  LLM4SBR_REQUIRE_DATA("amazon-beauty-2014");
  Config cfg = Config::load(std::filesystem::path(LLM4SBR_SOURCE_DIR) / "configs" / "beauty.yaml");
  auto ds = data::prepare(data::read_dataset("beauty", llm4sbr::testing::data_dir() / "amazon-beauty-2014"),
                          data::prepare_options_from_config(cfg));
  const auto tpl = text::prompt_template_from_config(cfg);
  const auto& s = ds.test.front();
  const std::string p = text::build_prompt(tpl, ds, s, "short");
  std::string want = "The order in which users click on items is as follows:\n";
  for (std::size_t k = 0; k < s.prefix.size(); ++k) {
    const auto& item = ds.items[static_cast<std::size_t>(s.prefix[k] - 1)];
    want += std::to_string(k + 1) + ". " + (item.title.empty() ? std::to_string(item.id) : item.title) + "_" +
            std::to_string(item.id) + "\n";
  }
  want += "Please guess an item that the user is interested in in the short-term. (Only output the item name without "
          "any explanation.)";
  EXPECT_EQ(p, want);
}

TEST(Prompts, TemplatesComeFromTheConfig) {
  auto ds = tiny_dataset();
  data::Sample s{0, 0, {1, 2}, 3};
  auto cfg = Config::parse(
      "prompt:\n  header: \"Clicks:\\n\"\n  item_line: \"- {title} (#{id})\\n\"\n  question: \"Next{qualifier}?\"\n"
      "  qualifiers: {long: \" overall\"}\n  max_items: 1\n");
  const auto tpl = text::prompt_template_from_config(cfg);
  EXPECT_EQ(text::build_prompt(tpl, ds, s, "long"), "Clicks:\n- Hot Tools Big Bumper Spring Curling Iron, 1-1/2 (#2)\nNext overall?");
  EXPECT_THROW(text::prompt_template_from_config(Config::parse("prompt: {item_line: \"{nope}\"}\n")), ConfigError);
  EXPECT_THROW(text::views_from_config(Config::parse("intent: {views: [sideways]}\n"), tpl), ConfigError);
}

// A qualifier of the user's that no view uses is a misspelled view: an error naming it, not the default text
// used in its place. Unused built-in views (normal here) and a new view that is asked for are fine.
TEST(Prompts, AQualifierNoViewUsesIsAnErrorNamingIt) {
  const auto misspelled = Config::parse("prompt: {qualifiers: {shrot: \" lately\"}}\nintent: {views: [long, short]}\n");
  try {
    (void)text::views_from_config(misspelled, text::prompt_template_from_config(misspelled));
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("prompt.qualifiers.shrot"), std::string::npos) << e.what();
  }
  const auto fine = Config::parse(
      "prompt: {qualifiers: {normal: \"\", lately: \" lately\"}}\nintent: {views: [long, lately]}\n");
  EXPECT_EQ(text::views_from_config(fine, text::prompt_template_from_config(fine)),
            (std::vector<std::string>{"long", "lately"}));
}
