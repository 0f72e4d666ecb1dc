// Reading integers from JSON written by someone else (responses.jsonl, an LLM server's usage counts).
#pragma once

#include <cstdint>
#include <limits>
#include <optional>

#include <nlohmann/json.hpp>

namespace llm4sbr {

/// `value` as an int64 when it is a JSON integer that fits one, else std::nullopt (a float, a string, an integer
/// beyond int64). nlohmann's get<std::int64_t> casts any number: 2.5 becomes 2, and a float beyond int64's
/// range, such as 7.7e91, is undefined behaviour (found by fuzz/responses_jsonl_fuzz.cpp under UBSan).
inline std::optional<std::int64_t> as_int64(const nlohmann::json& value) {
  if (value.is_number_unsigned()) {
    const auto u = value.get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return std::nullopt;
    return static_cast<std::int64_t>(u);
  }
  if (value.is_number_integer()) return value.get<std::int64_t>();
  return std::nullopt;
}

}  // namespace llm4sbr
