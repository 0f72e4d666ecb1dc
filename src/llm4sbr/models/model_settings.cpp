#include "llm4sbr/models/model_settings.hpp"

#include <fmt/format.h>

namespace llm4sbr::models {

std::int64_t ModelSettings::n_items(const ModelContext& ctx) const {
  if (ctx.n_items < 1) throw ConfigError(fmt::format("{}: the catalogue is empty (n_items = {})", owner(), ctx.n_items));
  return ctx.n_items;
}

}  // namespace llm4sbr::models
