// The intent-inference stage: prompts for every (sample, view) of one or more splits, answered by an
// LlmBackend and recorded in resumable ResponseStores (paper §4.1, Eq. 1), optionally one shard of many.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "llm4sbr/data/dataset.hpp"
#include "llm4sbr/llm/llama_backend.hpp"
#include "llm4sbr/llm/llm_backend.hpp"
#include "llm4sbr/llm/response_store.hpp"
#include "llm4sbr/llm/shard.hpp"
#include "llm4sbr/text/prompts.hpp"

namespace llm4sbr::llm {

/// One split's share of a job: its samples and the store its answers go to (not owned).
struct InferTask {
  std::vector<data::Sample> samples;
  ResponseStore* store = nullptr;
};

struct InferOptions {
  std::int64_t chunk = 2048;  ///< distinct prompts handed to the backend per generate() call
  Shard shard;                ///< the part of the prompts this run answers (default: all of them)
};

struct InferStats {
  std::int64_t requested = 0;     ///< (sample, view) pairs of this shard
  std::int64_t other_shards = 0;  ///< pairs left to the other shards
  std::int64_t already = 0;       ///< found in the store (a resumed run)
  std::int64_t reused = 0;        ///< answered by an identical prompt's answer
  std::int64_t generated = 0;     ///< distinct prompts sent to the backend
};

/// Answers every (sample, view) of every task that its store does not hold yet and that `options.shard`
/// holds. Identical prompts (across the tasks too) are generated once; prompts go to the backend in chunks
/// of `options.chunk`, and every answer is appended to its store as soon as it arrives, so a killed run
/// resumes where it stopped. One progress bar covers the whole job (prompts/s, prompt and generated
/// tokens/s, ETA); the backend's summary is logged at the end. Throws what the backend throws.
InferStats run_inference(const data::PreparedDataset& ds, const std::vector<InferTask>& tasks,
                         const std::vector<std::string>& views, const text::PromptTemplate& tpl, LlmBackend& backend,
                         const InferOptions& options = {});

/// The prefill work of answering every distinct prompt of `splits` × `views` in `options.shard` (stored
/// answers or not) with `backend`, counted without generating: run_inference's order and chunks
/// (`options.chunk` prompts per generate() call, each with a fresh KV cache), each chunk's prompt tokens and
/// those prefix reuse keeps (LlamaBackend::count_prefill). Shows progress (prompts/s, ETA).
PrefillCount count_prefill(const data::PreparedDataset& ds, const std::vector<std::vector<data::Sample>>& splits,
                           const std::vector<std::string>& views, const text::PromptTemplate& tpl,
                           const LlamaBackend& backend, const InferOptions& options = {});

}  // namespace llm4sbr::llm
