#include "llm4sbr/serve/service_slot.hpp"

#include <spdlog/spdlog.h>

namespace llm4sbr::serve {

ServiceSlot::ServiceSlot(Loader load) : load_(std::move(load)), current_(load_("")) {}

std::shared_ptr<const Service> ServiceSlot::current() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return current_;
}

std::int64_t ServiceSlot::version() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return version_;
}

ServiceSlot::Reloaded ServiceSlot::reload(const std::string& checkpoint) {
  std::unique_lock<std::mutex> one_at_a_time(reloading_, std::try_to_lock);
  if (!one_at_a_time.owns_lock()) throw RequestError(409, "a reload is already running");
  spdlog::info("serve: reloading {}", checkpoint.empty() ? "the checkpoint" : checkpoint);
  std::shared_ptr<const Service> next;
  try {
    next = load_(checkpoint);  // outside mutex_: requests take the old service meanwhile
  } catch (const std::exception& e) {
    spdlog::error("serve: reload failed, still serving version {}: {}", version(), e.what());
    return {false, version(), e.what()};
  }
  std::shared_ptr<const Service> old;  // freed after the lock, once the last request using it ends
  Reloaded done{true, 0, ""};
  {
    std::lock_guard<std::mutex> lock(mutex_);
    old = std::exchange(current_, std::move(next));
    done.version = ++version_;
  }
  spdlog::info("serve: now serving {} (version {})", current()->model_label(), done.version);
  return done;
}

}  // namespace llm4sbr::serve
