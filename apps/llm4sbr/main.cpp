// llm4sbr: one command line for the whole pipeline. `llm4sbr --help` lists the subcommands.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <nlohmann/json.hpp>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/core/error.hpp"
#include "llm4sbr/data/io.hpp"
#include "llm4sbr/data/prepare.hpp"
#include "llm4sbr/data/readers.hpp"
#include "llm4sbr/core/hash.hpp"
#include "llm4sbr/data/download.hpp"
#include "llm4sbr/intent/intent_stage.hpp"
#include "llm4sbr/llm/infer.hpp"
#include "llm4sbr/llm/llm_backend.hpp"
#include "llm4sbr/llm/response_store.hpp"
#include "llm4sbr/models/session_encoder.hpp"
#include "llm4sbr/text/prompts.hpp"
#include "llm4sbr/train/experiment.hpp"
#include "llm4sbr/train/runtime.hpp"
#include "llm4sbr/train/trainer.hpp"

namespace fs = std::filesystem;
using namespace llm4sbr;

namespace {

struct ConfigArgs {
  std::string file;
  std::vector<std::string> overrides;
};

void add_config_options(CLI::App* cmd, ConfigArgs& args, bool required) {
  auto* opt = cmd->add_option("--config,-c", args.file, "YAML config (see configs/)");
  if (required) opt->required();
  opt->check(CLI::ExistingFile);
  cmd->add_option("--set,-s", args.overrides, "override a config key, e.g. --set train.epochs=3 (repeatable)");
}

// Stage 1 run by hand, for train, run, compare and ablate: `--responses DIR` (answers of `infer`/`merge`) or
// `--intents DIR` (output of `localize`), kept as intent.responses_dir / intent.intents_dir.
struct Stage1Args {
  std::string responses, intents;
};

void add_stage1_options(CLI::App* cmd, Stage1Args& args, bool intents) {
  auto* r = cmd->add_option("--responses", args.responses,
                            "LLM answers made by hand (`infer --split all`, or `merge` of `infer --shard` runs): "
                            "checked against the prepared data, then encoded and localized by this run")
                ->check(CLI::ExistingDirectory);
  if (intents)
    cmd->add_option("--intents", args.intents, "intents made by hand (`localize --split all`), checked against the prepared data")
        ->check(CLI::ExistingDirectory)
        ->excludes(r);
}

void apply_stage1(Config& cfg, const Stage1Args& args) {
  if (!args.responses.empty()) cfg.set("intent.responses_dir", fs::absolute(args.responses).string());
  if (!args.intents.empty()) cfg.set("intent.intents_dir", fs::absolute(args.intents).string());
}

// The splits a stage command works on: one name, or "all" for train, valid and test.
std::vector<std::string> splits_of(const std::string& split) {
  if (split == "all") return {"train", "valid", "test"};
  if (split == "train" || split == "valid" || split == "test") return {split};
  throw ConfigError(fmt::format("--split must be train, valid, test or all, not '{}'", split));
}

// The first `limit` samples of a split (all when limit < 0): quick runs and tests.
std::vector<data::Sample> first_samples(const std::vector<data::Sample>& samples, std::int64_t limit) {
  if (limit < 0 || static_cast<std::size_t>(limit) >= samples.size()) return samples;
  return {samples.begin(), samples.begin() + limit};
}

// Every key a section may hold. A misspelled key (`train.epoch`) is an error, not a silently kept
// default. Sections not listed here (models, paths, and those of stages still being built) are free.
const std::map<std::string, std::set<std::string>>& known_keys() {
  static const std::map<std::string, std::set<std::string>> k = {
      {"", {"include", "dataset", "model", "threads", "train", "eval", "data", "prompt", "llm", "intent", "models", "paths",
            "embed", "enhance"}},
      {"train", {"epochs", "batch_size", "eval_batch_size", "lr", "l2", "lr_step", "lr_gamma", "patience", "select_metric", "seed"}},
      {"eval", {"ks", "paper_compatible"}},
      {"data", {"sessionize", "clock_seconds", "gap_seconds", "min_session_length", "min_item_count", "iterative_filter", "split",
                "test_fraction", "test_sessions", "valid_fraction", "augment", "max_sessions", "max_session_length",
                "skip_malformed"}},
      {"prompt", {"header", "item_line", "question", "qualifiers", "max_items", "system"}},
      {"llm", {"model", "max_tokens", "temperature", "seed", "stop", "parallel", "batch_tokens", "threads", "context", "chunk",
               "api_model", "http"}},
      {"intent", {"source", "views", "top_r", "normalize_weights", "localizer", "responses_dir", "intents_dir"}},
      {"enhance", {"enabled", "baseline", "tau", "align_uniform", "average_views", "without_sbr"}},
  };
  return k;
}

void check_known_keys(const Config& cfg) {
  for (const auto& [section, keys] : known_keys()) {
    const YAML::Node node = section.empty() ? cfg.root() : cfg.node(section);
    if (!node || !node.IsMap()) continue;
    for (const auto& kv : node) {
      const auto key = kv.first.as<std::string>();
      if (!keys.count(key))
        throw ConfigError(fmt::format("unknown config key '{}{}'; {} keys are: {}", section.empty() ? "" : section + ".", key,
                                      section.empty() ? "top-level" : "'" + section + "'", fmt::join(keys, ", ")));
    }
  }
  // models.NAME: NAME must be a backbone and its section a mapping (the keys inside are the model's to check).
  if (const YAML::Node models = cfg.node("models"); models && !models.IsNull()) {
    const auto names = models::registered_encoders();
    if (!models.IsMap()) throw ConfigError("config key 'models' must be a mapping of model name to settings");
    for (const auto& kv : models) {
      const auto name = kv.first.as<std::string>();
      if (std::find(names.begin(), names.end(), name) == names.end())
        throw ConfigError(fmt::format("unknown config key 'models.{}'; models are: {}", name, fmt::join(names, ", ")));
      if (!kv.second.IsMap() && !kv.second.IsNull())
        throw ConfigError(fmt::format("config key 'models.{}' must be a mapping of settings (e.g. models.{}.step=2)", name,
                                      name));
    }
  }
}

// The config file (if any) with its `include:`s, the overrides, and where to find configs/models/.
// Without a file, `default_config` (configs/<dataset>.yaml, when it exists) is the starting point.
Config load_config(const ConfigArgs& args, const std::string& default_config = "") {
  Config cfg;
  std::string file = args.file;
  if (file.empty() && !default_config.empty() && fs::exists(default_config)) {
    spdlog::info("using {} (pass --config to choose another)", default_config);
    file = default_config;
  }
  if (!file.empty()) {
    cfg = Config::load(file);
    if (!cfg.has("paths.configs")) cfg.set("paths.configs", fs::path(file).parent_path().string());
  }
  cfg.apply_overrides(args.overrides);
  check_known_keys(cfg);
  train::train_options_from_config(cfg);  // type and range errors now, before any work is done
  return cfg;
}

}  // namespace

int main(int argc, char** argv) {
  llm4sbr::train::ensure_fast_blas(argv);
  CLI::App app{"llm4sbr: session-based recommendation enhanced by LLM intent inference (LLM4SBR, arXiv 2402.13840)"};
  app.require_subcommand(1);
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")->capture_default_str();

  // prepare
  auto* prepare = app.add_subcommand("prepare", "read a raw dataset, sessionize, filter, split, write a prepared dataset");
  std::string dataset, data_dir, out;
  ConfigArgs prepare_cfg;
  prepare->add_option("--dataset,-d", dataset, fmt::format("dataset: {}", fmt::join(data::known_datasets(), ", ")));
  prepare->add_option("--data-dir", data_dir, "raw data directory (default: $LLM4SBR_DATA_DIR or ../shared/data)");
  prepare->add_option("--out,-o", out, "output directory")->required();
  add_config_options(prepare, prepare_cfg, false);

  // train
  auto* train_cmd = app.add_subcommand("train", "train a model on a prepared dataset and evaluate it");
  std::string prepared;
  ConfigArgs train_cfg;
  train_cmd->add_option("--data", prepared, "prepared dataset directory (from `llm4sbr prepare`)")->required();
  train_cmd->add_option("--out,-o", out, "run directory")->required();
  add_config_options(train_cmd, train_cfg, false);
  Stage1Args stage1;
  add_stage1_options(train_cmd, stage1, true);

  // evaluate
  auto* eval_cmd = app.add_subcommand("evaluate", "evaluate a checkpoint on a split of a prepared dataset");
  std::string checkpoint, split = "test";
  ConfigArgs eval_cfg;
  eval_cmd->add_option("--data", prepared, "prepared dataset directory")->required();
  eval_cmd->add_option("--checkpoint", checkpoint, "checkpoint (best.pt) written by train or run")->required()->check(CLI::ExistingFile);
  eval_cmd->add_option("--split", split, "train, valid or test")->capture_default_str();
  std::string eval_intents;
  eval_cmd->add_option("--intents", eval_intents,
                       "for an LLM4SBR checkpoint: the intents folder of its run (runs/X/stages/intents-<key>)");
  add_config_options(eval_cmd, eval_cfg, false);

  // prompts
  auto* prompts_cmd = app.add_subcommand("prompts", "write the LLM prompts of a split (one JSON line per sample and view)");
  std::int64_t limit = -1;
  std::string stage_split = "all";
  ConfigArgs prompts_cfg;
  prompts_cmd->add_option("--data", prepared, "prepared dataset directory")->required();
  prompts_cmd->add_option("--split", stage_split, "train, valid, test or all")->capture_default_str();
  prompts_cmd->add_option("--limit", limit, "only the first N samples of each split");
  prompts_cmd->add_option("--out,-o", out, "output directory (<split>/prompts.jsonl)")->required();
  add_config_options(prompts_cmd, prompts_cfg, false);

  // infer
  auto* infer_cmd = app.add_subcommand("infer", "answer the prompts of a split with an LLM; resumes where a run stopped");
  std::string llm_spec;
  ConfigArgs infer_cfg;
  infer_cmd->add_option("--data", prepared, "prepared dataset directory")->required();
  std::string shard_spec = "1/1";
  infer_cmd->add_option("--llm", llm_spec,
                        "llama:PATH.gguf (in-process) or openai:URL[,URL...] (OpenAI-compatible servers; API key from "
                        "$OPENAI_API_KEY or the variable named by llm.http.api_key_env); default: llm.model of the config");
  infer_cmd->add_option("--shard", shard_spec, "answer only shard i of n (i/n, 1-based) of the prompts; join them with merge")
      ->capture_default_str();
  infer_cmd->add_option("--split", stage_split, "train, valid, test or all")->capture_default_str();
  infer_cmd->add_option("--limit", limit, "only the first N samples of each split");
  infer_cmd->add_option("--out,-o", out, "output directory (<split>/responses.jsonl)")->required();
  add_config_options(infer_cmd, infer_cfg, false);

  // encode
  auto* encode_cmd = app.add_subcommand("encode", "embed the item titles and the view texts (LLM answers or titles) of a split");
  std::string responses_dir, encoder_spec;
  ConfigArgs encode_cfg;
  encode_cmd->add_option("--data", prepared, "prepared dataset directory")->required();
  encode_cmd->add_option("--responses", responses_dir, "output of `llm4sbr infer` (<split>/responses.jsonl); default: the titles source");
  encode_cmd->add_option("--encoder", encoder_spec, "text encoder (default: embed.encoder of the config, else tfidf)");
  encode_cmd->add_option("--split", stage_split, "train, valid, test or all")->capture_default_str();
  encode_cmd->add_option("--limit", limit, "only the first N samples of each split");
  encode_cmd->add_option("--out,-o", out, "output directory (encoder/, catalogue.npy, <split>/texts.npy ...)")->required();
  add_config_options(encode_cmd, encode_cfg, false);

  // localize
  auto* localize_cmd = app.add_subcommand("localize", "intent localization: top-r catalogue items of every encoded text (Eq. 4-5)");
  std::string embeddings_dir;
  std::int64_t top_r = -1;
  ConfigArgs localize_cfg;
  localize_cmd->add_option("--data", prepared, "prepared dataset directory")->required();
  localize_cmd->add_option("--embeddings", embeddings_dir, "output of `llm4sbr encode`")->required();
  localize_cmd->add_option("--top-r,-r", top_r, "items per intent (default: intent.top_r of the config, else 5; 0 = raw embedding)");
  localize_cmd->add_option("--split", stage_split, "train, valid, test or all")->capture_default_str();
  localize_cmd->add_option("--out,-o", out, "output directory (<split>/intents.npy, localization.jsonl)")->required();
  add_config_options(localize_cmd, localize_cfg, false);
  // merge
  auto* merge_cmd = app.add_subcommand("merge", "join the responses.jsonl of `infer --shard` runs into one store, checking "
                                                 "that every prompt is answered exactly once");
  std::vector<std::string> shard_dirs;
  ConfigArgs merge_cfg;
  merge_cmd->add_option("--data", prepared, "prepared dataset directory (the one the shards used)")->required();
  merge_cmd->add_option("--split", stage_split, "train, valid, test or all")->capture_default_str();
  merge_cmd->add_option("--limit", limit, "only the first N samples of each split (as the shards were run)");
  merge_cmd->add_option("--out,-o", out, "output directory (<split>/responses.jsonl)")->required();
  merge_cmd->add_option("shards", shard_dirs, "the shards' --out directories")->required()->check(CLI::ExistingDirectory);
  add_config_options(merge_cmd, merge_cfg, false);

  // run
  auto* run = app.add_subcommand("run", "the whole pipeline from a config: prepare (cached), train, evaluate, report");
  ConfigArgs run_cfg;
  run->add_option("--out,-o", out, "run directory")->required();
  run->add_option("--data-dir", data_dir, "raw data directory (default: $LLM4SBR_DATA_DIR or ../shared/data)");
  add_config_options(run, run_cfg, true);
  add_stage1_options(run, stage1, true);

  // ablate
  auto* ablate = app.add_subcommand("ablate", "the paper's ablations (Table 4, Fig. 6, Fig. 7 r sweep) in one table");
  ConfigArgs ablate_cfg;
  ablate->add_option("--out,-o", out, "run directory")->required();
  ablate->add_option("--data-dir", data_dir, "raw data directory (default: $LLM4SBR_DATA_DIR or ../shared/data)");
  add_config_options(ablate, ablate_cfg, true);
  add_stage1_options(ablate, stage1, false);  // its rows vary the views and r: they need answers, not intents

  // compare
  auto* compare = app.add_subcommand("compare", "several backbones, each plain and with the LLM4SBR head, in one table");
  ConfigArgs compare_cfg;
  std::vector<std::string> compare_models;
  compare->add_option("--out,-o", out, "run directory")->required();
  compare->add_option("--models,-m", compare_models, "models to compare (default: every registered model)")->delimiter(',');
  compare->add_option("--data-dir", data_dir, "raw data directory (default: $LLM4SBR_DATA_DIR or ../shared/data)");
  add_config_options(compare, compare_cfg, true);
  add_stage1_options(compare, stage1, true);

  // download
  auto* download = app.add_subcommand("download", "download a public dataset, or a GGUF model (`download model NAME`)");
  std::string what, what_name, models_dir = "models";
  download->add_option("what", what,
                       fmt::format("a dataset ({}), or `model`", fmt::join(data::downloadable_datasets(), ", ")))->required();
  download->add_option("name", what_name, fmt::format("with `model`: {}", fmt::join(data::downloadable_models(), ", ")));
  download->add_option("--data-dir", data_dir, "where datasets go (default: $LLM4SBR_DATA_DIR or ../shared/data)");
  download->add_option("--models-dir", models_dir, "where models go")->capture_default_str();

  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::from_str(log_level));
  spdlog::set_pattern("[%H:%M:%S] %^%l%$ %v");

  try {
    if (prepare->parsed()) {
      Config cfg = load_config(prepare_cfg, dataset.empty() ? "" : "configs/" + dataset + ".yaml");
      if (!dataset.empty()) cfg.set("dataset", dataset);
      if (!cfg.has("dataset")) throw ConfigError("prepare: give --dataset NAME or a config with `dataset:`");
      auto raw_dir = train::dataset_source(cfg.require<std::string>("dataset"), train::resolve_data_dir(data_dir));
      data::ReadOptions ropt;
      ropt.skip_malformed = cfg.get<bool>("data.skip_malformed", false);
      auto raw = data::read_dataset(cfg.require<std::string>("dataset"), raw_dir, ropt);
      auto ds = data::prepare(raw, data::prepare_options_from_config(cfg));
      data::write_prepared(ds, out);
      fmt::print("{}\n", data::dataset_stats(ds).dump(2));
    } else if (train_cmd->parsed()) {
      Config cfg = load_config(train_cfg);
      if (!cfg.has("model")) cfg.set("model", "srgnn");
      apply_stage1(cfg, stage1);
      train::configure_runtime(cfg.get<int>("threads", 0));
      auto ds = data::read_prepared(prepared);
      fs::create_directories(out);
      const auto runs = train::train_prepared(cfg, ds, out);
      train::write_reports(cfg, ds, runs, out, fmt::format("{} on {}", runs.front().label, ds.name), false);
      fmt::print("\n{}\n", train::results_table(runs, train::train_options_from_config(cfg).ks, false));
    } else if (eval_cmd->parsed()) {
      Config cfg = load_config(eval_cfg);
      if (!cfg.has("model")) cfg.set("model", "srgnn");
      train::configure_runtime(cfg.get<int>("threads", 0));
      auto ds = data::read_prepared(prepared);
      auto result = train::evaluate_checkpoint(cfg, ds, checkpoint, split, eval_intents);
      fmt::print("\n{} split, {} samples{}:\n\n{}\n", split, ds.split(split).size(),
                 result.intents.empty() ? "" : ", intents from " + result.intents,
                 train::results_table({result}, train::train_options_from_config(cfg).ks, false));
    } else if (prompts_cmd->parsed()) {
      Config cfg = load_config(prompts_cfg);
      auto ds = data::read_prepared(prepared);
      const auto tpl = text::prompt_template_from_config(cfg);
      const auto views = text::views_from_config(cfg, tpl);
      for (const auto& sp : splits_of(stage_split)) {
        fs::create_directories(fs::path(out) / sp);
        std::ofstream file(fs::path(out) / sp / "prompts.jsonl");
        std::int64_t n = 0;
        for (const auto& sample : first_samples(ds.split(sp), limit))
          for (const auto& view : views) {
            const std::string p = text::build_prompt(tpl, ds, sample, view);
            file << nlohmann::json{{"sample", sample.id}, {"view", view}, {"prompt_hash", hash_hex(p)}, {"prompt", p}}.dump()
                 << "\n";
            ++n;
          }
        spdlog::info("prompts: {} prompts -> {}", n, (fs::path(out) / sp / "prompts.jsonl").string());
      }
    } else if (infer_cmd->parsed()) {
      Config cfg = load_config(infer_cfg);
      if (llm_spec.empty()) llm_spec = cfg.get<std::string>("llm.model", "");
      if (llm_spec.empty()) throw ConfigError("infer: give --llm llama:PATH.gguf or openai:URL, or set llm.model in the config");
      llm::InferOptions options{cfg.get<std::int64_t>("llm.chunk", 2048), llm::Shard::parse(shard_spec)};
      auto ds = data::read_prepared(prepared);
      const auto tpl = text::prompt_template_from_config(cfg);
      const auto views = text::views_from_config(cfg, tpl);
      auto backend = llm::make_llm_backend(llm_spec, cfg);
      std::vector<std::unique_ptr<llm::ResponseStore>> stores;
      std::vector<llm::InferTask> tasks;
      for (const auto& sp : splits_of(stage_split)) {
        stores.push_back(std::make_unique<llm::ResponseStore>(fs::path(out) / sp / "responses.jsonl"));
        tasks.push_back({first_samples(ds.split(sp), limit), stores.back().get()});
      }
      auto stats = llm::run_inference(ds, tasks, views, tpl, *backend, options);
      for (const auto& store : stores) fmt::print("{} records in {}\n", store->size(), store->file().string());
      fmt::print("{} generated now, {} were already there, {} left to other shards\n", stats.generated, stats.already,
                 stats.other_shards);
    } else if (merge_cmd->parsed()) {
      Config cfg = load_config(merge_cfg);
      auto ds = data::read_prepared(prepared);
      const auto tpl = text::prompt_template_from_config(cfg);
      const auto views = text::views_from_config(cfg, tpl);
      for (const auto& sp : splits_of(stage_split)) {
        const auto expected = llm::prompt_keys(ds, first_samples(ds.split(sp), limit), views, tpl);
        std::vector<fs::path> files;
        for (const auto& dir : shard_dirs) files.push_back(fs::path(dir) / sp / "responses.jsonl");
        const auto target = fs::path(out) / sp / "responses.jsonl";
        fmt::print("{}: {} records from {} shards in {}\n", sp, llm::merge_shards(expected, files, target), files.size(),
                   target.string());
      }
    } else if (encode_cmd->parsed()) {
      Config cfg = load_config(encode_cfg);
      if (!encoder_spec.empty()) cfg.set("embed.encoder", encoder_spec);
      auto ds = data::read_prepared(prepared);
      const auto encoder = intent::fitted_encoder(cfg, ds, fs::path(out) / "encoder");
      intent::save_catalogue(fs::path(out) / "catalogue.npy", intent::catalogue_embeddings(ds, *encoder));
      intent::IntentsOptions opt;
      opt.views = text::views_from_config(cfg, text::prompt_template_from_config(cfg));
      for (const auto& sp : splits_of(stage_split)) {
        const auto samples = first_samples(ds.split(sp), limit);
        const auto source = responses_dir.empty() ? intent::titles_text_source(ds)
                                                  : intent::response_text_source(fs::path(responses_dir) / sp / "responses.jsonl");
        const auto encoded = intent::encode_view_texts(ds, samples, source, *encoder, opt);
        intent::save_encoded_texts(fs::path(out) / sp, encoded);
        fmt::print("{}: {} samples x {} views, {} distinct texts ({} with a zero embedding) -> {}\n", sp, samples.size(),
                   opt.views.size(), encoded.distinct.size(), encoded.zero_texts, (fs::path(out) / sp).string());
      }
    } else if (localize_cmd->parsed()) {
      Config cfg = load_config(localize_cfg);
      auto ds = data::read_prepared(prepared);
      const auto catalogue = intent::load_catalogue(fs::path(embeddings_dir) / "catalogue.npy");
      intent::IntentsOptions opt;
      opt.r = localize_cmd->count("--top-r") ? top_r : cfg.get<std::int64_t>("intent.top_r", opt.r);
      opt.normalize_weights = cfg.get<bool>("intent.normalize_weights", opt.normalize_weights);
      opt.localizer = cfg.get<std::string>("intent.localizer", opt.localizer);
      for (const auto& sp : splits_of(stage_split)) {
        const auto encoded = intent::load_encoded_texts(fs::path(embeddings_dir) / sp);
        opt.views = encoded.views;
        opt.data = data::samples_fingerprint(ds, first_samples(ds.split(sp), static_cast<std::int64_t>(encoded.sample_ids.size())));
        intent::localize_texts(fs::path(out) / sp, ds, encoded, catalogue, opt);
        fmt::print("{}: intents -> {}\n", sp, (fs::path(out) / sp / "intents.npy").string());
      }
    } else if (run->parsed()) {
      Config cfg = load_config(run_cfg);
      if (!data_dir.empty()) cfg.set("paths.data", data_dir);
      apply_stage1(cfg, stage1);
      train::run_experiment(cfg, out);
    } else if (ablate->parsed()) {
      Config cfg = load_config(ablate_cfg);
      if (!data_dir.empty()) cfg.set("paths.data", data_dir);
      apply_stage1(cfg, stage1);
      train::run_variants(cfg, out, train::ablation_variants(),
                          fmt::format("Ablations of LLM4SBR({}) on {}", train::display_name(cfg.require<std::string>("model")),
                                      cfg.require<std::string>("dataset")),
                          false);
    } else if (compare->parsed()) {
      Config cfg = load_config(compare_cfg);
      if (!data_dir.empty()) cfg.set("paths.data", data_dir);
      apply_stage1(cfg, stage1);
      if (compare_models.empty()) compare_models = models::registered_encoders();
      const auto known = models::registered_encoders();
      for (std::size_t i = 0; i < compare_models.size(); ++i) {
        const auto& m = compare_models[i];
        if (std::find(known.begin(), known.end(), m) == known.end())
          throw ConfigError(fmt::format("compare: unknown model '{}'; known models: {}", m, fmt::join(known, ", ")));
        if (std::find(compare_models.begin(), compare_models.begin() + i, m) != compare_models.begin() + i)
          throw ConfigError(fmt::format("compare: model '{}' is listed twice in --models", m));
      }
      train::run_variants(cfg, out, train::comparison_variants(compare_models),
                          fmt::format("Backbones with and without LLM4SBR on {}", cfg.require<std::string>("dataset")), true);
    } else if (download->parsed() && what == "model") {
      if (what_name.empty())
        throw ConfigError(fmt::format("download model: name one of {}", fmt::join(data::downloadable_models(), ", ")));
      data::download_model(what_name, models_dir);
    } else if (download->parsed()) {
      if (what == "dataset") what = what_name;
      fs::path target = data_dir.empty() ? fs::path(std::getenv("LLM4SBR_DATA_DIR") ? std::getenv("LLM4SBR_DATA_DIR") : "../shared/data")
                                         : fs::path(data_dir);
      data::download_dataset(what, target);
    }
  } catch (const llm4sbr::Error& e) {
    spdlog::error("{}", e.what());
    return 2;
  } catch (const c10::Error& e) {
    spdlog::error("tensor error: {}", e.what_without_backtrace());
    return 3;
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
  return 0;
}
