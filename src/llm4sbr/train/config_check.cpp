#include "llm4sbr/train/config_check.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <string>

#include "llm4sbr/core/error.hpp"
#include "llm4sbr/data/prepare.hpp"
#include "llm4sbr/embed/text_encoder.hpp"
#include "llm4sbr/enhance/llm4sbr_head.hpp"
#include "llm4sbr/intent/intent_stage.hpp"
#include "llm4sbr/llm/llm_backend.hpp"
#include "llm4sbr/models/session_encoder.hpp"
#include "llm4sbr/text/prompts.hpp"
#include "llm4sbr/train/trainer.hpp"

namespace llm4sbr::train {

namespace {

// models.NAME: NAME must be a backbone and its section a mapping (the keys inside are the model's to check).
void check_model_sections(const Config& cfg) {
  const YAML::Node models = cfg.node("models");
  if (!models || models.IsNull()) return;
  const auto names = models::registered_encoders();
  if (!models.IsMap()) throw ConfigError("config key 'models' must be a mapping of model name to settings");
  for (const auto& kv : models) {
    const auto name = kv.first.as<std::string>();
    if (std::find(names.begin(), names.end(), name) == names.end())
      throw ConfigError(fmt::format("unknown config key 'models.{}'; models are: {}", name, fmt::join(names, ", ")));
    if (!kv.second.IsMap() && !kv.second.IsNull())
      throw ConfigError(fmt::format("config key 'models.{}' must be a mapping of settings (e.g. models.{}.step=2)", name,
                                    name));
  }
}

}  // namespace

const std::vector<SettingsSchema>& config_settings() {
  static const std::vector<SettingsSchema> schemas = [] {
    using enum SettingType;
    std::vector<SettingsSchema> out{
        {"",
         {{"include", kAny}, {"dataset", kString}, {"model", kString}, {"threads", kInteger}, {"device", kString}, {"resume", kBool}, {"train", kSection},
          {"eval", kSection}, {"data", kSection}, {"prompt", kSection}, {"llm", kSection}, {"intent", kSection},
          {"models", kSection}, {"paths", kSection}, {"embed", kSection}, {"enhance", kSection}}},
        data::data_settings(), text::prompt_settings(), intent::intent_settings(), enhance::enhance_settings()};
    for (const auto* group : {&train_settings(), &llm::llm_settings(), &embed::embed_settings()})
      out.insert(out.end(), group->begin(), group->end());
    return out;
  }();
  return schemas;
}

void check_config(const Config& cfg) {
  check_settings(cfg, config_settings());
  check_model_sections(cfg);
  // 0 means every core; a negative count was taken as 0 without a word.
  if (const auto threads = cfg.get<std::int64_t>("threads", 0); threads < 0)
    throw ConfigError(fmt::format("config key 'threads' must be 0 (every core) or a number of threads, not {}", threads));
}

}  // namespace llm4sbr::train
