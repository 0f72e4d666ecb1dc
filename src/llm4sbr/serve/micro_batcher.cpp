#include "llm4sbr/serve/micro_batcher.hpp"

#include <algorithm>
#include <iterator>

namespace llm4sbr::serve {

MicroBatcher::MicroBatcher(const ServiceSlot& slot, std::size_t max_batch, std::chrono::microseconds max_wait,
                           std::size_t workers, std::function<void(std::size_t)> on_pass)
    : slot_(slot), max_batch_(std::max<std::size_t>(1, max_batch)), max_wait_(max_wait), on_pass_(std::move(on_pass)) {
  if (workers == 0) workers = std::max(1u, std::thread::hardware_concurrency());
  max_running_ = workers;
  for (std::size_t i = 0; i < workers; ++i) workers_.emplace_back([this] { work(); });
}

MicroBatcher::~MicroBatcher() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  queued_.notify_all();
  for (auto& w : workers_) w.join();
}

// Service::recommend with the metrics of a pass.
std::vector<nlohmann::json> MicroBatcher::answer(const std::vector<RecommendRequest>& requests) {
  auto answers = slot_.current()->recommend(requests);
  if (on_pass_) on_pass_(requests.size());
  return answers;
}

std::vector<nlohmann::json> MicroBatcher::recommend(std::vector<RecommendRequest> requests) {
  std::future<std::vector<nlohmann::json>> answers;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    if (running_ == 0 && queue_.empty()) {  // idle: this thread runs the pass
      ++running_;
      lock.unlock();
      struct Done {
        MicroBatcher& b;
        ~Done() {
          std::lock_guard<std::mutex> relock(b.mutex_);
          --b.running_;
          // Calls queued while every pass was taken wait for this one. Only then: waking the idle workers for
          // nothing is two context switches a request.
          if (!b.queue_.empty()) b.queued_.notify_all();
        }
      } done{*this};
      return answer(requests);
    }
    queued_sessions_ += requests.size();
    queue_.push_back({std::move(requests), {}, std::chrono::steady_clock::now()});
    answers = queue_.back().answers.get_future();
  }
  queued_.notify_one();
  return answers.get();
}

// The calls of the next pass: the oldest call, then more while they fit in max_batch sessions, after waiting
// until the oldest has waited max_wait when the pass is not full. A call is never split.
std::vector<MicroBatcher::Call> MicroBatcher::take_pass(std::unique_lock<std::mutex>& lock) {
  const auto deadline = queue_.front().queued + max_wait_;
  queued_.wait_until(lock, deadline, [&] { return stopping_ || queued_sessions_ >= max_batch_; });
  std::vector<Call> pass;
  std::size_t sessions = 0;
  while (!queue_.empty() && (pass.empty() || sessions + queue_.front().requests.size() <= max_batch_)) {
    sessions += queue_.front().requests.size();
    queued_sessions_ -= queue_.front().requests.size();
    pass.push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
  return pass;
}

void MicroBatcher::work() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    queued_.wait(lock, [&] { return stopping_ || (!queue_.empty() && running_ < max_running_); });
    if (queue_.empty()) return;  // stopping, nothing left
    ++running_;  // before take_pass, which may wait: no other worker starts a pass beyond the limit meanwhile
    auto pass = take_pass(lock);
    if (pass.empty()) {  // another worker took the calls this one waited on
      --running_;
      continue;
    }
    lock.unlock();
    std::vector<RecommendRequest> requests;
    for (auto& call : pass) requests.insert(requests.end(), call.requests.begin(), call.requests.end());
    std::vector<nlohmann::json> answers;
    try {
      answers = answer(requests);
    } catch (...) {
      for (auto& call : pass) call.answers.set_exception(std::current_exception());
      lock.lock();
      --running_;
      continue;
    }
    auto next = answers.begin();
    for (auto& call : pass) {
      const auto end = next + static_cast<std::ptrdiff_t>(call.requests.size());
      call.answers.set_value({std::make_move_iterator(next), std::make_move_iterator(end)});
      next = end;
    }
    lock.lock();
    --running_;
  }
}

}  // namespace llm4sbr::serve
