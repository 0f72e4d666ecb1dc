#include "llm4sbr/serve/intent_generator.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace llm4sbr::serve {

IntentGenerator::IntentGenerator(std::unique_ptr<llm::LlmBackend> backend, const std::filesystem::path& store,
                                 IntentGeneratorOptions options)
    : backend_(std::move(backend)), options_(options) {
  std::filesystem::create_directories(store.parent_path());
  store_ = std::make_unique<llm::ResponseStore>(store);
  for (const auto& [key, record] : store_->records()) {
    answers_[record.prompt_hash] = record.response;
    next_record_ = std::max(next_record_, record.sample + 1);
  }
  spdlog::info("serve: {} asks for intents nobody asked yet; {} answers in {}", backend_->model_name(), answers_.size(),
               store.string());
  worker_ = std::thread([this] { work(); });
}

IntentGenerator::~IntentGenerator() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  worker_.join();
}

std::optional<std::string> IntentGenerator::answer(const std::string& hash) const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (auto it = answers_.find(hash); it != answers_.end()) return it->second;
  return std::nullopt;
}

bool IntentGenerator::ask(const std::vector<std::pair<std::string, std::string>>& prompts, std::chrono::milliseconds wait) {
  std::unique_lock<std::mutex> lock(mutex_);
  const auto now = std::chrono::steady_clock::now();
  bool queued = false;
  for (const auto& [hash, prompt] : prompts) {
    if (answers_.count(hash) || pending_.count(hash)) continue;
    if (queue_.size() >= options_.max_queue) {
      spdlog::warn("serve: the LLM queue is full ({} prompts): a prompt is left unasked", queue_.size());
      break;
    }
    queue_.push_back({hash, prompt, now});
    pending_.insert(hash);
    failed_.erase(hash);
    queued = true;
  }
  if (queued) changed_.notify_all();
  const auto all_answered = [&] {
    return std::all_of(prompts.begin(), prompts.end(), [&](const auto& p) { return answers_.count(p.first) > 0; });
  };
  const auto one_failed = [&] {
    return std::any_of(prompts.begin(), prompts.end(), [&](const auto& p) { return failed_.count(p.first) > 0; });
  };
  changed_.wait_for(lock, wait, [&] { return stopping_ || all_answered() || one_failed(); });
  return all_answered();
}

std::size_t IntentGenerator::answers() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return answers_.size();
}

std::size_t IntentGenerator::queued() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return queue_.size();
}

void IntentGenerator::work() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    changed_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (stopping_) return;
    std::vector<Queued> batch;
    const auto now = std::chrono::steady_clock::now();
    while (!queue_.empty() && batch.size() < options_.batch) {
      auto q = std::move(queue_.front());
      queue_.pop_front();
      if (now - q.since > options_.deadline) {  // too old: whoever asked has moved on
        pending_.erase(q.hash);
        failed_.insert(q.hash);
      }
      else batch.push_back(std::move(q));
    }
    if (batch.empty()) continue;
    lock.unlock();
    std::vector<std::string> prompts;
    for (const auto& q : batch) prompts.push_back(q.prompt);
    try {
      backend_->generate(prompts, [&](std::size_t i, const llm::Generation& g) {
        llm::ResponseRecord record{0, "serve", batch[i].hash, backend_->model_name(), g.text, g.prompt_tokens,
                                   g.completion_tokens, g.seconds};
        std::lock_guard<std::mutex> guard(mutex_);
        record.sample = next_record_++;
        store_->append(record);  // flushed: a killed server keeps what it was told
        answers_[batch[i].hash] = g.text;
        pending_.erase(batch[i].hash);
        changed_.notify_all();
      });
    } catch (const std::exception& e) {
      spdlog::warn("serve: the LLM failed on {} prompts (their sessions keep the titles intent): {}", batch.size(),
                   e.what());
    }
    lock.lock();
    if (failed_.size() > 100000) failed_.clear();  // bounded through a long outage (waiters then time out)
    for (const auto& q : batch) {
      pending_.erase(q.hash);  // unanswered ones may be asked again
      if (!answers_.count(q.hash)) failed_.insert(q.hash);
    }
    changed_.notify_all();
  }
}

}  // namespace llm4sbr::serve
