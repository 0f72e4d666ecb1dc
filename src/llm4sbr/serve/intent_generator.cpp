#include "llm4sbr/serve/intent_generator.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace llm4sbr::serve {

IntentGenerator::IntentGenerator(std::unique_ptr<llm::LlmBackend> backend, const std::filesystem::path& store,
                                 IntentGeneratorOptions options)
    : state_(std::make_shared<State>()) {
  state_->backend = std::move(backend);
  state_->options = options;
  std::filesystem::create_directories(store.parent_path());
  state_->store = std::make_unique<llm::ResponseStore>(store);
  for (const auto& [key, record] : state_->store->records()) {
    state_->answers[record.prompt_hash] = record.response;
    state_->next_record = std::max(state_->next_record, record.sample + 1);
  }
  spdlog::info("serve: {} asks for intents nobody asked yet; {} answers in {}", state_->backend->model_name(),
               state_->answers.size(), store.string());
  worker_ = std::thread([state = state_] { work(state); });
}

IntentGenerator::~IntentGenerator() {
  std::unique_lock<std::mutex> lock(state_->mutex);
  state_->stopping = true;
  state_->changed.notify_all();
  if (state_->changed.wait_for(lock, std::chrono::seconds(2), [&] { return state_->done; })) {
    lock.unlock();
    worker_.join();
  } else {
    spdlog::warn("serve: the LLM is still answering a batch: not waiting for it");
    worker_.detach();  // it holds the state; the process ends without it
  }
}

std::optional<std::string> IntentGenerator::answer(const std::string& hash) const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  if (auto it = state_->answers.find(hash); it != state_->answers.end()) return it->second;
  return std::nullopt;
}

bool IntentGenerator::ask(const std::vector<std::pair<std::string, std::string>>& prompts, std::chrono::milliseconds wait) {
  auto& s = *state_;
  std::unique_lock<std::mutex> lock(s.mutex);
  const auto now = std::chrono::steady_clock::now();
  bool queued = false;
  for (const auto& [hash, prompt] : prompts) {
    if (s.answers.count(hash) || s.pending.count(hash)) continue;
    if (s.queue.size() >= s.options.max_queue) {
      spdlog::warn("serve: the LLM queue is full ({} prompts): a prompt is left unasked", s.queue.size());
      break;
    }
    s.queue.push_back({hash, prompt, now});
    s.pending.insert(hash);
    s.failed.erase(hash);
    queued = true;
  }
  if (queued) s.changed.notify_all();
  const auto all_answered = [&] {
    return std::all_of(prompts.begin(), prompts.end(), [&](const auto& p) { return s.answers.count(p.first) > 0; });
  };
  const auto one_failed = [&] {
    return std::any_of(prompts.begin(), prompts.end(), [&](const auto& p) { return s.failed.count(p.first) > 0; });
  };
  if (s.llm_down) wait = std::chrono::milliseconds(0);  // a failing LLM must not slow every new session down
  s.changed.wait_for(lock, wait, [&] { return s.stopping || all_answered() || one_failed(); });
  return all_answered();
}

std::size_t IntentGenerator::answers() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->answers.size();
}

std::size_t IntentGenerator::queued() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->queue.size();
}

void IntentGenerator::work(const std::shared_ptr<State>& state) {
  auto& s = *state;
  std::unique_lock<std::mutex> lock(s.mutex);
  for (;;) {
    s.changed.wait(lock, [&] { return s.stopping || !s.queue.empty(); });
    if (s.stopping) break;
    std::vector<Queued> batch;
    const auto now = std::chrono::steady_clock::now();
    while (!s.queue.empty() && batch.size() < s.options.batch) {
      auto q = std::move(s.queue.front());
      s.queue.pop_front();
      if (now - q.since > s.options.deadline) {  // too old: whoever asked has moved on
        s.pending.erase(q.hash);
        s.failed.insert(q.hash);
      } else {
        batch.push_back(std::move(q));
      }
    }
    if (batch.empty()) continue;
    lock.unlock();
    std::vector<std::string> prompts;
    for (const auto& q : batch) prompts.push_back(q.prompt);
    bool failed = false;
    try {
      s.backend->generate(prompts, [&](std::size_t i, const llm::Generation& g) {
        llm::ResponseRecord record{0, "serve", batch[i].hash, s.backend->model_name(), g.text, g.prompt_tokens,
                                   g.completion_tokens, g.seconds};
        std::lock_guard<std::mutex> guard(s.mutex);
        record.sample = s.next_record++;
        s.store->append(record);  // flushed: a killed server keeps what it was told
        s.answers[batch[i].hash] = g.text;
        s.pending.erase(batch[i].hash);
        s.llm_down = false;
        s.changed.notify_all();
      });
    } catch (const std::exception& e) {
      failed = true;
      spdlog::warn("serve: the LLM failed on {} prompts (their sessions keep the titles intent; requests do not "
                   "wait for it until it answers again): {}",
                   batch.size(), e.what());
    }
    lock.lock();
    if (failed) s.llm_down = true;
    if (s.failed.size() > 100000) s.failed.clear();  // bounded through a long outage (waiters then time out)
    for (const auto& q : batch) {
      s.pending.erase(q.hash);  // unanswered ones may be asked again
      if (!s.answers.count(q.hash)) s.failed.insert(q.hash);
    }
    s.changed.notify_all();
  }
  s.done = true;
  s.changed.notify_all();
}

}  // namespace llm4sbr::serve
