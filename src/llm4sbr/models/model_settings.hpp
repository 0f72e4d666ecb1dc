// Reading one backbone's config section (configs/models/NAME.yaml merged with a dataset config's
// models.NAME overrides) with errors that name the model, the key and the value seen.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <set>
#include <string>
#include <utility>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/models/session_encoder.hpp"

namespace llm4sbr::models {

/// The keys of one model's config section. Each getter returns the key's value, or `fallback` when the
/// key is absent, and throws ConfigError "MODEL: config key 'KEY' must be ..., got VALUE" for a value
/// of the wrong type or outside its range. Every getter remembers its key, so that after a model has
/// read its settings `reject_unknown_keys()` can refuse a misspelled one instead of silently ignoring it.
class ModelSettings {
 public:
  ModelSettings(std::string model, const Config& settings) : model_(std::move(model)), settings_(settings) {}

  /// An integer >= `min`.
  std::int64_t integer(const std::string& key, std::int64_t fallback, std::int64_t min) const;
  /// A real number in [lo, hi].
  double real(const std::string& key, double fallback, double lo, double hi) const;
  /// A dropout rate, in [0, 1).
  double rate(const std::string& key, double fallback) const;
  bool flag(const std::string& key, bool fallback) const;
  /// One of `allowed`.
  std::string choice(const std::string& key, const std::string& fallback, std::initializer_list<const char*> allowed) const;

  /// The width d: `hidden_size`, defaulting to the context's, >= 1.
  std::int64_t hidden_size(const ModelContext& ctx) const { return integer("hidden_size", ctx.hidden_size, 1); }
  /// The catalogue size N from the context; throws ConfigError when it is empty.
  std::int64_t n_items(const ModelContext& ctx) const;

  /// Throws ConfigError "MODEL: unknown config key 'KEY' ..." (naming the keys the model reads) when the
  /// section holds a key no getter asked for, e.g. `models.srgnn.setp`. Call after reading every key.
  void reject_unknown_keys() const;

 private:
  [[noreturn]] void fail(const std::string& key, const std::string& requirement, const std::string& seen) const;

  template <typename T>
  T read(const std::string& key, const T& fallback) const;

  std::string model_;
  const Config& settings_;
  mutable std::set<std::string> read_;  // every key a getter asked for
};

}  // namespace llm4sbr::models
