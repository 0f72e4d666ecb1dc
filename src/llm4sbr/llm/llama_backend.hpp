// In-process llama.cpp generation with batched decoding over parallel sequences (the pattern of
// llama.cpp's examples/batched), reusing the KV cache of a prompt prefix a sequence already holds.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>

#include "llm4sbr/llm/llm_backend.hpp"

struct llama_model;
struct llama_context;

namespace llm4sbr::llm {

/// Routes llama.cpp's log lines to spdlog (debug level; warnings and errors as such). Idempotent.
void init_llama_logging();

/// The greedy token of one row of logits [n_vocab]: the first largest, the token llama_sampler_greedy picks,
/// without the [n_vocab] candidate array that llama_sampler_sample builds for it each step (two more passes
/// over the vocabulary a token: ~10 % of `infer`'s time with the tiny test model's 151,936-token vocabulary),
/// the blocks' maxima in SSE lanes. logits: n_vocab ≥ 1 values.
std::int32_t greedy_token(const float* logits, std::int32_t n_vocab);

/// generate()'s schedule: prompts sorted by their tokens (neighbours share their longest prefixes) and split
/// into `n_seq` contiguous runs of prompt indices, one per parallel sequence (before any work stealing).
std::vector<std::vector<std::size_t>> prefix_runs(const std::vector<std::vector<std::int32_t>>& tokens, std::size_t n_seq);

/// The prompt tokens that prefix reuse takes from the KV cache instead of computing them, over `runs`: each
/// prompt after the first of its run re-uses its common prefix with the previous one, all but its last token
/// (decoded for its logits).
std::int64_t reused_prompt_tokens(const std::vector<std::vector<std::int32_t>>& tokens,
                                  const std::vector<std::vector<std::size_t>>& runs);

/// Prefill work of a set of prompts (LlamaBackend::count_prefill), in tokens.
struct PrefillCount {
  std::int64_t prompts = 0;
  std::int64_t prompt_tokens = 0;  ///< of the chat-formatted prompts
  std::int64_t reused_tokens = 0;  ///< of which prefix reuse takes from the KV cache (computed: the rest)

  PrefillCount& operator+=(const PrefillCount& o);
};

class LlamaBackend : public LlmBackend {
 public:
  /// Loads a GGUF chat model. Throws InputError naming the file if it is missing or fails to load.
  LlamaBackend(const std::filesystem::path& model_file, GenerationOptions options);
  ~LlamaBackend() override;

  /// Prompts are sorted so that consecutive prompts share long prefixes (Beauty's augmented samples of one
  /// user share almost their whole prompt) and split into contiguous runs, one per parallel sequence; a
  /// sequence keeps its KV cache between prompts and only decodes the part after the common prefix.
  void generate(const std::vector<std::string>& prompts,
                const std::function<void(std::size_t, const Generation&)>& on_done) override;
  std::string model_name() const override { return name_; }

  /// What generate() would prefill for `prompts`, counted without decoding: their tokens and those prefix
  /// reuse keeps (llm.parallel sequences, no work stealing, which in generate() only moves the tail of a run).
  PrefillCount count_prefill(const std::vector<std::string>& prompts) const;

  /// The chat-formatted text of a user prompt (the model's own template; the raw prompt if it has none).
  std::string format_chat(const std::string& prompt) const;
  /// Tokens of a text (special tokens parsed, BOS as the vocabulary wants).
  std::vector<std::int32_t> tokenize(const std::string& text) const;

  std::string system_prompt;  ///< optional system message ("" = none)

 private:
  /// The chat-formatted prompts' tokens; Error for a prompt without any.
  std::vector<std::vector<std::int32_t>> chat_tokens(const std::vector<std::string>& prompts) const;
  /// Parallel sequences for a call with this many prompts: llm.parallel, at most one per prompt.
  std::size_t sequences_for(std::size_t prompts) const;

  GenerationOptions options_;
  std::string name_;
  llama_model* model_ = nullptr;
};

}  // namespace llm4sbr::llm
