// The Stage 2 commands: train and evaluate one model on a prepared dataset, and the whole-pipeline runs
// from a config (run, ablate, compare).
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <memory>

#include "cli.hpp"
#include "launch.hpp"
#include "llm4sbr/core/error.hpp"
#include "llm4sbr/core/runtime.hpp"
#include "llm4sbr/data/io.hpp"
#include "llm4sbr/models/recommender.hpp"
#include "llm4sbr/models/session_encoder.hpp"
#include "llm4sbr/train/distributed.hpp"
#include "llm4sbr/train/experiment.hpp"

namespace llm4sbr::cli {

namespace fs = std::filesystem;

namespace {

// Trains cfg's model (srgnn by default) on a prepared dataset and evaluates it; checkpoints go to --out.
// With --responses or --intents (Stage 1 run by hand) it trains LLM4SBR(model) on them.
void run_train(const Options& o) {
  Config cfg = load_config(o);
  if (!cfg.has("model")) cfg.set("model", "srgnn");
  apply_stage1(cfg, o);
  if (launch_ranks(o)) return;  // --nproc: the ranks do the work
  join_job(o, cfg);
  configure_runtime(cfg.get<int>("threads", 0));
  const auto ds = data::read_prepared(o.data);
  fs::create_directories(o.out);
  const auto runs = train::train_prepared(cfg, ds, o.out, o.data);
  if (!train::distributed().is_main()) return;  // rank 0 reports
  train::write_reports(cfg, ds, runs, o.out, fmt::format("{} on {}", runs.front().label, ds.name), false);
  fmt::print("\n{}\n", train::results_table(runs, train::train_options_from_config(cfg).ks, false));
}

// run, ablate and compare in a training job: --nproc launches the ranks, which join and do `work`.
void in_job(const Options& o, const Config& cfg, const std::function<void()>& work) {
  if (launch_ranks(o)) return;
  join_job(o, cfg);
  work();
}

struct EvaluateArgs {
  Options o;
  std::string checkpoint, intents, online_intents;
};

// Evaluates a checkpoint on a split (load_trained: the settings and intents recorded beside it).
void run_evaluate(const EvaluateArgs& a) {
  Config cfg = load_config(a.o);
  if (!cfg.has("model")) cfg.set("model", "srgnn");
  configure_runtime(cfg.get<int>("threads", 0));
  const auto ds = data::read_prepared(a.o.data);
  const auto result = train::evaluate_checkpoint(cfg, ds, a.checkpoint, a.o.split, a.intents, a.online_intents);
  fmt::print("\n{} split, {} samples{}:\n\n{}\n", a.o.split, ds.split(a.o.split).size(),
             result.intents.empty() ? "" : ", intents from " + result.intents,
             train::results_table({result}, train::train_options_from_config(cfg).ks, false));
}

// The config of a whole-pipeline command, with --data-dir as paths.data and --responses/--intents.
Config pipeline_config(const Options& o) {
  Config cfg = load_config(o);
  if (!o.data_dir.empty()) cfg.set("paths.data", o.data_dir);
  apply_stage1(cfg, o);
  return cfg;
}

// Refuses an unknown or repeated model name in compare's --models.
void check_models(const std::vector<std::string>& models) {
  const auto known = models::registered_encoders();
  for (auto it = models.begin(); it != models.end(); ++it) {
    if (std::find(known.begin(), known.end(), *it) == known.end())
      throw ConfigError(fmt::format("compare: unknown model '{}'; known models: {}", *it, fmt::join(known, ", ")));
    if (std::find(models.begin(), it, *it) != it)
      throw ConfigError(fmt::format("compare: model '{}' is listed twice in --models", *it));
  }
}

void run_ablate(const Options& o) {
  const Config cfg = pipeline_config(o);
  in_job(o, cfg, [&] {
    train::run_variants(cfg, o.out, train::ablation_variants(),
                        fmt::format("Ablations of LLM4SBR({}) on {}",
                                    models::display_name(cfg.require<std::string>("model")), cfg.require<std::string>("dataset")),
                        false);
  });
}

struct CompareArgs {
  Options o;
  std::vector<std::string> models;
};

void run_compare(const CompareArgs& a) {
  const Config cfg = pipeline_config(a.o);
  const auto models = a.models.empty() ? models::registered_encoders() : a.models;
  check_models(models);
  in_job(a.o, cfg, [&] {
    train::run_variants(cfg, a.o.out, train::comparison_variants(models),
                        fmt::format("Backbones with and without LLM4SBR on {}", cfg.require<std::string>("dataset")), true);
  });
}

// run, ablate and compare take the same options: --out, --data-dir, --config (required), --set, --responses
// and, except for ablate (its rows vary the views and r: they need answers, not intents), --intents.
CLI::App* add_pipeline(CLI::App& app, const std::string& name, const std::string& help, Options& o, bool intents = true) {
  auto* cmd = app.add_subcommand(name, help);
  add_out(cmd, o, "run directory");
  add_data_dir(cmd, o);
  add_config(cmd, o, true);
  add_stage1(cmd, o, intents);
  add_distributed(cmd, o);
  return cmd;
}

}  // namespace

std::vector<Command> add_train_commands(CLI::App& app) {
  auto train = std::make_shared<Options>();
  auto* t = app.add_subcommand("train", "train a model on a prepared dataset and evaluate it");
  add_data(t, *train, "prepared dataset directory (from `llm4sbr prepare`)");
  add_out(t, *train, "run directory");
  add_config(t, *train, false);
  add_stage1(t, *train, true);
  add_distributed(t, *train);

  auto evaluate = std::make_shared<EvaluateArgs>();
  evaluate->o.split = "test";
  auto* e = app.add_subcommand("evaluate", "evaluate a checkpoint on a split of a prepared dataset");
  add_data(e, evaluate->o);
  e->add_option("--checkpoint", evaluate->checkpoint, "checkpoint (best.pt) written by train or run")
      ->required()
      ->check(CLI::ExistingFile);
  add_split(e, evaluate->o, "train, valid or test");
  e->add_option("--intents", evaluate->intents,
                "for an LLM4SBR checkpoint: the intents folder of its run (runs/X/stages/intents-<key>); default: "
                "the one recorded in its checkpoint.yaml");
  e->add_option("--online-intents", evaluate->online_intents,
                "for an LLM4SBR checkpoint: instead of the stored intents, those `llm4sbr serve` falls back to: titles "
                "(computed now with the recorded encoder) or none (zero intents)")
      ->check(CLI::IsMember({"titles", "none"}));
  add_config(e, evaluate->o, false);

  auto run = std::make_shared<Options>();
  auto* r = add_pipeline(app, "run", "the whole pipeline from a config: prepare (cached), train, evaluate, report", *run);
  auto ablate = std::make_shared<Options>();
  auto* a = add_pipeline(app, "ablate", "the paper's ablations (Table 4, Fig. 6, Fig. 7 r sweep) in one table", *ablate,
                         false);
  auto compare = std::make_shared<CompareArgs>();
  auto* c = add_pipeline(app, "compare", "several backbones, each plain and with the LLM4SBR head, in one table", compare->o);
  c->add_option("--models,-m", compare->models, "models to compare (default: every registered model)")->delimiter(',');

  return {{t, [train] { run_train(*train); }},
          {e, [evaluate] { run_evaluate(*evaluate); }},
          {r, [run] {
             const auto cfg = pipeline_config(*run);
             in_job(*run, cfg, [&] { train::run_experiment(cfg, run->out); });
           }},
          {a, [ablate] { run_ablate(*ablate); }},
          {c, [compare] { run_compare(*compare); }}};
}

}  // namespace llm4sbr::cli
