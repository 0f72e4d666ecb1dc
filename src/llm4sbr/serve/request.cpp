#include "llm4sbr/serve/request.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace llm4sbr::serve {

namespace {

bool boolean_field(const nlohmann::json& body, const char* name, bool fallback) {
  if (!body.contains(name)) return fallback;
  if (!body[name].is_boolean()) throw RequestError(400, fmt::format("field '{}' must be true or false", name));
  return body[name].get<bool>();
}

// A value as an error message quotes it: scalars in full up to 100 characters, containers by their type (a
// deep one would be written out whole, recursively).
std::string quoted(const nlohmann::json& value) {
  if (value.is_structured()) return std::string("an ") + (value.is_array() ? "array" : "object");
  auto text = value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return text.size() > 100 ? text.substr(0, 100) + "..." : text;
}

std::string item_id_field(const nlohmann::json& value, const std::string& field) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_number_integer()) return value.dump();  // as sent: 2^64 - 1 read as an int64 would be "-1"
  throw RequestError(400, fmt::format("field '{}': {} is not an item id (a string or an integer)", field, quoted(value)));
}

}  // namespace

RecommendRequest parse_recommend_request(const nlohmann::json& body, std::int64_t n_items) {
  if (!body.is_object()) throw RequestError(400, "the request body must be a JSON object");
  for (const auto& [key, value] : body.items())
    if (key != "items" && key != "session_id" && key != "click" && key != "k" && key != "explain" && key != "exclude_seen")
      throw RequestError(400, fmt::format("unknown field '{}' (items or session_id and click, k, explain, exclude_seen)", key));
  RecommendRequest r;
  if (body.contains("items") == body.contains("session_id"))
    throw RequestError(400, "give either field 'items' (the session's clicks, oldest first) or field 'session_id' (a "
                            "session the server keeps, with 'click' for a new click)");
  if (body.contains("items")) {
    if (!body["items"].is_array())
      throw RequestError(400, "field 'items' must be an array of item ids (the session's clicks, oldest first)");
    if (body.contains("click")) throw RequestError(400, "field 'click' goes with 'session_id', not with 'items'");
    for (const auto& item : body["items"]) r.items.push_back(item_id_field(item, "items"));
  } else {
    const auto& id = body["session_id"];
    if (!id.is_string() || id.get<std::string>().empty() || id.get<std::string>().size() > 256)
      throw RequestError(400, "field 'session_id' must be a string of 1 to 256 bytes (UTF-8)");
    r.session_id = id.get<std::string>();
    if (body.contains("click")) r.click = item_id_field(body["click"], "click");
  }
  r.k = std::min<std::int64_t>(r.k, n_items);
  if (body.contains("k")) {
    const auto& k = body["k"];
    if (!k.is_number_integer()) throw RequestError(400, "field 'k' must be an integer");
    // Compared in the type it was read as: 2^64 - 1 (unsigned) read as an int64 is -1, quoted as such.
    const bool in_range = k.is_number_unsigned() ? k.get<std::uint64_t>() >= 1 && k.get<std::uint64_t>() <= static_cast<std::uint64_t>(n_items)
                                                 : k.get<std::int64_t>() >= 1 && k.get<std::int64_t>() <= n_items;
    if (!in_range)
      throw RequestError(400, fmt::format("field 'k' = {} must be in [1, {}] (the catalogue's size)", quoted(k), n_items));
    r.k = k.get<std::int64_t>();
  }
  r.explain = boolean_field(body, "explain", r.explain);
  r.exclude_seen = boolean_field(body, "exclude_seen", r.exclude_seen);
  return r;
}

}  // namespace llm4sbr::serve
