// Reading one backbone's config section (configs/models/NAME.yaml merged with a dataset config's
// models.NAME overrides) with errors that name the model, the key and the value seen: the core Settings
// reader (core/settings.hpp) with the two facts every backbone takes from its context.
#pragma once

#include <cstdint>
#include <string>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/core/settings.hpp"
#include "llm4sbr/models/session_encoder.hpp"

namespace llm4sbr::models {

/// A backbone's settings: Settings named after the model, whose unknown-key error points at
/// configs/models/MODEL.yaml and the models.MODEL section of the config.
class ModelSettings : public Settings {
 public:
  ModelSettings(const std::string& model, const Config& settings)
      : Settings(model, settings,
                 "; check configs/models/" + model + ".yaml and the models." + model + " section of the config") {}

  /// The width d: `hidden_size`, defaulting to the context's, >= 1.
  std::int64_t hidden_size(const ModelContext& ctx) const { return integer("hidden_size", ctx.hidden_size, 1); }
  /// The catalogue size N from the context; throws ConfigError when it is empty.
  std::int64_t n_items(const ModelContext& ctx) const;
};

}  // namespace llm4sbr::models
