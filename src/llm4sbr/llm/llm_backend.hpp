// The seam of the intent-inference stage (DESIGN.md, "Interfaces"): many prompts in, answers out, so that
// a backend can batch them. Implementations: llama.cpp in-process (llama_backend.hpp) and any
// OpenAI-compatible HTTP server (vLLM, llama-server, Ollama, TGI), several at once (openai_backend.hpp).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/core/settings.hpp"

namespace llm4sbr::llm {

struct GenerationOptions {
  std::int64_t max_tokens = 64;      ///< generated tokens per answer at most
  double temperature = 0.0;          ///< 0 = greedy (deterministic, the default)
  std::uint32_t seed = 42;           ///< sampling seed when temperature > 0 (mixed with each prompt: prompt_seed)
  std::vector<std::string> stop;     ///< an answer is cut at the first of these strings
  std::int64_t parallel = 8;         ///< sequences decoded together (one llama_decode serves all)
  std::int64_t batch_tokens = 2048;  ///< tokens per llama_decode call at most
  std::int64_t threads = 0;          ///< CPU threads (0 = all cores)
  std::int64_t context = 0;          ///< KV cells per sequence (0 = longest prompt + max_tokens)
  std::int64_t gpu_layers = -1;      ///< layers llama.cpp offloads to a GPU backend (-1 = all, 0 = none)
};

/// Reads `llm.max_tokens`, `llm.temperature`, `llm.seed`, `llm.stop`, `llm.parallel`, `llm.batch_tokens`,
/// `llm.threads`, `llm.context`, `llm.gpu_layers`.
GenerationOptions generation_options_from_config(const Config& cfg);

/// The keys of llm.* (generation_options_from_config, make_llm_backend, the inference chunk) and of
/// llm.http.* (http::PoolOptions).
const std::vector<SettingsSchema>& llm_settings();

/// The sampling seed of one prompt: `seed` (llm.seed) mixed with the prompt's hash, so that a sampled answer
/// depends only on its prompt and llm.seed, not on its batch, its decoding slot or whether the run resumed.
std::uint32_t prompt_seed(std::uint32_t seed, const std::string& prompt);

struct Generation {
  std::string text;                    ///< the answer, stop string and surrounding white space removed
  std::int64_t prompt_tokens = 0;      ///< tokens of the chat-formatted prompt
  std::int64_t reused_tokens = 0;      ///< of which were already in the KV cache (shared prefix)
  std::int64_t completion_tokens = 0;  ///< generated tokens
  double seconds = 0;                  ///< from the prompt's first decode to its last token
};

class LlmBackend {
 public:
  virtual ~LlmBackend() = default;
  /// Answers every prompt (the user message; the backend applies the model's chat template). Calls
  /// on_done(index, generation) as each answer finishes, in any order, on the calling thread, so the
  /// caller can store it at once. Throws Error if the model cannot run (the answers already delivered
  /// stay delivered).
  virtual void generate(const std::vector<std::string>& prompts,
                        const std::function<void(std::size_t, const Generation&)>& on_done) = 0;
  /// "llama:<file name>" or "openai:<model>", stored with every response. The HTTP backend leaves the
  /// server URLs out: the answer does not depend on which server of the set gave it.
  virtual std::string model_name() const = 0;
  /// Logs what the backend knows about its run when the job ends (the HTTP backend: requests, failures
  /// and latency percentiles per endpoint). Default: nothing.
  virtual void log_summary() const {}
};

/// Builds a backend from a spec and the run config:
///   "llama:PATH.gguf"        in-process llama.cpp (LlamaBackend);
///   "openai:URL[,URL...]"    OpenAI-compatible /v1/chat/completions servers (OpenAiBackend), model name
///                            `llm.api_model`, transport settings `llm.http.*` (http::PoolOptions).
/// Throws ConfigError for an unknown kind or bad setting, InputError for a model file that is missing or
/// not a GGUF chat model.
std::unique_ptr<LlmBackend> make_llm_backend(const std::string& spec, const Config& cfg);

/// An answer without the white space around it (both backends deliver answers this way).
std::string trim_answer(const std::string& text);

}  // namespace llm4sbr::llm
