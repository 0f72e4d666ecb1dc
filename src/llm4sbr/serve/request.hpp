// The service's request body (issue 12): what a shop sends for one session, read and checked field by field.
// Torch-free, so that the fuzz target (fuzz/serve_request_fuzz.cpp) compiles it alone.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace llm4sbr::serve {

/// A bad request: the HTTP status to answer (400, 413, 422) and a message naming the field.
class RequestError : public std::runtime_error {
 public:
  RequestError(int status, const std::string& message) : std::runtime_error(message), status_(status) {}
  int status() const { return status_; }

 private:
  int status_;
};

struct RecommendRequest {
  std::vector<std::string> items;  ///< raw item ids, oldest click first
  std::string session_id;          ///< instead of items: a session the server keeps (session_store.hpp)
  std::optional<std::string> click;  ///< with session_id: the raw item id clicked now, appended to it
  std::int64_t k = 20;             ///< how many items to answer, 1..N
  bool explain = true;             ///< include the intents behind the answer
  bool exclude_seen = false;       ///< leave the session's own items out
  bool intents_generated = false;  ///< set by Service::ask_llm: its intents were generated for it just now
  bool truncated = false;          ///< set for a kept session that had more clicks than it keeps
};

/// Reads a request object: {"items": [ids (strings or numbers)] | "session_id" [+ "click": id], "k", "explain",
/// "exclude_seen"}. Throws RequestError (400) naming the field for a missing, mistyped or unknown one, both or
/// neither of items and session_id, or a k outside 1..n_items.
RecommendRequest parse_recommend_request(const nlohmann::json& body, std::int64_t n_items);

}  // namespace llm4sbr::serve
