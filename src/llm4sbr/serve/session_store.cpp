#include "llm4sbr/serve/session_store.hpp"

#include <algorithm>

namespace llm4sbr::serve {

// The list is in order of last use, so the expired sessions are its tail: O(expired) a call.
void SessionStore::forget_expired(Clock::time_point now) {
  while (!by_recency_.empty() && now - by_recency_.back().last_seen > options_.ttl) {
    index_.erase(by_recency_.back().id);
    by_recency_.pop_back();
  }
}

SessionStore::Kept SessionStore::click(const std::string& id, const std::optional<std::string>& click,
                                       Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mutex_);
  forget_expired(now);
  auto it = index_.find(id);
  if (it == index_.end()) {
    by_recency_.push_front({id, {}, now, false});
    it = index_.emplace(id, by_recency_.begin()).first;
    if (by_recency_.size() > std::max<std::size_t>(1, options_.max_sessions)) {
      index_.erase(by_recency_.back().id);
      by_recency_.pop_back();
    }
  } else {
    by_recency_.splice(by_recency_.begin(), by_recency_, it->second);
  }
  auto& entry = *it->second;
  entry.last_seen = now;
  if (click) {
    entry.clicks.push_back(*click);
    if (entry.clicks.size() > options_.max_clicks) {
      entry.clicks.erase(entry.clicks.begin(), entry.clicks.end() - static_cast<std::ptrdiff_t>(options_.max_clicks));
      entry.truncated = true;
    }
  }
  return {entry.clicks, entry.truncated};
}

std::size_t SessionStore::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return by_recency_.size();
}

}  // namespace llm4sbr::serve
