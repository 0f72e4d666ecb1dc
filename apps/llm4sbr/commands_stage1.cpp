// The Stage 1 commands, one step each: prompts, infer (with --shard) and merge, encode, localize.
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <memory>

#include "cli.hpp"
#include "llm4sbr/core/atomic_file.hpp"
#include "llm4sbr/core/error.hpp"
#include "llm4sbr/core/hash.hpp"
#include "llm4sbr/data/io.hpp"
#include "llm4sbr/intent/intent_stage.hpp"
#include "llm4sbr/llm/infer.hpp"
#include "llm4sbr/llm/llama_backend.hpp"
#include "llm4sbr/llm/llm_backend.hpp"
#include "llm4sbr/llm/response_store.hpp"
#include "llm4sbr/llm/shard.hpp"
#include "llm4sbr/text/prompts.hpp"

namespace llm4sbr::cli {

namespace fs = std::filesystem;

namespace {

// The prompt template and views of a config (prompt.*, intent.views).
std::vector<std::string> views_of(const Config& cfg) {
  return text::views_from_config(cfg, text::prompt_template_from_config(cfg));
}

// Writes <out>/<split>/prompts.jsonl: one JSON line per sample and view.
void run_prompts(const Options& o) {
  const Config cfg = load_config(o);
  const auto ds = data::read_prepared(o.data);
  const auto tpl = text::prompt_template_from_config(cfg);
  const auto views = text::views_from_config(cfg, tpl);
  for (const auto& sp : splits_of(o.split)) {
    const auto file = fs::path(o.out) / sp / "prompts.jsonl";
    fs::create_directories(file.parent_path());
    AtomicFile out(file);  // a full disk is an error naming the file, and never leaves half a file behind
    std::int64_t n = 0;
    for (const auto& sample : first_samples(ds.split(sp), o.limit))
      for (const auto& view : views) {
        const std::string p = text::build_prompt(tpl, ds, sample, view);
        out.write(nlohmann::json{{"sample", sample.id}, {"view", view}, {"prompt_hash", hash_hex(p)}, {"prompt", p}}.dump() +
                  "\n");
        ++n;
      }
    out.commit();
    spdlog::info("prompts: {} prompts -> {}", n, file.string());
  }
}

struct InferArgs {
  Options o;
  std::string llm, shard = "1/1";
  bool count_prefill = false;
};

// How infer hands the prompts to the backend: llm.chunk prompts a call, the --shard part of them.
llm::InferOptions infer_options(const InferArgs& a, const Config& cfg) {
  return {cfg.get<std::int64_t>("llm.chunk", 2048), llm::Shard::parse(a.shard)};
}

// infer --count-prefill: the prompt tokens of the splits' prompts and those llama.cpp's prefix reuse saves,
// counted by tokenizing them without generating.
void count_prefill(const InferArgs& a, const Config& cfg, llm::LlmBackend& backend) {
  const auto* llama = dynamic_cast<const llm::LlamaBackend*>(&backend);
  if (!llama)
    throw ConfigError("infer --count-prefill counts the prefix reuse of in-process llama.cpp: give --llm llama:PATH.gguf "
                      "(a vLLM server's prefix caching is its own)");
  const auto ds = data::read_prepared(a.o.data);
  std::vector<std::vector<data::Sample>> splits;
  for (const auto& sp : splits_of(a.o.split)) splits.push_back(first_samples(ds.split(sp), a.o.limit));
  const auto options = infer_options(a, cfg);
  const auto n = llm::count_prefill(ds, splits, views_of(cfg), text::prompt_template_from_config(cfg), *llama, options);
  const auto share = [&](std::int64_t k) { return n.prompt_tokens > 0 ? 100.0 * static_cast<double>(k) / n.prompt_tokens : 0.0; };
  fmt::print("prefill of {} distinct prompts ({} split{}, llm.parallel {}, llm.chunk {}):\n", n.prompts, a.o.split,
             splits.size() > 1 ? "s" : "", llm::generation_options_from_config(cfg).parallel, options.chunk);
  fmt::print("| prompt tokens | re-used from the KV cache | computed |\n|---:|---:|---:|\n");
  fmt::print("| {} | {} ({:.1f} %) | {} ({:.1f} %) |\n", n.prompt_tokens, n.reused_tokens, share(n.reused_tokens),
             n.prompt_tokens - n.reused_tokens, share(n.prompt_tokens - n.reused_tokens));
}

// Answers the prompts of the splits with an LLM into <out>/<split>/responses.jsonl, resuming a stopped run.
void run_infer(const InferArgs& a) {
  const Config cfg = load_config(a.o);
  const auto spec = a.llm.empty() ? cfg.get<std::string>("llm.model", "") : a.llm;
  if (spec.empty()) throw ConfigError("infer: give --llm llama:PATH.gguf or openai:URL, or set llm.model in the config");
  if (a.count_prefill) return count_prefill(a, cfg, *llm::make_llm_backend(spec, cfg));
  if (a.o.out.empty()) throw ConfigError("infer: give --out DIR (where <split>/responses.jsonl go)");
  const auto options = infer_options(a, cfg);
  const auto ds = data::read_prepared(a.o.data);
  const auto backend = llm::make_llm_backend(spec, cfg);
  std::vector<std::unique_ptr<llm::ResponseStore>> stores;
  std::vector<llm::InferTask> tasks;
  for (const auto& sp : splits_of(a.o.split)) {
    stores.push_back(std::make_unique<llm::ResponseStore>(fs::path(a.o.out) / sp / "responses.jsonl"));
    tasks.push_back({first_samples(ds.split(sp), a.o.limit), stores.back().get()});
  }
  const auto stats = llm::run_inference(ds, tasks, views_of(cfg), text::prompt_template_from_config(cfg), *backend, options);
  for (const auto& store : stores) fmt::print("{} records in {}\n", store->size(), store->file().string());
  fmt::print("{} generated now, {} were already there, {} left to other shards\n", stats.generated, stats.already,
             stats.other_shards);
}

struct MergeArgs {
  Options o;
  std::vector<std::string> shards;
};

// Joins the responses.jsonl of `infer --shard` runs, checking that every prompt is answered exactly once.
void run_merge(const MergeArgs& a) {
  // The merged store is written over --out's: never over a shard, whose answers would be lost.
  for (const auto& dir : a.shards) {
    std::error_code ec;
    if (fs::exists(a.o.out) && fs::equivalent(a.o.out, dir, ec))
      throw ConfigError(fmt::format("merge --out {} is one of the shards: the merged answers would overwrite its "
                                    "answers; give another folder", a.o.out));
  }
  const Config cfg = load_config(a.o);
  const auto ds = data::read_prepared(a.o.data);
  const auto views = views_of(cfg);
  for (const auto& sp : splits_of(a.o.split)) {
    const auto expected = llm::prompt_keys(ds, first_samples(ds.split(sp), a.o.limit), views,
                                           text::prompt_template_from_config(cfg));
    std::vector<fs::path> files;
    for (const auto& dir : a.shards) files.push_back(fs::path(dir) / sp / "responses.jsonl");
    const auto target = fs::path(a.o.out) / sp / "responses.jsonl";
    fmt::print("{}: {} records from {} shards in {}\n", sp, llm::merge_shards(expected, files, target), files.size(),
               target.string());
  }
}

struct EncodeArgs {
  Options o;
  std::string responses, encoder;
};

// Embeds the item titles and the view texts of the splits (encoder/, catalogue.npy, <split>/texts.npy ...).
void run_encode(const EncodeArgs& a) {
  Config cfg = load_config(a.o);
  if (!a.encoder.empty()) cfg.set("embed.encoder", a.encoder);
  const auto ds = data::read_prepared(a.o.data);
  const fs::path out = a.o.out;
  const auto encoder = intent::fitted_encoder(cfg, ds, out / "encoder");
  intent::save_catalogue(out / "catalogue.npy", intent::catalogue_embeddings(ds, *encoder));
  intent::IntentsOptions opt;
  opt.views = views_of(cfg);
  for (const auto& sp : splits_of(a.o.split)) {
    const auto samples = first_samples(ds.split(sp), a.o.limit);
    const auto source = a.responses.empty() ? intent::titles_text_source(ds)
                                            : intent::response_text_source(fs::path(a.responses) / sp / "responses.jsonl");
    const auto encoded = intent::encode_view_texts(ds, samples, source, *encoder, opt);
    intent::save_encoded_texts(out / sp, encoded);
    fmt::print("{}: {} samples x {} views, {} distinct texts ({} with a zero embedding) -> {}\n", sp, samples.size(),
               opt.views.size(), encoded.distinct.size(), encoded.zero_texts, (out / sp).string());
  }
}

struct LocalizeArgs {
  Options o;
  std::string embeddings;
  std::int64_t top_r = -1;
  bool top_r_given = false;
};

// Intent localization (Eq. 4-5) of every encoded text: <out>/<split>/intents.npy and localization.jsonl.
void run_localize(const LocalizeArgs& a) {
  const Config cfg = load_config(a.o);
  const auto ds = data::read_prepared(a.o.data);
  const auto catalogue = intent::load_catalogue(fs::path(a.embeddings) / "catalogue.npy");
  intent::IntentsOptions opt;
  opt.r = a.top_r_given ? a.top_r : cfg.get<std::int64_t>("intent.top_r", opt.r);
  opt.normalize_weights = cfg.get<bool>("intent.normalize_weights", opt.normalize_weights);
  opt.localizer = cfg.get<std::string>("intent.localizer", opt.localizer);
  for (const auto& sp : splits_of(a.o.split)) {
    const auto encoded = intent::load_encoded_texts(fs::path(a.embeddings) / sp);
    opt.views = encoded.views;
    opt.data = data::samples_fingerprint(ds, first_samples(ds.split(sp), static_cast<std::int64_t>(encoded.sample_ids.size())));
    intent::localize_texts(fs::path(a.o.out) / sp, ds, encoded, catalogue, opt);
    fmt::print("{}: intents -> {}\n", sp, (fs::path(a.o.out) / sp / "intents.npy").string());
  }
}

}  // namespace

std::vector<Command> add_stage1_commands(CLI::App& app) {
  auto prompts = std::make_shared<Options>();
  auto* p = app.add_subcommand("prompts", "write the LLM prompts of a split (one JSON line per sample and view)");
  add_data(p, *prompts);
  add_split(p, *prompts);
  add_limit(p, *prompts);
  add_out(p, *prompts, "output directory (<split>/prompts.jsonl)");
  add_config(p, *prompts, false);

  auto infer = std::make_shared<InferArgs>();
  auto* i = app.add_subcommand("infer", "answer the prompts of a split with an LLM; resumes where a run stopped");
  add_data(i, infer->o);
  i->add_option("--llm", infer->llm,
                "llama:PATH.gguf (in-process) or openai:URL[,URL...] (OpenAI-compatible servers; API key from "
                "$OPENAI_API_KEY or the variable named by llm.http.api_key_env); default: llm.model of the config");
  i->add_option("--shard", infer->shard, "answer only shard i of n (i/n, 1-based) of the prompts; join them with merge")
      ->capture_default_str();
  add_split(i, infer->o);
  add_limit(i, infer->o);
  add_out(i, infer->o, "output directory (<split>/responses.jsonl)");
  i->get_option("--out")->required(false);  // not for --count-prefill; run_infer asks for it otherwise
  i->add_flag("--count-prefill", infer->count_prefill,
              "generate nothing: tokenize the prompts and print how many prompt tokens llama.cpp's prefix reuse "
              "takes from the KV cache (llm.parallel sequences, llm.chunk prompts per context)");
  add_config(i, infer->o, false);

  auto merge = std::make_shared<MergeArgs>();
  auto* m = app.add_subcommand("merge", "join the responses.jsonl of `infer --shard` runs into one store, checking "
                                        "that every prompt is answered exactly once");
  add_data(m, merge->o, "prepared dataset directory (the one the shards used)");
  add_split(m, merge->o);
  add_limit(m, merge->o, "only the first N samples of each split (as the shards were run)");
  add_out(m, merge->o, "output directory (<split>/responses.jsonl)");
  m->add_option("shards", merge->shards, "the shards' --out directories")->required()->check(CLI::ExistingDirectory);
  add_config(m, merge->o, false);

  auto encode = std::make_shared<EncodeArgs>();
  auto* e = app.add_subcommand("encode", "embed the item titles and the view texts (LLM answers or titles) of a split");
  add_data(e, encode->o);
  e->add_option("--responses", encode->responses,
                "output of `llm4sbr infer` (<split>/responses.jsonl); default: the titles source");
  e->add_option("--encoder", encode->encoder, "text encoder (default: embed.encoder of the config, else tfidf)");
  add_split(e, encode->o);
  add_limit(e, encode->o);
  add_out(e, encode->o, "output directory (encoder/, catalogue.npy, <split>/texts.npy ...)");
  add_config(e, encode->o, false);

  auto localize = std::make_shared<LocalizeArgs>();
  auto* l = app.add_subcommand("localize", "intent localization: top-r catalogue items of every encoded text (Eq. 4-5)");
  add_data(l, localize->o);
  l->add_option("--embeddings", localize->embeddings, "output of `llm4sbr encode`")->required();
  l->add_option("--top-r,-r", localize->top_r, "items per intent (default: intent.top_r of the config, else 5; 0 = raw embedding)");
  add_split(l, localize->o);
  add_out(l, localize->o, "output directory (<split>/intents.npy, localization.jsonl)");
  add_config(l, localize->o, false);

  return {{p, [prompts] { run_prompts(*prompts); }},
          {i, [infer] { run_infer(*infer); }},
          {m, [merge] { run_merge(*merge); }},
          {e, [encode] { run_encode(*encode); }},
          {l, [localize, l] {
             localize->top_r_given = l->count("--top-r") > 0;
             run_localize(*localize);
           }}};
}

}  // namespace llm4sbr::cli
