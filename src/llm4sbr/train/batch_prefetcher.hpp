// The batches of a pass made ahead of the step that uses them (issue 13: feed the GPU). Building a batch is
// CPU work (the padded tensors, the graph models' session graphs) followed by copies to the device; on a GPU,
// a step that built its own batch would leave the GPU idle meanwhile. A thread of its own builds the next
// `depth` batches while the caller's steps run; the copies go out without blocking (models::to_device), so
// they overlap the GPU's work too. On this project's 2-core CPUs the building is ~1 % of a step and the
// second core is busy with OpenBLAS, so the trainer's default is no prefetching on a CPU (README, "device").
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>

#include "llm4sbr/models/session_encoder.hpp"

namespace llm4sbr::train {

class BatchPrefetcher {
 public:
  /// Makes batch i of a pass (i = 0 .. count-1, called in that order, on one thread). It may return an empty
  /// SessionBatch (a rank with no samples in a batch); it must not use the model's parameter values.
  using Build = std::function<models::SessionBatch(std::size_t)>;

  /// Starts building batches 0 .. count-1, at most `depth` ahead of the caller. depth 0: no thread, next()
  /// builds each batch when asked.
  BatchPrefetcher(std::size_t count, std::size_t depth, Build build);
  /// Stops building and waits for the batch being built, if any (an epoch left by an exception or a kill
  /// point does not wait for the rest of its batches).
  ~BatchPrefetcher();
  BatchPrefetcher(const BatchPrefetcher&) = delete;
  BatchPrefetcher& operator=(const BatchPrefetcher&) = delete;

  /// The next batch, in order. Rethrows what build threw for it (after the batches before it were taken).
  /// Throws std::out_of_range past the last batch.
  models::SessionBatch next();

 private:
  void work();

  std::size_t count_;
  std::size_t depth_;
  Build build_;
  std::size_t taken_ = 0;  ///< batches next() handed out
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<models::SessionBatch> ready_;  ///< built, in order
  std::exception_ptr failure_;              ///< what build threw for the batch after ready_'s last
  bool stopping_ = false;
  std::thread worker_;
};

}  // namespace llm4sbr::train
