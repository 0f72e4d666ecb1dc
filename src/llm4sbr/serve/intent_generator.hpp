// The `llm` intent source of the service (issue 12, "Intents at request time" (b)): a session whose prompts the
// run never asked gets them asked now, in the background. A request queues its missing prompts (a bounded
// queue; prompts older than the deadline are dropped unasked), one worker asks the LLM (llama.cpp in-process
// or OpenAI-compatible servers, llm_backend.hpp) in batches, and each answer is kept in memory and appended to
// a responses.jsonl store, so that the same prompt is answered from there from then on, across restarts. A
// request waits for its answers at most `intent_wait_ms` (0: never; it is answered with the titles intent and
// the next request with that prompt finds the answer). An LLM that fails (a server down) costs only the
// answers: the worker logs it and goes on with the next batch.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "llm4sbr/llm/llm_backend.hpp"
#include "llm4sbr/llm/response_store.hpp"

namespace llm4sbr::serve {

struct IntentGeneratorOptions {
  std::size_t max_queue = 1000;                ///< prompts waiting at most; more are dropped (asked again later)
  std::chrono::milliseconds deadline{30000};  ///< a prompt queued longer is dropped unasked
  std::size_t batch = 8;                       ///< prompts per LLM call
};

/// Thread-safe. While the LLM is failing (its last batch failed), requests do not wait for answers.
class IntentGenerator {
 public:
  /// Opens (or creates) `store` and keeps its answers. Throws what ResponseStore throws (another process holds
  /// it, a corrupt line).
  IntentGenerator(std::unique_ptr<llm::LlmBackend> backend, const std::filesystem::path& store,
                  IntentGeneratorOptions options = {});
  /// Stops the worker after the batch in flight, or leaves it behind after 2 s (an LLM call can take minutes).
  ~IntentGenerator();
  IntentGenerator(const IntentGenerator&) = delete;
  IntentGenerator& operator=(const IntentGenerator&) = delete;

  /// The answer to the prompt with this hash, once generated (or found in the store).
  std::optional<std::string> answer(const std::string& hash) const;
  /// Queues the prompts (hash, user message) that have no answer and are not queued yet; then waits until all of
  /// them have an answer, the LLM failed on one of them, or `wait` has passed. Returns whether all have one.
  bool ask(const std::vector<std::pair<std::string, std::string>>& prompts, std::chrono::milliseconds wait);

  std::size_t answers() const;  ///< answers held
  std::size_t queued() const;   ///< prompts waiting

 private:
  struct Queued {
    std::string hash, prompt;
    std::chrono::steady_clock::time_point since;
  };
  // Everything the worker touches, shared with it: at shutdown a worker stuck in a slow LLM call is left to
  // finish on its own (detached) instead of holding the process, and what it uses stays alive.
  struct State {
    std::unique_ptr<llm::LlmBackend> backend;
    IntentGeneratorOptions options;
    std::unique_ptr<llm::ResponseStore> store;
    std::int64_t next_record = 0;  ///< the `sample` field of the next record (the store keys records by it)
    std::mutex mutex;
    std::condition_variable changed;
    std::unordered_map<std::string, std::string> answers;  ///< prompt hash -> answer
    std::deque<Queued> queue;
    std::unordered_set<std::string> pending;  ///< queued or being asked
    std::unordered_set<std::string> failed;   ///< asked last time without an answer: their waiters stop waiting
    bool llm_down = false;                    ///< the last batch failed: requests do not wait until one succeeds
    bool stopping = false, done = false;
  };
  static void work(const std::shared_ptr<State>& state);

  std::shared_ptr<State> state_;
  std::thread worker_;
};

}  // namespace llm4sbr::serve
