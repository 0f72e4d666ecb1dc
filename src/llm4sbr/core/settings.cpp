#include "llm4sbr/core/settings.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

namespace llm4sbr {

namespace {

// Whether a scalar node converts to T.
template <typename T>
bool converts(const YAML::Node& node) {
  T value;
  return node.IsScalar() && YAML::convert<T>::decode(node, value);
}

bool all_of_sequence(const YAML::Node& node, bool (*element_ok)(const YAML::Node&)) {
  if (!node.IsSequence()) return false;
  for (const auto& e : node)
    if (!element_ok(e)) return false;
  return true;
}

bool has_type(const YAML::Node& node, SettingType type) {
  switch (type) {
    case SettingType::kInteger: return converts<std::int64_t>(node);
    case SettingType::kNumber: return converts<double>(node);
    case SettingType::kBool: return converts<bool>(node);
    case SettingType::kString: return node.IsScalar();
    case SettingType::kStrings: return all_of_sequence(node, [](const YAML::Node& e) { return e.IsScalar(); });
    case SettingType::kIntegers: return all_of_sequence(node, converts<std::int64_t>);
    case SettingType::kSection: return node.IsMap();
    case SettingType::kAny: return true;
  }
  return false;
}

std::string dotted(const std::string& section, const std::string& key) { return section.empty() ? key : section + "." + key; }

}  // namespace

const char* describe(SettingType type) {
  switch (type) {
    case SettingType::kInteger: return "an integer";
    case SettingType::kNumber: return "a number";
    case SettingType::kBool: return "true or false";
    case SettingType::kString: return "a string";
    case SettingType::kStrings: return "a list of strings, e.g. [a, b]";
    case SettingType::kIntegers: return "a list of integers, e.g. [5, 10]";
    case SettingType::kSection: return "a mapping of keys to values";
    case SettingType::kAny: return "any value";
  }
  return "?";
}

SettingsSchema::SettingsSchema(std::string section, std::vector<SettingKey> keys)
    : section_(std::move(section)), keys_(std::move(keys)) {}

std::vector<std::string> SettingsSchema::names() const {
  std::vector<std::string> out;
  for (const auto& k : keys_) out.push_back(k.name);
  std::sort(out.begin(), out.end());
  return out;
}

void SettingsSchema::check(const Config& cfg) const {
  const YAML::Node node = section_.empty() ? cfg.root() : cfg.node(section_);
  if (!node || node.IsNull()) return;
  if (!node.IsMap()) throw ConfigError(fmt::format("config key '{}' must be {}", section_, describe(SettingType::kSection)));
  for (const auto& kv : node) {
    const auto key = kv.first.as<std::string>();
    const auto it = std::find_if(keys_.begin(), keys_.end(), [&](const SettingKey& k) { return k.name == key; });
    if (it == keys_.end())
      throw ConfigError(fmt::format("unknown config key '{}'; {} keys are: {}", dotted(section_, key),
                                    section_.empty() ? "top-level" : "'" + section_ + "'", fmt::join(names(), ", ")));
    if (!kv.second.IsNull() && !has_type(kv.second, it->type))
      throw ConfigError(fmt::format("config key '{}' must be {}, got '{}'", dotted(section_, key), describe(it->type),
                                    YAML::Dump(kv.second)));
  }
}

void check_settings(const Config& cfg, const std::vector<SettingsSchema>& schemas) {
  for (const auto& schema : schemas) schema.check(cfg);
}

// --- Settings -------------------------------------------------------------------------------------

void Settings::fail(const std::string& key, const std::string& requirement, const std::string& seen) const {
  throw ConfigError(fmt::format("{}: config key '{}' must be {}, got {}", owner_, key, requirement, seen));
}

template <typename T>
T Settings::read(const std::string& key, const T& fallback) const {
  read_.insert(key);
  return section_.get<T>(key, fallback);
}

std::int64_t Settings::integer(const std::string& key, std::int64_t fallback, std::int64_t min) const {
  const auto v = read<std::int64_t>(key, fallback);
  if (v < min) fail(key, fmt::format(">= {}", min), std::to_string(v));
  return v;
}

double Settings::real(const std::string& key, double fallback, double lo, double hi) const {
  const auto v = read<double>(key, fallback);
  if (!(v >= lo && v <= hi)) fail(key, fmt::format("in [{}, {}]", lo, hi), fmt::format("{}", v));
  return v;
}

double Settings::rate(const std::string& key, double fallback) const {
  const auto v = read<double>(key, fallback);
  if (!(v >= 0.0 && v < 1.0)) fail(key, "in [0, 1)", fmt::format("{}", v));
  return v;
}

bool Settings::flag(const std::string& key, bool fallback) const { return read<bool>(key, fallback); }

std::string Settings::choice(const std::string& key, const std::string& fallback,
                             std::initializer_list<const char*> allowed) const {
  auto v = read<std::string>(key, fallback);
  if (std::find(allowed.begin(), allowed.end(), v) == allowed.end())
    fail(key, fmt::format("one of {}", fmt::join(std::vector<const char*>(allowed), ", ")), "'" + v + "'");
  return v;
}

void Settings::reject_unknown_keys() const {
  const YAML::Node& root = section_.root();
  if (!root.IsMap()) return;
  for (const auto& entry : root) {
    const auto key = entry.first.as<std::string>();
    if (read_.count(key) == 0)
      throw ConfigError(fmt::format("{}: unknown config key '{}' (the keys {} reads: {}){}", owner_, key, owner_,
                                    fmt::join(read_, ", "), hint_));
  }
}

}  // namespace llm4sbr
