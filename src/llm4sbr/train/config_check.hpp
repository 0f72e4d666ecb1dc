// The whole config checked at once, before any work: every section's keys and types (the settings schema
// of each module, core/settings.hpp) and the models.NAME sections.
#pragma once

#include <vector>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/core/settings.hpp"

namespace llm4sbr::train {

/// The schemas of a run config: the top level, train, eval, data, prompt, llm (+ llm.http), intent,
/// enhance and embed (+ embed.tfidf, embed.http). `paths` is free; models.NAME sections are the backbones'
/// own (checked when the backbone is built).
const std::vector<SettingsSchema>& config_settings();

/// Throws ConfigError naming the key for a misspelled key in any section of config_settings(), a value of
/// the wrong type (naming the expected type), or a models.NAME that is not a registered backbone.
void check_config(const Config& cfg);

}  // namespace llm4sbr::train
