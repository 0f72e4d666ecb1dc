#include "llm4sbr/models/model_settings.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <vector>

namespace llm4sbr::models {

void ModelSettings::fail(const std::string& key, const std::string& requirement, const std::string& seen) const {
  throw ConfigError(fmt::format("{}: config key '{}' must be {}, got {}", model_, key, requirement, seen));
}

std::int64_t ModelSettings::integer(const std::string& key, std::int64_t fallback, std::int64_t min) const {
  const auto v = settings_.get<std::int64_t>(key, fallback);
  if (v < min) fail(key, fmt::format(">= {}", min), std::to_string(v));
  return v;
}

double ModelSettings::real(const std::string& key, double fallback, double lo, double hi) const {
  const auto v = settings_.get<double>(key, fallback);
  if (!(v >= lo && v <= hi)) fail(key, fmt::format("in [{}, {}]", lo, hi), fmt::format("{}", v));
  return v;
}

double ModelSettings::rate(const std::string& key, double fallback) const {
  const auto v = settings_.get<double>(key, fallback);
  if (!(v >= 0.0 && v < 1.0)) fail(key, "in [0, 1)", fmt::format("{}", v));
  return v;
}

bool ModelSettings::flag(const std::string& key, bool fallback) const { return settings_.get<bool>(key, fallback); }

std::string ModelSettings::choice(const std::string& key, const std::string& fallback,
                                  std::initializer_list<const char*> allowed) const {
  auto v = settings_.get<std::string>(key, fallback);
  if (std::find(allowed.begin(), allowed.end(), v) == allowed.end())
    fail(key, fmt::format("one of {}", fmt::join(std::vector<const char*>(allowed), ", ")), "'" + v + "'");
  return v;
}

std::int64_t ModelSettings::n_items(const ModelContext& ctx) const {
  if (ctx.n_items < 1) throw ConfigError(fmt::format("{}: the catalogue is empty (n_items = {})", model_, ctx.n_items));
  return ctx.n_items;
}

}  // namespace llm4sbr::models
