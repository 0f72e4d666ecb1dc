// Run configuration: a YAML document with dotted-key access and `--set key=value` overrides.
//
// A config may name others to start from with `include: [file, ...]` (paths relative to the including
// file); later files and then the including file override earlier ones, key by key. `--set` values are
// parsed as YAML scalars, so `--set train.epochs=3` stores an integer and `--set model=tagnn` a string.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <type_traits>
#include <vector>

#include "llm4sbr/core/error.hpp"

namespace llm4sbr {

class Config {
 public:
  Config() : root_(YAML::NodeType::Map) {}
  explicit Config(YAML::Node root) : root_(std::move(root)) {}

  /// Loads a YAML file and resolves its `include:` list. Throws InputError (file, line) on bad YAML.
  static Config load(const std::filesystem::path& file);
  /// Parses YAML text (for tests and inline configs).
  static Config parse(const std::string& text);

  /// Applies "a.b.c=value" overrides. Throws ConfigError if an item has no '=' or no value (`key=`); `key=null`
  /// (or `~`) unsets the key, so it takes its default, as a null in a config file does.
  void apply_overrides(const std::vector<std::string>& overrides);
  /// Sets one dotted key to a YAML scalar parsed from `value`.
  void set(const std::string& dotted_key, const std::string& value);
  /// Replaces (or creates) the node at a dotted key.
  void set_node(const std::string& dotted_key, const YAML::Node& value);

  bool has(const std::string& dotted_key) const;
  /// The value at a dotted key, or `fallback` if absent. Throws ConfigError naming the key if the
  /// value does not convert to T.
  template <typename T>
  T get(const std::string& dotted_key, const T& fallback) const;
  /// The value at a dotted key; throws ConfigError if it is absent.
  template <typename T>
  T require(const std::string& dotted_key) const;

  /// The node at a dotted key (a null node if absent); a copy, safe to keep.
  YAML::Node node(const std::string& dotted_key) const;
  /// The sub-tree at a dotted key as a Config (empty if absent).
  Config sub(const std::string& dotted_key) const;

  const YAML::Node& root() const { return root_; }
  std::string dump() const;
  /// Canonical text of a sub-tree, for hashing stage settings.
  std::string canonical(const std::string& dotted_key = "") const;

 private:
  YAML::Node root_;
};

/// Merges `over` into `base` key by key (maps recursively; scalars and sequences replace).
YAML::Node merge_yaml(const YAML::Node& base, const YAML::Node& over);

/// What a value read as T must look like, for error messages ("an integer", "a list of strings", ...).
template <typename T>
constexpr const char* expected_type() {
  if constexpr (std::is_same_v<T, bool>) return "true or false";
  else if constexpr (std::is_integral_v<T>) return "an integer";
  else if constexpr (std::is_floating_point_v<T>) return "a number";
  else if constexpr (std::is_same_v<T, std::string>) return "a string";
  else if constexpr (std::is_same_v<T, std::vector<std::string>>) return "a list of strings";
  else if constexpr (std::is_same_v<T, std::vector<std::int64_t>>) return "a list of integers";
  else return "of the expected type";
}

template <typename T>
T Config::get(const std::string& dotted_key, const T& fallback) const {
  YAML::Node n = node(dotted_key);
  if (!n || n.IsNull()) return fallback;
  try {
    return n.as<T>();
  } catch (const YAML::Exception& e) {
    throw ConfigError("config key '" + dotted_key + "': cannot read value '" + YAML::Dump(n) + "' as " +
                      expected_type<T>());
  }
}

template <typename T>
T Config::require(const std::string& dotted_key) const {
  if (!has(dotted_key)) throw ConfigError("config key '" + dotted_key + "' is required but not set");
  return get<T>(dotted_key, T{});
}

}  // namespace llm4sbr
