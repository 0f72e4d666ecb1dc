#include "llm4sbr/models/model_settings.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <vector>

namespace llm4sbr::models {

void ModelSettings::fail(const std::string& key, const std::string& requirement, const std::string& seen) const {
  throw ConfigError(fmt::format("{}: config key '{}' must be {}, got {}", model_, key, requirement, seen));
}

template <typename T>
T ModelSettings::read(const std::string& key, const T& fallback) const {
  read_.insert(key);
  return settings_.get<T>(key, fallback);
}

std::int64_t ModelSettings::integer(const std::string& key, std::int64_t fallback, std::int64_t min) const {
  const auto v = read<std::int64_t>(key, fallback);
  if (v < min) fail(key, fmt::format(">= {}", min), std::to_string(v));
  return v;
}

double ModelSettings::real(const std::string& key, double fallback, double lo, double hi) const {
  const auto v = read<double>(key, fallback);
  if (!(v >= lo && v <= hi)) fail(key, fmt::format("in [{}, {}]", lo, hi), fmt::format("{}", v));
  return v;
}

double ModelSettings::rate(const std::string& key, double fallback) const {
  const auto v = read<double>(key, fallback);
  if (!(v >= 0.0 && v < 1.0)) fail(key, "in [0, 1)", fmt::format("{}", v));
  return v;
}

bool ModelSettings::flag(const std::string& key, bool fallback) const { return read<bool>(key, fallback); }

std::string ModelSettings::choice(const std::string& key, const std::string& fallback,
                                  std::initializer_list<const char*> allowed) const {
  auto v = read<std::string>(key, fallback);
  if (std::find(allowed.begin(), allowed.end(), v) == allowed.end())
    fail(key, fmt::format("one of {}", fmt::join(std::vector<const char*>(allowed), ", ")), "'" + v + "'");
  return v;
}

std::int64_t ModelSettings::n_items(const ModelContext& ctx) const {
  if (ctx.n_items < 1) throw ConfigError(fmt::format("{}: the catalogue is empty (n_items = {})", model_, ctx.n_items));
  return ctx.n_items;
}

void ModelSettings::reject_unknown_keys() const {
  const YAML::Node& root = settings_.root();
  if (!root.IsMap()) return;
  for (const auto& entry : root) {
    const auto key = entry.first.as<std::string>();
    if (read_.count(key) == 0)
      throw ConfigError(fmt::format("{}: unknown config key '{}' (the keys {} reads: {}); check configs/models/{}.yaml "
                                    "and the models.{} section of the config",
                                    model_, key, model_, fmt::join(read_, ", "), model_, model_));
  }
}

}  // namespace llm4sbr::models
