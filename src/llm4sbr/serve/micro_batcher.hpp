// Micro-batching for the service (issue 12, "Throughput"): concurrent requests are merged into one forward
// pass of the model. While a pass runs, new calls queue; the next pass takes every queued session (up to
// `max_batch`), after waiting at most `max_wait` for more when it has fewer. With max_wait = 0 an idle server
// answers at once and a busy one batches by itself. Several workers run passes side by side, one a core:
// one pass is mostly single-threaded work (small products, JSON, the encoder), so one worker left the other
// cores to the HTTP threads only.
//
// An idle batcher (no pass running, nothing queued) runs a call's pass on the caller's own thread: handing it
// to a worker and back costs two thread wake-ups, which on this virtual machine were 40 % of an idle request's
// server CPU (1 client, same run: 3.13 -> 1.87 ms CPU a request, p50 3.06 -> 1.75 ms; 16 clients 1,312 and
// 1,253 requests/s, the same within noise). Under load the workers batch as before: a version in which the
// callers ran every pass did no better under 16 clients (1,021 and 1,272 requests/s).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "llm4sbr/serve/service_slot.hpp"

namespace llm4sbr::serve {

class MicroBatcher {
 public:
  /// Each pass answers with the slot's current service. `on_pass` is called after each forward pass with its
  /// number of sessions (metrics).
  /// `workers` passes run at once (each on one core: the service sets one BLAS thread); 0: one per core.
  MicroBatcher(const ServiceSlot& slot, std::size_t max_batch, std::chrono::microseconds max_wait, std::size_t workers,
               std::function<void(std::size_t)> on_pass = {});
  /// Answers what is queued, then stops the worker.
  ~MicroBatcher();
  MicroBatcher(const MicroBatcher&) = delete;
  MicroBatcher& operator=(const MicroBatcher&) = delete;

  /// Service::recommend(requests), computed in one pass with whatever other calls are queued. Thread-safe.
  /// Rethrows what the pass threw.
  std::vector<nlohmann::json> recommend(std::vector<RecommendRequest> requests);

 private:
  struct Call {
    std::vector<RecommendRequest> requests;
    std::promise<std::vector<nlohmann::json>> answers;
    std::chrono::steady_clock::time_point queued;
  };
  void work();
  std::vector<nlohmann::json> answer(const std::vector<RecommendRequest>& requests);
  std::vector<Call> take_pass(std::unique_lock<std::mutex>& lock);

  const ServiceSlot& slot_;
  std::size_t max_batch_;
  std::chrono::microseconds max_wait_;
  std::function<void(std::size_t)> on_pass_;
  std::mutex mutex_;
  std::condition_variable queued_;
  std::deque<Call> queue_;
  std::size_t queued_sessions_ = 0;
  std::size_t running_ = 0;  ///< passes in progress, workers' and callers'
  std::size_t max_running_;  ///< the workers
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace llm4sbr::serve
