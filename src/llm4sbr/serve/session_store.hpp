// Sessions the service keeps (issue 12, Serenade style): a shop sends {"session_id", "click"} for each click
// instead of the whole session, and the server remembers the last clicks of each session. Bounded three ways:
// at most `max_sessions` (the least recently used is forgotten first), each forgotten `ttl` after its last
// request, each holding only its last `max_clicks` clicks (the model reads no more).
#pragma once

#include <chrono>
#include <cstddef>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace llm4sbr::serve {

struct SessionStoreOptions {
  std::size_t max_sessions = 100000;
  std::chrono::seconds ttl{1800};  ///< since the session's last request
  std::size_t max_clicks = 50;
};

/// Thread-safe.
class SessionStore {
 public:
  using Clock = std::chrono::steady_clock;
  explicit SessionStore(SessionStoreOptions options = {}) : options_(options) {}

  struct Kept {
    std::vector<std::string> clicks;  ///< oldest first, the last max_clicks
    bool truncated = false;           ///< the session had more clicks than it keeps
  };
  /// Appends `click` (when given) to session `id`, a new one when unknown or expired, and returns its clicks.
  Kept click(const std::string& id, const std::optional<std::string>& click, Clock::time_point now = Clock::now());

  /// Sessions held now (expired ones count until a request finds them).
  std::size_t size() const;

 private:
  struct Entry {
    std::string id;
    std::vector<std::string> clicks;
    Clock::time_point last_seen;
    bool truncated = false;
  };
  void forget_expired(Clock::time_point now);

  SessionStoreOptions options_;
  mutable std::mutex mutex_;
  std::list<Entry> by_recency_;  ///< most recently used first
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
};

}  // namespace llm4sbr::serve
