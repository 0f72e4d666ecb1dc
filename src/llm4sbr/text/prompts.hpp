// Prompts of the intent-inference stage (paper §4.1.1, Fig. 2/3): one prompt per (sample, view).
//
// The default template reproduces the paper's wording byte for byte (the reference code's string):
//   The order in which users click on items is as follows:\n
//   1. <title>_<model id>\n ... N. <title>_<model id>\n
//   Please guess an item that the user is interested in in the long-term. (Only output the item name
//   without any explanation.)
// Views: "long" and "short" add the view-limiting qualifier; "normal" has none. Every piece is a config
// key (`prompt.*`), so a user can change the wording without touching code.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/data/dataset.hpp"
#include "llm4sbr/core/settings.hpp"

namespace llm4sbr::text {

struct PromptTemplate {
  std::string header = "The order in which users click on items is as follows:\n";
  /// One line per clicked item; fields {index} (1-based), {title}, {id} (model id).
  std::string item_line = "{index}. {title}_{id}\n";
  /// The task; {qualifier} is the view's qualifier (empty for "normal").
  std::string question =
      "Please guess an item that the user is interested in{qualifier}. (Only output the item name without any "
      "explanation.)";
  std::map<std::string, std::string> qualifiers = {
      {"long", " in the long-term"}, {"short", " in the short-term"}, {"normal", ""}};
  /// Only the last max_items clicks are listed (0 = all, the paper); bounds the prompt length.
  std::int64_t max_items = 0;
  /// Optional system message for chat models ("" = none, as the paper).
  std::string system;
};

/// Reads `prompt.header`, `prompt.item_line`, `prompt.question`, `prompt.qualifiers.<view>`,
/// `prompt.max_items`, `prompt.system`. Throws ConfigError if a template names an unknown field.
PromptTemplate prompt_template_from_config(const Config& cfg);

/// The keys of prompt.* (prompt_template_from_config).
const SettingsSchema& prompt_settings();

/// The prompt of one sample's prefix for one view. An item without a title is written by its id, like the
/// reference. Throws ConfigError for a view without a qualifier entry.
std::string build_prompt(const PromptTemplate& tpl, const data::PreparedDataset& ds, const data::Sample& sample,
                         const std::string& view);

/// The views of a run: `intent.views` (default ["long", "short"]). Throws ConfigError for an unknown view.
std::vector<std::string> views_from_config(const Config& cfg, const PromptTemplate& tpl);

}  // namespace llm4sbr::text
