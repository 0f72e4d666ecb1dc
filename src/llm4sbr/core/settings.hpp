// One settings schema for every config section: the keys a section may hold and the type of each,
// declared once beside the code that reads them (train.* in train/trainer.cpp, embed.* in
// embed/text_encoder.cpp, ...). A misspelled key is a ConfigError naming it and the valid keys, and a
// value of the wrong type one naming the expected type, before any work is done: adding a key is one
// line in its section's schema.
//
// Settings is the reader for a section whose keys are known only by reading them (a backbone's
// models.NAME section): every getter records its key, so reject_unknown_keys() can refuse the rest.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "llm4sbr/core/config.hpp"

namespace llm4sbr {

/// What a setting's value must be.
enum class SettingType {
  kInteger,   ///< 3
  kNumber,    ///< 0.5 or 3
  kBool,      ///< true / false
  kString,    ///< any scalar, read as text
  kStrings,   ///< [a, b]
  kIntegers,  ///< [5, 10, 20]
  kSection,   ///< a mapping, checked by its own schema (or free)
  kAny,       ///< not checked here
};

/// "an integer", "a number", "true or false", ... (for error messages).
const char* describe(SettingType type);

struct SettingKey {
  std::string name;
  SettingType type;
};

/// The keys of one section of a config (a dotted path; "" = the top level).
class SettingsSchema {
 public:
  SettingsSchema(std::string section, std::vector<SettingKey> keys);

  const std::string& section() const { return section_; }
  const std::vector<SettingKey>& keys() const { return keys_; }
  /// The key names, sorted (for messages and help texts).
  std::vector<std::string> names() const;

  /// Checks the section of `cfg` (absent or null: nothing to check). Throws ConfigError "unknown config key
  /// 'SECTION.KEY'; 'SECTION' keys are: ..." for a key not declared, "config key 'SECTION.KEY' must be
  /// TYPE, got VALUE" for a value of another type, and one saying the section must be a mapping.
  void check(const Config& cfg) const;

 private:
  std::string section_;
  std::vector<SettingKey> keys_;
};

/// Checks every schema against cfg (see SettingsSchema::check).
void check_settings(const Config& cfg, const std::vector<SettingsSchema>& schemas);

/// Reads one section key by key with range checks. Each getter returns the key's value, or `fallback`
/// when the key is absent, and throws ConfigError "OWNER: config key 'KEY' must be ..., got VALUE" for a
/// value of the wrong type or outside its range. Every getter remembers its key, so that after the owner
/// has read its settings `reject_unknown_keys()` can refuse a misspelled one instead of ignoring it.
class Settings {
 public:
  /// `owner` starts every message ("srgnn"); `hint` ends the unknown-key one ("; check configs/...").
  Settings(std::string owner, const Config& section, std::string hint = "")
      : owner_(std::move(owner)), hint_(std::move(hint)), section_(section) {}

  /// An integer >= `min`.
  std::int64_t integer(const std::string& key, std::int64_t fallback, std::int64_t min) const;
  /// A real number in [lo, hi].
  double real(const std::string& key, double fallback, double lo, double hi) const;
  /// A dropout rate, in [0, 1).
  double rate(const std::string& key, double fallback) const;
  bool flag(const std::string& key, bool fallback) const;
  /// One of `allowed`.
  std::string choice(const std::string& key, const std::string& fallback, std::initializer_list<const char*> allowed) const;

  /// Throws ConfigError "OWNER: unknown config key 'KEY' (the keys OWNER reads: ...)HINT" when the section
  /// holds a key no getter asked for. Call after reading every key.
  void reject_unknown_keys() const;

 protected:
  [[noreturn]] void fail(const std::string& key, const std::string& requirement, const std::string& seen) const;
  const std::string& owner() const { return owner_; }

 private:
  template <typename T>
  T read(const std::string& key, const T& fallback) const;

  std::string owner_;
  std::string hint_;
  const Config& section_;
  mutable std::set<std::string> read_;  // every key a getter asked for
};

}  // namespace llm4sbr
