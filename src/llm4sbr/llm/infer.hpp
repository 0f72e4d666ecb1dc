// The intent-inference stage: prompts for every (sample, view) of a split, answered by an LlmBackend and
// recorded in a resumable ResponseStore (paper §4.1, Eq. 1).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "llm4sbr/data/dataset.hpp"
#include "llm4sbr/llm/llm_backend.hpp"
#include "llm4sbr/llm/response_store.hpp"
#include "llm4sbr/text/prompts.hpp"

namespace llm4sbr::llm {

struct InferStats {
  std::int64_t requested = 0;  ///< (sample, view) pairs asked for
  std::int64_t already = 0;    ///< found in the store (a resumed run)
  std::int64_t reused = 0;     ///< answered by an identical prompt's stored answer
  std::int64_t generated = 0;  ///< distinct prompts sent to the backend
};

/// Answers every (sample, view) of `samples` that the store does not hold yet. Identical prompts are
/// generated once; prompts go to the backend in chunks of `chunk` distinct prompts, and every answer is
/// appended to the store as soon as it arrives, so a killed run resumes where it stopped.
InferStats run_inference(const data::PreparedDataset& ds, const std::vector<data::Sample>& samples,
                         const std::vector<std::string>& views, const text::PromptTemplate& tpl, LlmBackend& backend,
                         ResponseStore& store, std::int64_t chunk = 2048);

}  // namespace llm4sbr::llm
