#include "llm4sbr/text/prompts.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

#include "llm4sbr/core/error.hpp"

namespace llm4sbr::text {

const SettingsSchema& prompt_settings() {
  using enum SettingType;
  static const SettingsSchema schema{"prompt",
                                     {{"header", kString}, {"item_line", kString}, {"question", kString},
                                      {"qualifiers", kSection}, {"max_items", kInteger}, {"system", kString}}};
  return schema;
}

PromptTemplate prompt_template_from_config(const Config& cfg) {
  PromptTemplate t;
  t.header = cfg.get<std::string>("prompt.header", t.header);
  t.item_line = cfg.get<std::string>("prompt.item_line", t.item_line);
  t.question = cfg.get<std::string>("prompt.question", t.question);
  t.max_items = cfg.get<std::int64_t>("prompt.max_items", t.max_items);
  t.system = cfg.get<std::string>("prompt.system", t.system);
  const YAML::Node q = cfg.node("prompt.qualifiers");
  if (q && q.IsMap())
    for (const auto& kv : q) t.qualifiers[kv.first.as<std::string>()] = kv.second.IsNull() ? "" : kv.second.as<std::string>();
  // Fail now, not after hours of inference, if a template names a field that does not exist.
  try {
    (void)fmt::format(fmt::runtime(t.item_line), fmt::arg("index", 1), fmt::arg("title", ""), fmt::arg("id", 1));
    (void)fmt::format(fmt::runtime(t.question), fmt::arg("qualifier", ""));
  } catch (const fmt::format_error& e) {
    throw ConfigError(fmt::format("prompt template: {} (item_line may use {{index}}, {{title}}, {{id}}; question "
                                  "may use {{qualifier}})",
                                  e.what()));
  }
  return t;
}

std::string build_prompt(const PromptTemplate& tpl, const data::PreparedDataset& ds, const data::Sample& sample,
                         const std::string& view) {
  auto q = tpl.qualifiers.find(view);
  if (q == tpl.qualifiers.end()) throw ConfigError(fmt::format("prompt: view '{}' has no qualifier (prompt.qualifiers)", view));
  std::string out = tpl.header;
  const auto n = static_cast<std::int64_t>(sample.prefix.size());
  const std::int64_t first = tpl.max_items > 0 ? std::max<std::int64_t>(0, n - tpl.max_items) : 0;
  for (std::int64_t k = first; k < n; ++k) {
    const std::int64_t id = sample.prefix[static_cast<std::size_t>(k)];
    const std::string& title = ds.items.at(static_cast<std::size_t>(id - 1)).title;
    out += fmt::format(fmt::runtime(tpl.item_line), fmt::arg("index", k - first + 1),
                       fmt::arg("title", title.empty() ? std::to_string(id) : title), fmt::arg("id", id));
  }
  out += fmt::format(fmt::runtime(tpl.question), fmt::arg("qualifier", q->second));
  return out;
}

std::vector<std::string> views_from_config(const Config& cfg, const PromptTemplate& tpl) {
  auto views = cfg.get<std::vector<std::string>>("intent.views", {"long", "short"});
  if (views.empty()) throw ConfigError("intent.views must name at least one view");
  for (const auto& v : views)
    if (!tpl.qualifiers.count(v))
      throw ConfigError(fmt::format("intent.views: unknown view '{}' (known: long, short, normal, or add "
                                    "prompt.qualifiers.{})",
                                    v, v));
  // A qualifier of the user's own that no view asks for is a misspelled view (prompt.qualifiers.shrot) whose
  // intended text would silently not be used; the built-in views may stay defined without being asked for.
  const PromptTemplate defaults;
  const YAML::Node q = cfg.node("prompt.qualifiers");
  if (q && q.IsMap())
    for (const auto& kv : q) {
      const auto name = kv.first.as<std::string>();
      if (!defaults.qualifiers.count(name) && std::find(views.begin(), views.end(), name) == views.end())
        throw ConfigError(fmt::format("prompt.qualifiers.{}: no view of intent.views [{}] uses it (a misspelled "
                                      "view? add it to intent.views or remove it)",
                                      name, fmt::join(views, ", ")));
    }
  return views;
}

}  // namespace llm4sbr::text
