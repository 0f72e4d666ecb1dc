#include "llm4sbr/train/batch_prefetcher.hpp"

#include <stdexcept>
#include <utility>

namespace llm4sbr::train {

BatchPrefetcher::BatchPrefetcher(std::size_t count, std::size_t depth, Build build)
    : count_(count), depth_(depth), build_(std::move(build)) {
  if (depth_ > 0 && count_ > 0) worker_ = std::thread([this] { work(); });
}

BatchPrefetcher::~BatchPrefetcher() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  if (worker_.joinable()) worker_.join();
}

void BatchPrefetcher::work() {
  for (std::size_t i = 0; i < count_; ++i) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [&] { return stopping_ || ready_.size() < depth_; });
      if (stopping_) return;
    }
    models::SessionBatch batch;
    try {
      batch = build_(i);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      failure_ = std::current_exception();
      changed_.notify_all();
      return;  // the batches after a failed one are never asked for
    }
    std::lock_guard<std::mutex> lock(mutex_);
    ready_.push_back(std::move(batch));
    changed_.notify_all();
  }
}

models::SessionBatch BatchPrefetcher::next() {
  if (taken_ >= count_) throw std::out_of_range("BatchPrefetcher::next: past the last batch");
  const auto i = taken_++;
  if (depth_ == 0) return build_(i);
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [&] { return !ready_.empty() || failure_; });
  if (ready_.empty()) std::rethrow_exception(failure_);
  auto batch = std::move(ready_.front());
  ready_.pop_front();
  changed_.notify_all();
  return batch;
}

}  // namespace llm4sbr::train
