#include "llm4sbr/train/experiment.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <map>
#include <fstream>

#include "llm4sbr/core/atomic_file.hpp"
#include "llm4sbr/core/cached_stage.hpp"
#include "llm4sbr/core/error.hpp"
#include "llm4sbr/core/hash.hpp"
#include "llm4sbr/data/data_dir.hpp"
#include "llm4sbr/data/download.hpp"
#include "llm4sbr/data/io.hpp"
#include "llm4sbr/data/prepare.hpp"
#include "llm4sbr/data/readers.hpp"
#include "llm4sbr/enhance/llm4sbr_head.hpp"
#include "llm4sbr/intent/intent_stage.hpp"
#include "llm4sbr/text/prompts.hpp"
#include "llm4sbr/models/session_encoder.hpp"
#include "llm4sbr/core/runtime.hpp"
#include "llm4sbr/train/device.hpp"
#include "llm4sbr/train/distributed.hpp"

namespace llm4sbr::train {

namespace fs = std::filesystem;

namespace {

// Size and mtime of every source file: a cheap fingerprint that changes when the data is replaced.
std::string source_fingerprint(const fs::path& dir) {
  std::vector<std::string> parts;
  if (fs::exists(dir)) {
    for (const auto& e : fs::directory_iterator(dir)) {
      if (!e.is_regular_file()) continue;
      auto mtime = e.last_write_time().time_since_epoch().count();
      parts.push_back(fmt::format("{}:{}:{}", e.path().filename().string(), e.file_size(), mtime));
    }
  }
  std::sort(parts.begin(), parts.end());
  return fmt::format("{}", fmt::join(parts, ";"));
}

}  // namespace

fs::path prepared_dir(const fs::path& stages_dir, const std::string& key) { return stages_dir / ("prepare-" + key); }

std::string prepare_key(const Config& cfg, const fs::path& data_dir) {
  const auto dataset = cfg.require<std::string>("dataset");
  const fs::path source = data_dir / data::dataset_folder(dataset);
  return hash_hex(fmt::format("{}\n{}\n{}", dataset, cfg.canonical("data"), source_fingerprint(source)));
}

fs::path dataset_source(const std::string& dataset, const fs::path& data_dir) {
  const fs::path source = data_dir / data::dataset_folder(dataset);
  if (fs::is_directory(source) && !fs::is_empty(source)) return source;
  const auto downloadable = data::downloadable_datasets();
  const bool can_download = std::find(downloadable.begin(), downloadable.end(), dataset) != downloadable.end() ||
                            std::find(downloadable.begin(), downloadable.end(), source.filename().string()) != downloadable.end();
  throw ConfigError(fmt::format(
      "no {} data in {} (the data directory is --data-dir, else $LLM4SBR_DATA_DIR, else ../shared/data from the current "
      "folder): {}",
      dataset, source.string(),
      can_download ? fmt::format("`llm4sbr download {}` fetches it", dataset)
                   : "put interactions.csv (and items.csv) there, as the README's Data section says"));
}

namespace {

constexpr const char* kPrepareKeyFile = "prepare_key";

// Reads, prepares and writes cfg's dataset into dir (the prepare stage's work).
data::PreparedDataset prepare_fresh(const Config& cfg, const fs::path& data_dir, const fs::path& dir) {
  const auto dataset = cfg.require<std::string>("dataset");
  const fs::path source = dataset_source(dataset, data_dir);
  spdlog::info("prepare: reading {} from {}", dataset, source.string());
  data::ReadOptions ropt;
  ropt.skip_malformed = cfg.get<bool>("data.skip_malformed", false);
  auto raw = data::read_dataset(dataset, source, ropt);
  if (raw.skipped_rows > 0) spdlog::warn("prepare: skipped {} malformed rows (data.skip_malformed)", raw.skipped_rows);
  auto ds = data::prepare(raw, data::prepare_options_from_config(cfg));
  data::write_prepared(ds, dir);
  spdlog::info("prepare: {} sessions, {} items, {} train / {} valid / {} test samples -> {}", ds.sessions.size(),
               ds.n_items(), ds.train.size(), ds.valid.size(), ds.test.size(), dir.string());
  return ds;
}

}  // namespace

data::PreparedDataset prepare_cached(const Config& cfg, const fs::path& data_dir, const fs::path& stages_dir) {
  const fs::path dir = prepared_dir(stages_dir, prepare_key(cfg, data_dir));
  if (data::is_prepared(dir)) {
    spdlog::info("prepare: re-using {}", dir.string());
    return read_cached_stage(dir, [&] { return data::read_prepared(dir); });
  }
  return prepare_fresh(cfg, data_dir, dir);
}

data::PreparedDataset prepare_into(const Config& cfg, const fs::path& data_dir, const fs::path& dir) {
  const auto key = prepare_key(cfg, data_dir);
  std::ifstream recorded(dir / kPrepareKeyFile);
  std::string seen;
  if (data::is_prepared(dir) && std::getline(recorded, seen) && seen == key) {
    spdlog::info("prepare: re-using {} (same data and data.* settings)", dir.string());
    return data::read_prepared(dir);
  }
  auto ds = prepare_fresh(cfg, data_dir, dir);
  write_file_atomically(dir / kPrepareKeyFile, key + "\n");
  return ds;
}



namespace {

// A split's intents as the service computes them for a session it has no answer for: the titles of each view,
// encoded with the recorded encoder and localized (intents_in_memory), or none (zeros). [n, V, d_text], row =
// Sample::id.
torch::Tensor online_split_intents(const TrainedModel& trained, const std::vector<data::Sample>& samples,
                                   const std::string& kind) {
  std::int64_t rows = 0;
  for (const auto& s : samples) rows = std::max(rows, s.id + 1);
  auto out = torch::zeros({rows, static_cast<std::int64_t>(trained.views.size()), trained.text_dim});
  if (kind == "none") return out;
  const auto online = online_intents(trained);
  const auto computed = intent::intents_in_memory(*trained.dataset, samples, intent::titles_text_source(*trained.dataset),
                                                  *trained.encoder, *online.index, online.options);
  std::vector<std::int64_t> ids;
  for (const auto& s : samples) ids.push_back(s.id);
  return out.index_copy_(0, torch::tensor(ids), computed.intents);
}

}  // namespace

ModelRun evaluate_checkpoint(const Config& given_cfg, const data::PreparedDataset& ds, const fs::path& checkpoint,
                             const std::string& split, const fs::path& given_intents_dir, const std::string& online_intents) {
  if (!online_intents.empty() && online_intents != "titles" && online_intents != "none")
    throw ConfigError(fmt::format("--online-intents '{}': titles or none", online_intents));
  LoadOptions load;
  load.config = given_cfg;
  // The caller owns ds and outlives the loaded model: share it without a copy (an aliasing pointer).
  load.dataset = std::shared_ptr<const data::PreparedDataset>(std::shared_ptr<void>{}, &ds);
  load.intents = given_intents_dir;
  load.text = online_intents == "titles";  // the stored intents need no encoder
  if (ds.split(split).empty())
    throw ConfigError(fmt::format("the {} split of this dataset is empty (data.valid_fraction = 0?)", split));
  const auto trained = load_trained(checkpoint, device_from_config(given_cfg), load);
  const auto opt = train_options_from_config(trained.config);
  if (!online_intents.empty() && trained.views.empty())
    throw ConfigError(fmt::format("--online-intents: {} has no intents to replace", trained.model->label()));
  if (online_intents == "titles" && !trained.encoder)
    throw ConfigError("--online-intents titles: this checkpoint records no text encoder");
  const auto intents = online_intents.empty()
                           ? trained.intents(split)
                           : online_split_intents(trained, ds.split(split), online_intents).to(device_of(*trained.model));
  ModelRun run{trained.model->label(), {},
               !online_intents.empty() ? online_intents + " (computed now)"
               : trained.intents_dir.empty() ? ""
                                             : (trained.intents_dir / split).string()};
  run.result.test = evaluate(*trained.model, ds.split(split), opt, opt.paper_compatible, intents);
  return run;
}

std::string training_state_key(const Config& cfg, const data::PreparedDataset& ds, const fs::path& intents_dir) {
  // What the trained weights depend on: the data, the model's merged settings, training, evaluation (the
  // per-epoch figures), the head, and for LLM4SBR the intents folder, whose name is the hash of everything
  // that made the intents (prompts, LLM, encoder, top-r). Not part of it: paths, device, threads, resume,
  // settings of other stages or rows, train.eval_batch_size, train.prefetch_batches (neither changes a result),
  // and train.epochs, so that a finished run given
  // more epochs continues exactly as an uninterrupted longer run (the schedule depends on the epoch only).
  Config c(YAML::Clone(cfg.root()));
  for (const auto* key : {"paths", "device", "threads", "resume", "train.epochs", "train.eval_batch_size",
                          "train.prefetch_batches", "enhance.baseline", "models", "prompt", "llm", "embed", "intent"})
    c.set_node(key, YAML::Node());
  return hash_hex(fmt::format("{}\n{}\n{} {}\n{} {} {} {}", c.canonical(), model_settings(cfg).canonical(),
                              intents_dir.filename().string(), cfg.canonical("intent.views"), ds.n_items(),
                              ds.train.size(), ds.valid.size(), ds.test.size()));
}

ModelRun train_model(const Config& cfg, const data::PreparedDataset& ds, models::RecommenderImpl& model, const fs::path& run_dir,
                     const SplitIntents& intents, const TrainedInputs& inputs) {
  auto opt = train_options_from_config(cfg);
  opt.run_dir = run_dir;
  opt.state_key = training_state_key(cfg, ds, inputs.intents);
  // checkpoint.yaml describes the best.pt beside it, so it is written with it, never before: a training
  // killed before its first epoch ends leaves the previous pair as it was.
  opt.on_best_saved = [&] { record_checkpoint(cfg, run_dir, inputs); };
  opt.label = model.label();
  std::int64_t n_params = 0;
  for (const auto& p : model.parameters()) n_params += p.numel();
  spdlog::info("train: {} ({} parameters) on {} samples -> {}", opt.label, n_params, ds.train.size(), run_dir.string());
  return {model.label(), fit(model, ds, opt, intents), ""};
}

namespace {

// A file-system-friendly name for a row's run directory ("LLM4SBR(SR-GNN) w/o AU" -> "llm4sbr-sr-gnn-w-o-au").
std::string slug(const std::string& label) {
  std::string out;
  for (unsigned char c : label) {
    if (std::isalnum(c)) out += static_cast<char>(std::tolower(c));
    else if (!out.empty() && out.back() != '-') out += '-';
  }
  while (!out.empty() && out.back() == '-') out.pop_back();
  return out.empty() ? "model" : out;
}

}  // namespace

ModelRun train_backbone(const Config& cfg, const data::PreparedDataset& ds, const fs::path& run_dir,
                        const fs::path& prepared_dir) {
  auto model = build_backbone(cfg, ds);
  const fs::path dir = run_dir / slug(model->label());  // the folder `run` gives the same model: sr-gnn/
  auto run = train_model(cfg, ds, *model, dir, {}, {prepared_dir, {}, {}});
  run.checkpoint_dir = dir.string();
  return run;
}

namespace {

// One row: the plain backbone, or Stage 1 (cached) and the LLM4SBR head. `prepared` is the folder ds was
// read from (recorded in checkpoint.yaml).
ModelRun run_one(const Config& cfg, const data::PreparedDataset& ds, const std::string& data_key, const fs::path& prepared,
                 const fs::path& out_dir, const std::string& label) {
  if (!cfg.get<bool>("enhance.enabled", true)) {
    auto model = build_backbone(cfg, ds);
    const std::string name = label.empty() ? model->label() : label;
    auto run = train_model(cfg, ds, *model, out_dir / slug(name), {}, {prepared, {}, {}});
    run.label = name;
    run.checkpoint_dir = (out_dir / slug(name)).string();
    return run;
  }
  // A training job's rank 0 runs Stage 1 first; the others then re-use its cached stages (or, on another
  // machine without the run folder, compute their own).
  intent::IntentStage stage;
  distributed().main_first([&] { stage = intent::run_intent_stage(cfg, ds, data_key, out_dir / "stages"); });
  auto model = build_llm4sbr(cfg, ds, stage.views, stage.dim);
  std::string name = label.empty() ? model->label() : label;
  if (label.empty() && stage.source.kind == "titles") name += " [titles]";
  // The titles source has no view qualifier: its `normal` view is its long view, so that row is `w/o short`.
  if (!label.empty() && stage.source.kind == "titles" && stage.views == std::vector<std::string>{"normal"})
    name += " (titles: same as w/o short)";
  auto run = train_model(cfg, ds, *model, out_dir / slug(name), {stage.train, stage.valid, stage.test},
                         {prepared, stage.encoder_dir, stage.dir, stage.responses_dir});
  run.label = name;
  run.intents = stage.source.describe();
  run.intents_dir = stage.dir.string();
  run.checkpoint_dir = (out_dir / slug(name)).string();
  return run;
}

// The settings of one row, checked without doing any work (ConfigError naming the key and the row).
// The backbone is built and dropped (seconds for the graph models): that checks its name and every key of
// its models.NAME section, misspellings included.
void check_run_settings(const Config& cfg, const data::PreparedDataset& ds, const std::string& row) {
  try {
    train_options_from_config(cfg);
    build_backbone(cfg, ds);
    if (!cfg.get<bool>("enhance.enabled", true)) return;
    intent::check_intent_settings(cfg);
    const auto views = text::views_from_config(cfg, text::prompt_template_from_config(cfg));
    enhance::HeadOptions::from_config(cfg, views, 1);
  } catch (const ConfigError& e) {
    throw ConfigError(row.empty() ? e.what() : fmt::format("{} (row '{}')", e.what(), row));
  }
}

}  // namespace

std::vector<ModelRun> run_variants(const Config& cfg, const fs::path& out_dir, const std::vector<Variant>& variants,
                                   const std::string& title, bool improvement) {
  configure_runtime(cfg.get<int>("threads", 0));
  fs::create_directories(out_dir);
  const bool main = distributed().is_main();  // rank 0 of a training job writes the reports
  if (main) write_file_atomically(out_dir / "config.yaml", cfg.dump());
  const auto data_dir = data::resolve_data_dir(cfg.get<std::string>("paths.data", ""));
  data::PreparedDataset ds;
  distributed().main_first([&] { ds = prepare_cached(cfg, data_dir, out_dir / "stages"); });
  const auto data_key = prepare_key(cfg, data_dir);
  const auto opt = train_options_from_config(cfg);

  // Every row's settings are checked before the first one trains: a typo must not cost hours.
  std::vector<Config> configs;
  for (const auto& v : variants) {
    Config vcfg(YAML::Clone(cfg.root()));  // a deep copy: yaml-cpp nodes are shared handles
    vcfg.apply_overrides(v.set);
    check_run_settings(vcfg, ds, v.label.empty() ? vcfg.get<std::string>("model", "") : v.label);
    if (vcfg.get<bool>("enhance.enabled", true)) intent::check_given_stage1(vcfg, ds, data_key, out_dir / "stages");
    configs.push_back(std::move(vcfg));
  }
  std::vector<ModelRun> runs;
  for (std::size_t i = 0; i < variants.size(); ++i) {
    const auto& v = variants[i];
    const Config& vcfg = configs[i];
    runs.push_back(run_one(vcfg, ds, data_key, prepared_dir(out_dir / "stages", data_key), out_dir, v.label));
    // Reports after every row, so a long comparison that is stopped still shows what finished.
    if (!main) continue;
    plot_curves(runs, out_dir, opt.ks.back());
    write_reports(cfg, ds, runs, out_dir, title, improvement);
  }
  if (!main) return runs;
  fmt::print("\n{}\nTest metrics (%), epoch selected on validation, {} test samples:\n\n{}\n", title, ds.test.size(),
             results_table(runs, opt.ks, false, false, improvement));
  std::map<std::string, std::vector<std::string>> by_source;  // one line per intent source
  for (const auto& r : runs)
    if (!r.intents.empty()) by_source[r.intents].push_back(r.label);
  for (const auto& [source, labels] : by_source) fmt::print("Intents from {}: {}\n", source, fmt::join(labels, ", "));
  fmt::print("Written: {}/results.md, metrics.json, curves.png, checkpoints\n", out_dir.string());
  return runs;
}

std::vector<ModelRun> train_prepared(const Config& cfg, const data::PreparedDataset& ds, const fs::path& out_dir,
                                     const fs::path& prepared_dir) {
  if (!intent::stage1_by_hand(cfg)) return {train_backbone(cfg, ds, out_dir, prepared_dir)};
  std::string data_key;
  for (const auto* split : {&ds.train, &ds.valid, &ds.test}) data_key += data::samples_fingerprint(ds, *split);
  data_key = hash_hex(data_key);
  intent::check_given_stage1(cfg, ds, data_key, out_dir / "stages");
  return {run_one(cfg, ds, data_key, prepared_dir, out_dir, "")};
}

std::vector<ModelRun> run_experiment(const Config& cfg, const fs::path& out_dir) {
  std::vector<Variant> variants;
  const bool enhanced = cfg.get<bool>("enhance.enabled", true);
  if (!enhanced || cfg.get<bool>("enhance.baseline", true)) variants.push_back({"", {"enhance.enabled=false"}});
  if (enhanced) variants.push_back({"", {}});
  // The title names what trained: with enhance.baseline=false only LLM4SBR(backbone) does.
  const auto backbone = models::display_name(cfg.require<std::string>("model"));
  const auto title = fmt::format("{} on {}", variants.size() == 2 ? backbone + " and LLM4SBR(" + backbone + ")"
                                             : enhanced           ? "LLM4SBR(" + backbone + ")"
                                                                  : backbone,
                                 cfg.require<std::string>("dataset"));
  return run_variants(cfg, out_dir, variants, title, variants.size() == 2);
}

std::vector<Variant> ablation_variants() {
  return {
      {"LLM4SBR", {}},
      {"w/o SBR", {"enhance.without_sbr=true"}},
      {"w/o LLM", {"enhance.enabled=false"}},
      {"w/o AU", {"enhance.align_uniform=false"}},
      {"w/o long", {"intent.views=[short]"}},
      {"w/o short", {"intent.views=[long]"}},
      {"normal", {"intent.views=[normal]"}},
      {"r=0", {"intent.top_r=0"}},
      {"r=1", {"intent.top_r=1"}},
      {"r=3", {"intent.top_r=3"}},
  };
}

std::vector<Variant> comparison_variants(const std::vector<std::string>& models) {
  std::vector<Variant> out;
  for (const auto& m : models) {  // no labels: rows are named by the model, LLM4SBR rows with their intent source
    out.push_back({"", {"model=" + m, "enhance.enabled=false"}});
    out.push_back({"", {"model=" + m}});
  }
  return out;
}

}  // namespace llm4sbr::train
