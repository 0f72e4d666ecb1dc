// Stage 1 of `llm4sbr run` as one cached step (DESIGN.md "Pipeline"): the view texts of every sample
// (LLM answers, or item titles for the LLM-free source), a text encoder fitted once, and the localized
// intents of each split, each in a stage directory named by a hash of its inputs and settings:
//
//   <stages>/encoder-<key>/             the fitted text encoder (encoder.json + its files)
//   <stages>/responses-<key>/<split>/   responses.jsonl of the LLM (resumable; llm source only), or the
//                                       checked copy of answers made by hand (intent.responses_dir)
//   <stages>/intents-<key>/<split>/     intents.npy, localization.jsonl, done.json
//
// Changing only training or evaluation settings changes none of these keys, so a re-run re-uses them.
//
// Stage 1 run by hand (`infer --shard` + `merge`, or `encode` + `localize`) enters here through
// `intent.responses_dir` (answers, encoded and localized by the run's own stages) or `intent.intents_dir`
// (finished intents, used as they are); both are checked against the prepared data first.
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
  std::string kind;     ///< "llm", "titles", "responses" (intent.responses_dir) or "intents" (intent.intents_dir)
  std::string llm;      ///< the LLM spec ("llama:PATH.gguf", "openai:URL") when kind == "llm"
  std::string reason;   ///< why this source was chosen (for logs and reports)
  std::filesystem::path dir;  ///< the folder given by hand when kind is "responses" or "intents"
  /// "titles", "llm <spec>", "responses DIR" or "intents DIR": what a results table says the intents came from.
  std::string describe() const;
};

/// The text encoder `embed.encoder` (default "tfidf"; settings embed.*), fitted on the item titles of
/// `ds` if it needs fitting and saved into `dir`; re-used from `dir` when it holds a finished encoder.
std::unique_ptr<embed::TextEncoder> fitted_encoder(const Config& cfg, const data::PreparedDataset& ds,
                                                   const std::filesystem::path& dir);

/// The LLM answers of one split's responses.jsonl as a ViewTextSource: the response of each (sample,
/// view). Throws Error naming the file, sample and view when an answer is missing.
ViewTextSource response_text_source(const std::filesystem::path& responses_jsonl);

/// Resolves the intent source: `intent.responses_dir` or `intent.intents_dir` when set (Stage 1 run by
/// hand; at most one of them), else `intent.source`: "llm" (needs `llm.model`), "titles", or "auto" (the
/// default): the LLM when `llm.model` names a GGUF file that exists or a server, else the titles source
/// with a warning that says how to get a model. Throws ConfigError for an unknown source, for "llm"
/// without a usable model, and for both folders set or a folder that does not exist.
IntentSource resolve_intent_source(const Config& cfg);

/// The keys of intent.* (run_intent_stage, resolve_intent_source, check_intent_settings).
const SettingsSchema& intent_settings();

/// Checks the intent settings without doing any work or logging: intent.source, llm.model (a
/// `llama:` path or `openai:` URL; the file must exist when the source is `llm`), intent.top_r >= 0,
/// intent.localizer, intent.responses_dir / intent.intents_dir. Throws ConfigError naming the key.
void check_intent_settings(const Config& cfg);

/// True when Stage 1 was run by hand: intent.responses_dir or intent.intents_dir is set (ConfigError as
/// resolve_intent_source for both, or a folder that does not exist).
bool stage1_by_hand(const Config& cfg);

/// Checks Stage 1 made by hand against `ds` before anything trains (a no-op for the llm and titles
/// sources). Answers (intent.responses_dir, <split>/responses.jsonl as `infer` or `merge` write them)
/// must answer exactly the prompts that ds and the prompt.* and intent.views settings give, every
/// (sample, view) once; they are then copied into the run's responses stage, where run_intent_stage
/// finds them. Intents (intent.intents_dir, <split>/ as `localize` writes it) must have ds's sample count,
/// catalogue and samples, and the configured views and top-r. Throws InputError naming the file and
/// field, or Error listing the answers that do not fit (file:line).
void check_given_stage1(const Config& cfg, const data::PreparedDataset& ds, const std::string& data_key,
                        const std::filesystem::path& stages_dir);

/// The localization settings of a run (intent.top_r, intent.normalize_weights, intent.localizer) for `views`.
IntentsOptions intents_options_from_config(const Config& cfg, const std::vector<std::string>& views);

/// The finished Stage 1 of a run.
struct IntentStage {
  IntentSource source;
  std::vector<std::string> views;  ///< intents.npy's second axis
  std::int64_t dim = 0;            ///< d_text
  torch::Tensor train, valid, test;  ///< [n_samples, V, d_text] float32 per split (undefined for an empty split)
  std::filesystem::path dir;       ///< the intents-<key> directory
  std::filesystem::path encoder_dir;  ///< the encoder-<key> directory of the text encoder behind them
  /// The responses-<key> directory of the LLM answers behind them (<split>/responses.jsonl); "" for titles
  /// and for intents given by hand.
  std::filesystem::path responses_dir;
};

/// Runs (or re-uses) Stage 1 for every split of `ds`. `data_key` identifies the prepared data (the
/// prepare stage's hash). Settings: intent.source, intent.views, intent.top_r, intent.normalize_weights,
/// intent.localizer, intent.responses_dir, intent.intents_dir, embed.encoder (+ embed.*), prompt.*, llm.*.
/// Throws ConfigError for bad settings, Error when an LLM answer is missing after inference, and what
/// check_given_stage1 throws.
IntentStage run_intent_stage(const Config& cfg, const data::PreparedDataset& ds, const std::string& data_key,
                             const std::filesystem::path& stages_dir);

}  // namespace llm4sbr::intent
