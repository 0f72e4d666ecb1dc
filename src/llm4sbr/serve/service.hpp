// Live recommendations for a session (issue 12): the items a visitor clicked, as the shop's raw ids, in; the
// next items to show and the intents behind them out. The model comes from train::load_trained, the same
// path `llm4sbr evaluate` takes, so a session gets the ranking offline evaluation gives it.
//
// Intents at request time (paper §4.1): the `cache` source is the run's own Stage-1 LLM answer to the
// session's prompt for each view (keyed by the prompt's hash, as responses.jsonl is), when every view has one:
// the very texts the model was trained and evaluated on, encoded and localized as offline. A session nobody
// asked the LLM about gets the `titles` source, computed online exactly as the titles stage does offline (the
// titles of the view's items, encoded with the run's fitted encoder, localized top-r on the catalogue, Eq.
// 4-5); `none` (a plain backbone, or no known item) has no intent.
// Each view's explanation is its text, the catalogue items it was localized to with their cosine
// similarities, and its gate α_v (Eq. 10-11): how much the view weighed in this session's representation.
#pragma once

#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "llm4sbr/intent/intents.hpp"
#include "llm4sbr/serve/intent_generator.hpp"
#include "llm4sbr/serve/request.hpp"
#include "llm4sbr/text/prompts.hpp"
#include "llm4sbr/train/checkpoint.hpp"

namespace llm4sbr::serve {

struct ServeOptions {
  std::int64_t max_session_length = 50;  ///< only the last clicks of a longer session are used (flagged)
  /// Intents for an LLM4SBR model: "auto" (cache, else titles), "titles" (always computed from the titles),
  /// "none" (zero intents: no encoding or localization, the fastest; README "Serving" says what each costs).
  std::string intent_source = "auto";
  /// With "auto": asks this LLM the prompts of a session with no cached answer (intent_generator.hpp); shared
  /// by the services a reload makes, as is its store. Null: no LLM at request time.
  std::shared_ptr<IntentGenerator> llm;
  std::chrono::milliseconds intent_wait{0};  ///< how long a request waits for its LLM answers
};

/// A trained model answering sessions. Thread-safe: concurrent calls share the model (no-grad forward), the
/// fitted encoder and the localizer.
class Service {
 public:
  /// `trained` from load_trained with LoadOptions::text = true (an LLM4SBR model needs its encoder).
  /// Throws Error when an LLM4SBR model has no fitted encoder.
  Service(train::TrainedModel trained, ServeOptions options = {});

  /// The answers to many sessions, with one forward pass of the model: {"items": [{"id", "title", "score"}],
  /// "intent": {"source": "cache"|"titles"|"none", "views": {view: {"text", "gate", "items": [{"id", "title",
  /// "similarity"}]}}}, "unknown_items": [...], "flags": [...], "model"}. Flags: "unknown_items_dropped",
  /// "empty_session_popularity" (no known item: the most clicked items of the training data),
  /// "session_truncated". Scores are the model's logits (higher is better).
  std::vector<nlohmann::json> recommend(const std::vector<RecommendRequest>& requests) const;

  /// With an LLM (ServeOptions::llm): asks it the session's prompts that have no answer yet and waits for them at
  /// most ServeOptions::intent_wait; sets request.intents_generated when they all came. Call before recommend,
  /// outside the micro-batch (the wait must hold up only this request).
  void ask_llm(RecommendRequest& request) const;

  /// Catalogue items whose title contains every word of `query` (case-insensitive), most clicked first.
  std::vector<nlohmann::json> search_items(const std::string& query, std::int64_t limit) const;

  std::int64_t n_items() const { return trained_.dataset->n_items(); }
  /// Whether `raw_id` is an item of the model's catalogue.
  bool knows(const std::string& raw_id) const { return id_of_raw_.count(raw_id) > 0; }
  std::string model_label() const { return trained_.model->label(); }
  /// The LLM asked at request time (--llm), or nullptr.
  const IntentGenerator* llm() const { return options_.llm.get(); }

 private:
  struct Session;
  Session resolve(const RecommendRequest& request) const;
  void load_cached_answers();
  void precompute_titles();
  std::optional<std::string> known_answer(const std::string& prompt_hash) const;
  bool with_intents() const { return !trained_.views.empty() && options_.intent_source != "none"; }
  intent::ViewTextSource view_texts(const std::vector<data::Sample>& samples, std::vector<char>& cached) const;
  nlohmann::json item_json(std::int64_t id) const;
  void prepare_ranking();
  void warm_up() const;
  /// (model id, score) of a session's best items, best first.
  using Ranking = std::vector<std::pair<std::int64_t, float>>;
  std::vector<Ranking> rank_screened(const torch::Tensor& session, const std::vector<RecommendRequest>& requests,
                                     const std::vector<Session>& sessions, const std::vector<std::int64_t>& row_of) const;
  std::vector<Ranking> rank_scores(const torch::Tensor& scores, const std::vector<RecommendRequest>& requests,
                                   const std::vector<Session>& sessions, const std::vector<std::int64_t>& row_of) const;

  train::TrainedModel trained_;
  ServeOptions options_;
  torch::Device device_;  ///< the model's (looked up once: a lookup walks every parameter)
  std::unordered_map<std::string, std::int64_t> id_of_raw_;
  std::vector<std::int64_t> by_popularity_;  ///< model ids, most clicked in the training data first
  std::vector<std::string> lower_titles_;    ///< [k] = title of item k+1, lower case
  std::unique_ptr<intent::IntentLocalizer> index_;
  /// The exact top k of session vectors against the model's scorer table (plus its bias as one more column),
  /// screened in bfloat16 (intent/localizer.hpp's search): the ranking without scoring every item (Beauty, one
  /// session a call: 794 -> 739 µs CPU a request, README "Serving"). Null where the scorer is not a table, the model
  /// is on a GPU, or the table has an all-zero row (which that search skips).
  std::unique_ptr<intent::IntentLocalizer> ranking_;
  bool ranking_has_bias_ = false;
  std::unique_ptr<intent::PrecomputedTexts> titles_;  ///< every catalogue title's intent (precompute_titles), or null
  intent::IntentsOptions intents_options_;
  text::PromptTemplate prompt_template_;
  std::unordered_map<std::string, std::string> cached_answers_;  ///< prompt hash -> the run's Stage-1 answer
  mutable std::mutex encoder_mutex_;  ///< a llama.cpp or OpenAI encoder is not safe under concurrency
};

}  // namespace llm4sbr::serve
