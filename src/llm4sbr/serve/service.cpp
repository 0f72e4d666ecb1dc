#include "llm4sbr/serve/service.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <numeric>
#include <sstream>
#include <unordered_set>

#include "llm4sbr/core/error.hpp"
#include "llm4sbr/core/linalg.hpp"
#include "llm4sbr/core/runtime.hpp"
#include "llm4sbr/intent/intent_stage.hpp"
#include "llm4sbr/intent/titles_source.hpp"
#include "llm4sbr/llm/response_store.hpp"
#include "llm4sbr/llm/shard.hpp"
#include "llm4sbr/models/batch.hpp"
#include "llm4sbr/train/device.hpp"

namespace llm4sbr::serve {

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

}  // namespace

struct Service::Session {
  std::vector<std::int64_t> items;  ///< known model ids, the last max_session_length clicks
  std::vector<std::string> unknown;
  std::vector<std::string> flags;
};

Service::Service(train::TrainedModel trained, ServeOptions options)
    : trained_(std::move(trained)), options_(options), device_(train::device_of(*trained_.model)) {
  // Before the work below (the titles' precomputation takes seconds).
  if (options_.intent_source != "auto" && options_.intent_source != "titles" && options_.intent_source != "none")
    throw ConfigError(fmt::format("serve: intent source '{}': auto, titles or none", options_.intent_source));
  const auto& ds = *trained_.dataset;
  for (const auto& item : ds.items) {
    id_of_raw_.emplace(item.raw_id, item.id);
    lower_titles_.push_back(lower(item.title));
  }
  // Clicks of the training sessions: the popularity fallback and the order of title search results.
  std::vector<std::int64_t> clicks(static_cast<std::size_t>(ds.n_items()) + 1, 0);
  std::unordered_set<std::int64_t> train_sessions;
  for (const auto& s : ds.train) train_sessions.insert(s.session);
  for (const auto s : train_sessions)
    for (const auto id : ds.sessions[static_cast<std::size_t>(s)].items) ++clicks[static_cast<std::size_t>(id)];
  by_popularity_.resize(static_cast<std::size_t>(ds.n_items()));
  std::iota(by_popularity_.begin(), by_popularity_.end(), 1);
  std::stable_sort(by_popularity_.begin(), by_popularity_.end(),
                   [&](std::int64_t a, std::int64_t b) { return clicks[static_cast<std::size_t>(a)] > clicks[static_cast<std::size_t>(b)]; });
  prepare_ranking();
  if (!trained_.views.empty()) {
    auto online = train::online_intents(trained_);
    index_ = std::move(online.index);
    intents_options_ = online.options;
    if (options_.intent_source != "none" && trained_.encoder->concurrent()) precompute_titles();
    if (options_.intent_source == "auto") load_cached_answers();
    if (options_.llm && trained_.responses_dir.empty())
      spdlog::warn("serve: {} was trained on titles intents: the LLM's answers at request time are not what it learned "
                   "from", trained_.model->label());
    prompt_template_ = text::prompt_template_from_config(trained_.config);
  }
  warm_up();
}

// One pass before any request: a model that builds state on its first evaluation pass (S²-DHCN's convolved items
// and its sparse layouts) builds it here, not in the first passes the workers run side by side, which would
// write it at once.
void Service::warm_up() const {
  if (by_popularity_.empty()) return;
  RecommendRequest request;
  request.items = {trained_.dataset->items[static_cast<std::size_t>(by_popularity_.front() - 1)].raw_id};
  request.k = 1;
  recommend({request});
}

void Service::prepare_ranking() {
  const auto scorer = trained_.model->linear_scorer();
  if (!device_.is_cpu() || !scorer.defined()) return;
  torch::NoGradGuard no_grad;
  auto table = scorer.weight.detach().to(torch::kFloat32);
  ranking_has_bias_ = scorer.bias.defined();
  if (ranking_has_bias_) table = torch::cat({table, scorer.bias.detach().to(torch::kFloat32).unsqueeze(1)}, 1);  // [s, 1]·[e, b]
  try {
    auto index = intent::make_blocked_localizer(table.contiguous());
    if (index->size() == table.size(0)) ranking_ = std::move(index);
  } catch (const std::exception& e) {  // a table with NaN or Inf: every item's score, as the model computes them
    spdlog::warn("serve: {}: ranking by the scores of every item ({})", model_label(), e.what());
  }
}

// Every catalogue title encoded and localized now: the short view of any session is its last item's title,
// and every view of a one-click session is that title, so most requests find a view's intent here instead of
// encoding and localizing it. Only for an in-process encoder (one safe under concurrency: TF-IDF, 1-2 s for
// Beauty's 12,101 titles); a llama.cpp or HTTP encoder would add minutes to every start and reload.
void Service::precompute_titles() {
  const auto& ds = *trained_.dataset;
  std::vector<data::Sample> one_click;
  for (const auto& item : ds.items) one_click.push_back({item.id, 0, {item.id}, item.id});
  titles_ = std::make_unique<intent::PrecomputedTexts>(
      intent::precompute_texts(intent::view_texts(ds, one_click, "short"), *trained_.encoder, *index_, intents_options_));
  release_freed_memory();  // the localization's [queries, items] score blocks: ~60 MB the server would keep
  spdlog::info("serve: {} catalogue titles encoded and localized ahead of requests", titles_->row_of.size());
}

// Every answer of the run's responses.jsonl files, by prompt hash (the same prompt asked for two samples has
// one answer).
void Service::load_cached_answers() {
  const auto& dir = trained_.responses_dir;
  if (dir.empty()) return;
  if (!std::filesystem::is_directory(dir)) {
    spdlog::warn("serve: the LLM answers of this model's intents ({}) are not there: every session gets titles intents",
                 dir.string());
    return;
  }
  for (const char* split : {"train", "valid", "test"}) {
    const auto file = dir / split / "responses.jsonl";
    if (!std::filesystem::exists(file)) continue;
    for (auto& [line, record] : llm::read_response_file(file)) cached_answers_[record.prompt_hash] = std::move(record.response);
  }
  spdlog::info("serve: {} cached LLM answers from {}", cached_answers_.size(), dir.string());
}

// A Stage-1 answer of the run, else one the LLM gave at request time.
std::optional<std::string> Service::known_answer(const std::string& prompt_hash) const {
  if (auto it = cached_answers_.find(prompt_hash); it != cached_answers_.end()) return it->second;
  if (options_.llm) return options_.llm->answer(prompt_hash);
  return std::nullopt;
}

void Service::ask_llm(RecommendRequest& request) const {
  if (!options_.llm || !with_intents() || options_.intent_source != "auto") return;
  const auto session = resolve(request);
  if (session.items.empty()) return;
  std::vector<std::pair<std::string, std::string>> missing;
  llm::for_each_prompt(*trained_.dataset, {{0, 0, session.items, 1}}, trained_.views, prompt_template_,
                       [&](llm::PromptKey&& key) {
                         if (!known_answer(key.hash)) missing.emplace_back(key.hash, std::move(key.prompt));
                       });
  if (!missing.empty()) request.intents_generated = options_.llm->ask(missing, options_.intent_wait);
}

// The view texts of a pass: a session's cached LLM answers when every view's prompt has one (cached[row] = 1),
// else its titles. Sample::id is the row in the pass.
intent::ViewTextSource Service::view_texts(const std::vector<data::Sample>& samples, std::vector<char>& cached) const {
  const auto& ds = *trained_.dataset;
  cached.assign(samples.size(), 0);
  auto titles = intent::titles_text_source(ds);
  if (cached_answers_.empty() && !options_.llm) return titles;
  const auto n_views = trained_.views.size();
  const auto keys = llm::prompt_keys(ds, samples, trained_.views, prompt_template_);  // sample-major, view-minor
  auto answers = std::make_shared<std::map<std::pair<std::int64_t, std::string>, std::string>>();
  for (std::size_t i = 0; i < samples.size(); ++i) {
    std::vector<std::optional<std::string>> found;
    for (std::size_t v = 0; v < n_views; ++v) found.push_back(known_answer(keys[i * n_views + v].hash));
    // All views from one source: the model never saw answers mixed with titles.
    if (!std::all_of(found.begin(), found.end(), [](const auto& a) { return a.has_value(); })) continue;
    cached[i] = 1;
    for (std::size_t v = 0; v < n_views; ++v) (*answers)[{samples[i].id, trained_.views[v]}] = *found[v];
  }
  return [titles, answers](const std::vector<data::Sample>& s, const std::string& view) {
    auto texts = titles(s, view);
    for (std::size_t i = 0; i < s.size(); ++i)
      if (auto it = answers->find({s[i].id, view}); it != answers->end()) texts[i] = it->second;
    return texts;
  };
}

Service::Session Service::resolve(const RecommendRequest& request) const {
  Session s;
  for (const auto& raw : request.items) {
    const auto it = id_of_raw_.find(raw);
    if (it == id_of_raw_.end()) s.unknown.push_back(raw);
    else s.items.push_back(it->second);
  }
  if (!s.unknown.empty()) s.flags.push_back("unknown_items_dropped");
  if (static_cast<std::int64_t>(s.items.size()) > options_.max_session_length) {
    s.items.erase(s.items.begin(), s.items.end() - options_.max_session_length);
    s.flags.push_back("session_truncated");
  } else if (request.truncated) {
    s.flags.push_back("session_truncated");
  }
  if (s.items.empty()) s.flags.push_back("empty_session_popularity");
  return s;
}

nlohmann::json Service::item_json(std::int64_t id) const {
  const auto& item = trained_.dataset->items[static_cast<std::size_t>(id - 1)];
  return {{"id", item.raw_id}, {"title", item.title}};
}

std::vector<nlohmann::json> Service::recommend(const std::vector<RecommendRequest>& requests) const {
  c10::InferenceMode inference;  // no autograd bookkeeping (version counters, views) on the many small tensors of a pass
  const auto& ds = *trained_.dataset;
  std::vector<Session> sessions;
  std::vector<data::Sample> samples;  // the sessions the model answers; Sample::id = row in the batch
  std::vector<std::int64_t> row_of(requests.size(), -1);
  for (std::size_t i = 0; i < requests.size(); ++i) {
    sessions.push_back(resolve(requests[i]));
    if (sessions.back().items.empty()) continue;
    row_of[i] = static_cast<std::int64_t>(samples.size());
    samples.push_back({row_of[i], 0, sessions.back().items, 1});
  }

  torch::Tensor gates;
  std::vector<Ranking> ranked;  // [row]
  intent::MemoryIntents intents;
  std::vector<char> cached;  // [row]: intents from the cached LLM answers
  if (!samples.empty()) {
    auto batch = models::make_batch(samples, device_);
    if (with_intents()) {
      std::unique_lock<std::mutex> lock(encoder_mutex_, std::defer_lock);
      if (!trained_.encoder->concurrent()) lock.lock();
      intents = intent::intents_in_memory(ds, samples, view_texts(samples, cached), *trained_.encoder, *index_,
                                          intents_options_, titles_.get());
      batch.intents = intents.intents.to(device_);
    } else if (!trained_.views.empty()) {  // --intent-source none: the head fed zero intents
      batch.intents = torch::zeros({static_cast<std::int64_t>(samples.size()),
                                    static_cast<std::int64_t>(trained_.views.size()), trained_.text_dim},
                                   torch::TensorOptions().device(device_));
    }
    auto out = ranking_ ? trained_.model->forward_unscored(batch) : trained_.model->forward(batch);
    if (out.gates.defined()) gates = out.gates.to(torch::kCPU);
    const auto session = ranking_ ? out.session.contiguous() : torch::Tensor();
    if (ranking_ && first_non_finite_row(session) < 0) {
      ranked = rank_screened(session, requests, sessions, row_of);
    } else {  // a broken model's NaN or Inf session vectors: rank as the model scores them
      if (!out.scores.defined()) out = trained_.model->forward(batch);
      ranked = rank_scores(out.scores.to(torch::kCPU).contiguous(), requests, sessions, row_of);
    }
  }

  std::vector<nlohmann::json> answers;
  for (std::size_t i = 0; i < requests.size(); ++i) {
    const auto& request = requests[i];
    const auto& session = sessions[i];
    const auto k = std::min(request.k, n_items());  // parsed against the catalogue of a model since reloaded
    nlohmann::json answer{{"items", nlohmann::json::array()}, {"unknown_items", session.unknown},
                          {"flags", session.flags}, {"model", model_label()}};
    const auto row = row_of[i];
    if (row < 0) {  // no known item: the most clicked items, which no model can improve on without a session
      for (std::int64_t j = 0; j < k; ++j) {
        auto item = item_json(by_popularity_[static_cast<std::size_t>(j)]);
        item["score"] = nullptr;
        answer["items"].push_back(std::move(item));
      }
      answer["intent"] = {{"source", "none"}, {"views", nlohmann::json::object()}};
      answers.push_back(std::move(answer));
      continue;
    }
    for (const auto& [id, score] : ranked[static_cast<std::size_t>(row)]) {
      auto item = item_json(id);
      item["score"] = score;
      answer["items"].push_back(std::move(item));
    }
    // exclude_seen with k beyond the unseen items, or a model whose scores are not finite: said, not left to
    // the client to count.
    if (static_cast<std::int64_t>(answer["items"].size()) < k) answer["flags"].push_back("fewer_than_k");
    nlohmann::json views = nlohmann::json::object();
    if (request.explain && with_intents()) {
      const auto n_views = trained_.views.size();
      const auto loc_ids = intents.localized.distinct.ids.accessor<std::int64_t, 2>();      // [texts, r]
      const auto loc_sims = intents.localized.distinct.scores.accessor<float, 2>();
      for (std::size_t v = 0; v < n_views; ++v) {
        const auto text = intents.texts.text_index[static_cast<std::size_t>(row) * n_views + v];
        nlohmann::json localized = nlohmann::json::array();
        const auto ids_v = loc_ids[text];
        const auto sims = loc_sims[text];
        for (std::int64_t j = 0; j < ids_v.size(0); ++j) {
          if (!(sims[j] > 0)) continue;  // an empty or unrepresentable text localizes to nothing
          auto item = item_json(ids_v[j]);
          item["similarity"] = sims[j];
          localized.push_back(std::move(item));
        }
        views[trained_.views[v]] = {{"text", intents.texts.distinct[static_cast<std::size_t>(text)]},
                                    {"gate", gates.defined() ? nlohmann::json(gates[row][static_cast<std::int64_t>(v)].item<float>())
                                                             : nlohmann::json(nullptr)},
                                    {"items", std::move(localized)}};
      }
    }
    const char* source = !with_intents()                            ? "none"
                         : !cached[static_cast<std::size_t>(row)] ? "titles"
                         : request.intents_generated             ? "llm"
                                                                  : "cache";
    answer["intent"] = {{"source", source}, {"views", std::move(views)}};
    answers.push_back(std::move(answer));
  }
  return answers;
}

// The k best of each row's scores [rows, N] (exclude_seen: the session's items at -inf, which top_k never picks).
std::vector<Service::Ranking> Service::rank_scores(const torch::Tensor& scores, const std::vector<RecommendRequest>& requests,
                                                   const std::vector<Session>& sessions,
                                                   const std::vector<std::int64_t>& row_of) const {
  std::vector<Ranking> ranked(static_cast<std::size_t>(scores.size(0)));
  for (std::size_t i = 0; i < requests.size(); ++i) {
    if (row_of[i] < 0) continue;
    const float* s = scores.data_ptr<float>() + row_of[i] * scores.size(1);  // [N], item j+1 at j
    std::vector<float> unseen;
    if (requests[i].exclude_seen) {
      unseen.assign(s, s + scores.size(1));
      for (const auto id : sessions[i].items) unseen[static_cast<std::size_t>(id - 1)] = -std::numeric_limits<float>::infinity();
      s = unseen.data();
    }
    for (const auto j : top_k(s, scores.size(1), std::min(requests[i].k, n_items()))) {
      if (!std::isfinite(s[j])) break;  // a broken model's +inf
      ranked[static_cast<std::size_t>(row_of[i])].emplace_back(j + 1, s[j]);
    }
  }
  return ranked;
}

// The k best items of each row of session [rows, d] by the search of ranking_: exact inner products (summed in
// float64, rounded to float32; ties to the lower id), as many more as the session has items when they are to
// be excluded.
std::vector<Service::Ranking> Service::rank_screened(const torch::Tensor& session, const std::vector<RecommendRequest>& requests,
                                                     const std::vector<Session>& sessions,
                                                     const std::vector<std::int64_t>& row_of) const {
  std::int64_t depth = 0;
  for (std::size_t i = 0; i < requests.size(); ++i)
    if (row_of[i] >= 0)
      depth = std::max(depth, requests[i].k + (requests[i].exclude_seen ? static_cast<std::int64_t>(sessions[i].items.size()) : 0));
  auto queries = session.to(torch::kFloat32);
  if (ranking_has_bias_) queries = torch::cat({queries, torch::ones({queries.size(0), 1})}, 1);
  const auto hits = ranking_->search(queries, std::min(depth, n_items()));
  const auto ids = hits.ids.accessor<std::int64_t, 2>();
  const auto scores = hits.scores.accessor<float, 2>();
  std::vector<Ranking> ranked(static_cast<std::size_t>(session.size(0)));
  for (std::size_t i = 0; i < requests.size(); ++i) {
    const auto row = row_of[i];
    if (row < 0) continue;
    const auto& seen = sessions[i].items;
    auto& out = ranked[static_cast<std::size_t>(row)];
    const auto k = std::min(requests[i].k, n_items());
    for (std::int64_t j = 0; j < ids.size(1) && static_cast<std::int64_t>(out.size()) < k; ++j) {
      if (requests[i].exclude_seen && std::find(seen.begin(), seen.end(), ids[row][j]) != seen.end()) continue;
      out.emplace_back(ids[row][j], scores[row][j]);
    }
  }
  return ranked;
}

std::vector<nlohmann::json> Service::search_items(const std::string& query, std::int64_t limit) const {
  std::vector<std::string> words;
  std::istringstream in(lower(query));
  for (std::string w; in >> w;) words.push_back(w);
  std::vector<nlohmann::json> out;
  for (const auto id : by_popularity_) {
    if (static_cast<std::int64_t>(out.size()) >= limit) break;
    const auto& title = lower_titles_[static_cast<std::size_t>(id - 1)];
    if (std::all_of(words.begin(), words.end(), [&](const std::string& w) { return title.find(w) != std::string::npos; }))
      out.push_back(item_json(id));
  }
  return out;
}

}  // namespace llm4sbr::serve
