#include "llm4sbr/intent/intent_stage.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <optional>
#include <tuple>

#include "llm4sbr/core/cached_stage.hpp"
#include "llm4sbr/core/error.hpp"
#include "llm4sbr/core/runtime.hpp"
#include "llm4sbr/core/hash.hpp"
#include "llm4sbr/data/io.hpp"
#include "llm4sbr/embed/text_encoder.hpp"
#include "llm4sbr/intent/intents.hpp"
#include "llm4sbr/llm/infer.hpp"
#include "llm4sbr/llm/llm_backend.hpp"
#include "llm4sbr/llm/response_store.hpp"
#include "llm4sbr/llm/shard.hpp"
#include "llm4sbr/text/prompts.hpp"

namespace llm4sbr::intent {

namespace fs = std::filesystem;

namespace {

const std::vector<std::string>& split_names() {
  static const std::vector<std::string> names{"train", "valid", "test"};
  return names;
}

// A model named by a local path exists as a file; a server spec (openai:...) is taken on trust here
// and fails with the backend's own message when it cannot be reached.
bool llm_available(const std::string& spec) {
  if (spec.starts_with("llama:")) return fs::is_regular_file(spec.substr(6));
  return !spec.empty();
}

// What identifies an LLM's answers: the spec and, for a local file, its size and modification time.
std::string llm_fingerprint(const std::string& spec) {
  if (spec.starts_with("llama:") && fs::exists(spec.substr(6))) {
    const fs::path file = spec.substr(6);
    return fmt::format("{}:{}:{}", file.filename().string(), fs::file_size(file),
                       fs::last_write_time(file).time_since_epoch().count());
  }
  return spec;
}

// The generation settings that change an answer (not threads, batching or chunking).
std::string generation_key(const Config& cfg) {
  std::string key;
  for (const char* k : {"max_tokens", "temperature", "seed", "stop", "context", "api_model"})
    key += fmt::format("{}={};", k, cfg.canonical(std::string("llm.") + k));
  return key;
}

// The text encoder's stage directory: keyed by the prepared data (the catalogue it is fitted on) and embed.*.
fs::path encoder_dir(const Config& cfg, const std::string& data_key, const fs::path& stages_dir) {
  return stages_dir / ("encoder-" + hash_hex(fmt::format("encoder\n{}\n{}\n{}", data_key,
                                                         cfg.get<std::string>("embed.encoder", "tfidf"),
                                                         cfg.canonical("embed"))));
}

// The LLM's answers for every (sample, view) of every split, generated where missing (resumable).
fs::path cached_responses(const Config& cfg, const data::PreparedDataset& ds, const IntentSource& source,
                          const std::vector<std::string>& views, const std::string& data_key,
                          const fs::path& stages_dir, std::string& key) {
  key = hash_hex(fmt::format("responses\n{}\n{}\n{}\n{}\n{}", data_key, cfg.canonical("prompt"), fmt::join(views, ","),
                             llm_fingerprint(source.llm), generation_key(cfg)));
  const fs::path dir = stages_dir / ("responses-" + key);
  // One job over every split that is not finished: one progress bar, identical prompts generated once.
  std::vector<std::unique_ptr<llm::ResponseStore>> stores;
  std::vector<llm::InferTask> tasks;
  for (const auto& split : split_names()) {
    const auto& samples = ds.split(split);
    auto store = std::make_unique<llm::ResponseStore>(dir / split / "responses.jsonl");
    if (store->size() >= samples.size() * views.size()) continue;
    spdlog::info("infer: {} split, {} samples x {} views -> {}", split, samples.size(), views.size(),
                 store->file().string());
    tasks.push_back({samples, store.get()});
    stores.push_back(std::move(store));
  }
  if (!tasks.empty()) {
    const auto backend = llm::make_llm_backend(source.llm, cfg);
    llm::InferOptions opt;
    opt.chunk = cfg.get<std::int64_t>("llm.chunk", opt.chunk);
    llm::run_inference(ds, tasks, views, text::prompt_template_from_config(cfg), *backend, opt);
  }
  return dir;
}

// Answers made by hand (intent.responses_dir), checked prompt by prompt and copied into a responses stage
// keyed by their content, so that the run folder holds what its intents were made from.
fs::path given_responses(const Config& cfg, const data::PreparedDataset& ds, const std::vector<std::string>& views,
                         const fs::path& given, const std::string& data_key, const fs::path& stages_dir,
                         std::string& key) {
  std::string contents;
  for (const auto& split : split_names()) {
    if (ds.split(split).empty()) continue;
    const fs::path file = given / split / "responses.jsonl";
    if (!fs::exists(file))
      throw InputError(file.string(), 0, "",
                       "missing: --responses needs the answers of every split of the prepared data (`llm4sbr infer "
                       "--split all`, or `llm4sbr merge --split all` of the shards)");
    contents += hash_file(file) + ";";
  }
  key = hash_hex(fmt::format("given responses\n{}\n{}\n{}\n{}", data_key, cfg.canonical("prompt"), fmt::join(views, ","),
                             contents));
  const fs::path dir = stages_dir / ("responses-" + key);
  const auto tpl = text::prompt_template_from_config(cfg);
  for (const auto& split : split_names()) {
    const auto& samples = ds.split(split);
    const fs::path target = dir / split / "responses.jsonl";
    if (samples.empty() || fs::exists(target)) continue;  // written atomically once checked
    const auto what = fmt::format("--responses {}: the {} split, checked against the run's prepared data, prompt.* "
                                  "settings and intent.views [{}],",
                                  given.string(), split, fmt::join(views, ", "));
    llm::write_response_file(
        llm::collect_answers(llm::prompt_keys(ds, samples, views, tpl), {given / split / "responses.jsonl"}, what, true),
        target);
    spdlog::info("responses: the {} answers in {} fit the prepared data -> {}", split, given.string(), target.string());
  }
  return dir;
}

// Intents made by hand (intent.intents_dir) must be this split's, of this catalogue, views and r.
void check_given_split_intents(const fs::path& dir, const data::PreparedDataset& ds, const std::string& split,
                               const std::vector<std::string>& views, std::int64_t r) {
  const std::string done_file = (dir / "done.json").string();
  const auto done = intents_done(dir);
  if (!done)
    throw InputError(done_file, 0, "",
                     "missing or unfinished: --intents needs the intents of every split of the prepared data "
                     "(`llm4sbr encode --split all` and `llm4sbr localize --split all`)");
  const auto& samples = ds.split(split);
  const auto other_data = [&](const std::string& field, const std::string& what) {
    return InputError(done_file, 0, field,
                      fmt::format("{}: these intents were made from other prepared data (or with --limit) than this "
                                  "run's",
                                  what));
  };
  if (const auto n = done->value("samples", std::int64_t{-1}); n != static_cast<std::int64_t>(samples.size()))
    throw other_data("samples", fmt::format("{} samples, but the {} split has {}", n, split, samples.size()));
  if (const auto n = done->value("catalogue_items", std::int64_t{-1}); n != ds.n_items())
    throw other_data("catalogue_items", fmt::format("{} catalogue items, but the prepared data has {}", n, ds.n_items()));
  if (const auto d = done->value("data", std::string{}); !d.empty() && d != data::samples_fingerprint(ds, samples))
    throw other_data("data", "the items or the samples differ");
  if (const auto v = done->at("views").get<std::vector<std::string>>(); v != views)
    throw InputError(done_file, 0, "views",
                     fmt::format("the intents have views [{}], the run uses [{}] (intent.views): set intent.views to "
                                 "theirs, or give --responses to localize the answers for these views",
                                 fmt::join(v, ", "), fmt::join(views, ", ")));
  if (const auto given_r = done->value("r_requested", std::int64_t{-1}); given_r != r)
    throw InputError(done_file, 0, "r_requested",
                     fmt::format("the intents were localized with r = {}, the run uses r = {} (intent.top_r): set "
                                 "intent.top_r={}, or give --responses to localize the answers with r = {}",
                                 given_r, r, given_r, r));
}

// check_given_split_intents for every split that has samples.
void check_given_intents(const fs::path& dir, const data::PreparedDataset& ds, const std::vector<std::string>& views,
                         std::int64_t r) {
  for (const auto& split : split_names())
    if (!ds.split(split).empty()) check_given_split_intents(dir / split, ds, split, views, r);
}

// The tensor of one split in a stage.
torch::Tensor& split_intents(IntentStage& stage, const std::string& split) {
  return split == "train" ? stage.train : split == "valid" ? stage.valid : stage.test;
}

// The finished Stage 1 of a run given intents made by hand, checked.
IntentStage given_intents(IntentStage out, const data::PreparedDataset& ds, std::int64_t r) {
  out.dir = out.source.dir;
  check_given_intents(out.dir, ds, out.views, r);
  for (const auto& split : split_names()) {
    if (ds.split(split).empty()) continue;
    split_intents(out, split) = read_intents(out.dir / split);
    out.dim = split_intents(out, split).size(2);
  }
  spdlog::info("intents: using {} (checked against the prepared data)", out.dir.string());
  return out;
}

// intent.responses_dir or intent.intents_dir, when one is set (both is an error).
std::optional<IntentSource> given_source(const Config& cfg) {
  const auto responses = cfg.get<std::string>("intent.responses_dir", "");
  const auto intents = cfg.get<std::string>("intent.intents_dir", "");
  if (!responses.empty() && !intents.empty())
    throw ConfigError("intent.responses_dir (--responses) and intent.intents_dir (--intents) exclude each other: give one");
  for (const auto& [key, value, kind] : {std::tuple{"intent.responses_dir", responses, "responses"},
                                         std::tuple{"intent.intents_dir", intents, "intents"}}) {
    if (value.empty()) continue;
    if (!fs::is_directory(value)) throw ConfigError(fmt::format("{} = '{}' is not a folder", key, value));
    return IntentSource{kind, "", fmt::format("{} = {}", key, value), value};
  }
  return std::nullopt;
}

}  // namespace

ViewTextSource response_text_source(const fs::path& file) {
  return [file](const std::vector<data::Sample>& samples, const std::string& view) {
    llm::ResponseStore store(file);
    std::vector<std::string> texts;
    texts.reserve(samples.size());
    for (const auto& s : samples) {
      auto it = store.records().find({s.id, view});
      if (it == store.records().end())
        throw Error(fmt::format("{}: no LLM answer for sample {} view '{}' (run `llm4sbr infer` again to finish it)",
                                file.string(), s.id, view));
      texts.push_back(it->second.response);
    }
    return texts;
  };
}

std::unique_ptr<embed::TextEncoder> fitted_encoder(const Config& cfg, const data::PreparedDataset& ds,
                                                   const fs::path& dir) {
  if (fs::exists(dir / "encoder.json")) {
    spdlog::info("encode: re-using the text encoder in {}", dir.string());
    return read_cached_stage(dir, [&] { return embed::load_text_encoder(dir); });
  }
  const auto spec = cfg.get<std::string>("embed.encoder", "tfidf");
  auto encoder = embed::make_text_encoder(spec, cfg.sub("embed"));
  if (!encoder->fitted()) {
    std::vector<std::string> titles;
    titles.reserve(ds.items.size());
    for (const auto& item : ds.items) titles.push_back(item.title);
    spdlog::info("encode: fitting {} on {} item titles", spec, titles.size());
    encoder->fit(titles);
  }
  encoder->save(dir);
  return encoder;
}

namespace {

// intent.source, checked (one place for the allowed values).
std::string intent_source_kind(const Config& cfg) {
  const auto kind = cfg.get<std::string>("intent.source", "auto");
  if (kind != "auto" && kind != "llm" && kind != "titles")
    throw ConfigError(fmt::format("intent.source must be auto, llm or titles, not '{}'", kind));
  return kind;
}

}  // namespace

const SettingsSchema& intent_settings() {
  using enum SettingType;
  static const SettingsSchema schema{"intent",
                                     {{"source", kString}, {"views", kStrings}, {"top_r", kInteger},
                                      {"normalize_weights", kBool}, {"localizer", kString},
                                      {"responses_dir", kString}, {"intents_dir", kString}}};
  return schema;
}

void check_intent_settings(const Config& cfg) {
  given_source(cfg);
  const auto kind = intent_source_kind(cfg);
  const auto model = cfg.get<std::string>("llm.model", "");
  if (!model.empty() && !model.starts_with("llama:") && !model.starts_with("openai:"))
    throw ConfigError(fmt::format("llm.model '{}' must be llama:PATH.gguf or openai:URL", model));
  if (kind == "llm") resolve_intent_source(cfg);  // throws for a missing model; logs nothing then
  if (const auto r = cfg.get<std::int64_t>("intent.top_r", 5); r < 0)
    throw ConfigError(fmt::format("intent.top_r = {} must be >= 0 (0 = the raw text embedding)", r));
  const auto localizer = cfg.get<std::string>("intent.localizer", "faiss");
  if (localizer != "faiss" && localizer != "blocked")
    throw ConfigError(fmt::format("intent.localizer must be faiss or blocked, not '{}'", localizer));
  if (kind == "titles")
    for (const auto& v : cfg.get<std::vector<std::string>>("intent.views", {"long", "short"}))
      if (v != "long" && v != "short" && v != "normal")
        throw ConfigError(fmt::format("intent.views: the titles source knows long, short and normal, not '{}'", v));
}

std::string IntentSource::describe() const {
  if (kind == "llm") return "llm " + llm;
  if (kind == "responses" || kind == "intents") return kind + " " + dir.string();
  return kind;
}

IntentSource resolve_intent_source(const Config& cfg) {
  if (auto given = given_source(cfg)) return *given;
  const auto kind = intent_source_kind(cfg);
  const auto model = cfg.get<std::string>("llm.model", "");
  if (kind == "titles") return {"titles", "", "intent.source = titles"};
  if (kind == "llm") {
    if (model.empty()) throw ConfigError("intent.source = llm needs llm.model (llama:PATH.gguf or openai:URL)");
    if (!llm_available(model))
      throw ConfigError(fmt::format("intent.source = llm: llm.model '{}' does not exist (`llm4sbr download model` "
                                    "fetches one)",
                                    model));
    return {"llm", model, "intent.source = llm"};
  }
  if (llm_available(model)) return {"llm", model, "llm.model is available"};
  const std::string why = model.empty() ? "no LLM configured (llm.model is empty)"
                                        : fmt::format("the LLM '{}' (llm.model) is not there", model);
  spdlog::warn("{}: using the titles intent source instead of LLM answers. To use an LLM, run `llm4sbr download "
               "model qwen2.5-0.5b-instruct` or set llm.model=llama:PATH.gguf",
               why);
  return {"titles", "", why};
}

bool stage1_by_hand(const Config& cfg) { return given_source(cfg).has_value(); }

void check_given_stage1(const Config& cfg, const data::PreparedDataset& ds, const std::string& data_key,
                        const fs::path& stages_dir) {
  const auto given = given_source(cfg);
  if (!given) return;
  const auto views = text::views_from_config(cfg, text::prompt_template_from_config(cfg));
  std::string key;
  if (given->kind == "responses") {
    given_responses(cfg, ds, views, given->dir, data_key, stages_dir, key);
    return;
  }
  check_given_intents(given->dir, ds, views, cfg.get<std::int64_t>("intent.top_r", 5));
}

IntentsOptions intents_options_from_config(const Config& cfg, const std::vector<std::string>& views) {
  IntentsOptions opt;
  opt.views = views;
  opt.r = cfg.get<std::int64_t>("intent.top_r", opt.r);
  opt.normalize_weights = cfg.get<bool>("intent.normalize_weights", opt.normalize_weights);
  opt.localizer = cfg.get<std::string>("intent.localizer", opt.localizer);
  return opt;
}

IntentStage run_intent_stage(const Config& cfg, const data::PreparedDataset& ds, const std::string& data_key,
                             const fs::path& stages_dir) {
  IntentStage out;
  out.source = resolve_intent_source(cfg);
  out.views = text::views_from_config(cfg, text::prompt_template_from_config(cfg));
  if (out.source.kind == "intents") return given_intents(out, ds, cfg.get<std::int64_t>("intent.top_r", 5));

  IntentsOptions opt = intents_options_from_config(cfg, out.views);

  std::string source_key = "titles";
  fs::path responses;
  if (out.source.kind == "llm") responses = cached_responses(cfg, ds, out.source, out.views, data_key, stages_dir, source_key);
  if (out.source.kind == "responses")
    responses = given_responses(cfg, ds, out.views, out.source.dir, data_key, stages_dir, source_key);
  out.encoder_dir = encoder_dir(cfg, data_key, stages_dir);
  out.responses_dir = responses;
  std::unique_ptr<embed::TextEncoder> encoder;  // built only when some split needs (re)computing

  opt.key = hash_hex(fmt::format("intents\n{}\n{}\n{}\n{}\n{}\n{}", data_key, source_key, cfg.canonical("embed"),
                                 fmt::join(out.views, ","), opt.r, opt.normalize_weights));
  out.dir = stages_dir / ("intents-" + opt.key);
  torch::Tensor catalogue;
  for (const auto& split : split_names()) {
    const auto& samples = ds.split(split);
    if (samples.empty()) continue;
    const fs::path dir = out.dir / split;
    if (intents_ready(dir, opt.key)) {
      spdlog::info("intents: re-using {}", dir.string());
    } else {
      if (!encoder) {
        encoder = fitted_encoder(cfg, ds, out.encoder_dir);
        catalogue = catalogue_embeddings(ds, *encoder);
      }
      const auto text_source =
          out.source.kind == "titles" ? titles_text_source(ds) : response_text_source(responses / split / "responses.jsonl");
      opt.data = data::samples_fingerprint(ds, samples);
      spdlog::info("intents: {} split ({} samples, views {}, top-r {})", split, samples.size(), fmt::join(out.views, "/"), opt.r);
      const auto sum = write_intents(dir, ds, samples, text_source, *encoder, catalogue, opt);
      if (sum.distinct_texts > 0 && sum.zero_texts == sum.distinct_texts)
        spdlog::warn("intents: every {} text of the {} split embeds to zero (empty LLM answers, or words the encoder "
                     "does not know): the intents carry no information. Look at {}",
                     out.source.describe(), split, (dir / "localization.jsonl").string());
      // The encoded texts and localization buffers are freed; the kept heap would otherwise hold them under
      // the split intents read next and under training (Beauty's run: 1.54 GB peak, 1.2 GB of it freed).
      release_freed_memory();
    }
    split_intents(out, split) = read_cached_stage(out.dir, [&] { return read_intents(dir); });
    out.dim = split_intents(out, split).size(2);
  }
  return out;
}

}  // namespace llm4sbr::intent
