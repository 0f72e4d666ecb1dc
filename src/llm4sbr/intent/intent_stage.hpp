// Stage 1 of `llm4sbr run` as one cached step (DESIGN.md "Pipeline"): the view texts of every sample
// (LLM answers, or item titles for the LLM-free source), a text encoder fitted once, and the localized
// intents of each split, each in a stage directory named by a hash of its inputs and settings:
//
//   <stages>/encoder-<key>/             the fitted text encoder (encoder.json + its files)
//   <stages>/responses-<key>/<split>/   responses.jsonl of the LLM (resumable; llm source only)
//   <stages>/intents-<key>/<split>/     intents.npy, localization.jsonl, done.json
//
// Changing only training or evaluation settings changes none of these keys, so a re-run re-uses them.
#pragma once

#include <torch/torch.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/data/dataset.hpp"
#include "llm4sbr/embed/text_encoder.hpp"
#include "llm4sbr/intent/intents.hpp"
#include "llm4sbr/core/settings.hpp"

namespace llm4sbr::intent {

/// Where the view texts come from, after resolving `intent.source`.
struct IntentSource {
  std::string kind;     ///< "llm" or "titles"
  std::string llm;      ///< the LLM spec ("llama:PATH.gguf", "openai:URL") when kind == "llm"
  std::string reason;   ///< why this source was chosen (for logs and reports)
  /// "titles" or "llm <spec>": what a results table says the intents came from.
  std::string describe() const;
};

/// The text encoder `embed.encoder` (default "tfidf"; settings embed.*), fitted on the item titles of
/// `ds` if it needs fitting and saved into `dir`; re-used from `dir` when it holds a finished encoder.
std::unique_ptr<embed::TextEncoder> fitted_encoder(const Config& cfg, const data::PreparedDataset& ds,
                                                   const std::filesystem::path& dir);

/// The LLM answers of one split's responses.jsonl as a ViewTextSource: the response of each (sample,
/// view). Throws Error naming the file, sample and view when an answer is missing.
ViewTextSource response_text_source(const std::filesystem::path& responses_jsonl);

/// Resolves `intent.source`: "llm" (needs `llm.model`), "titles", or "auto" (the default): the LLM when
/// `llm.model` names a GGUF file that exists or a server, else the titles source with a warning that says
/// how to get a model. Throws ConfigError for an unknown source, and for "llm" without a usable model.
IntentSource resolve_intent_source(const Config& cfg);

/// The keys of intent.* (run_intent_stage, resolve_intent_source, check_intent_settings).
const SettingsSchema& intent_settings();

/// Checks the intent settings without doing any work or logging: intent.source, llm.model (a
/// `llama:` path or `openai:` URL; the file must exist when the source is `llm`), intent.top_r >= 0,
/// intent.localizer. Throws ConfigError naming the key.
void check_intent_settings(const Config& cfg);

/// The finished Stage 1 of a run.
struct IntentStage {
  IntentSource source;
  std::vector<std::string> views;  ///< intents.npy's second axis
  std::int64_t dim = 0;            ///< d_text
  torch::Tensor train, valid, test;  ///< [n_samples, V, d_text] float32 per split (undefined for an empty split)
  std::filesystem::path dir;       ///< the intents-<key> directory
  std::filesystem::path encoder_dir;  ///< the encoder-<key> directory of the text encoder behind them
};

/// Runs (or re-uses) Stage 1 for every split of `ds`. `data_key` identifies the prepared data (the
/// prepare stage's hash). Settings: intent.source, intent.views, intent.top_r, intent.normalize_weights,
/// intent.localizer, embed.encoder (+ embed.*), prompt.*, llm.*. Throws ConfigError for bad settings,
/// Error when an LLM answer is missing after inference.
IntentStage run_intent_stage(const Config& cfg, const data::PreparedDataset& ds, const std::string& data_key,
                             const std::filesystem::path& stages_dir);

}  // namespace llm4sbr::intent
