#include "llm4sbr/train/experiment.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <map>
#include <fstream>

#include "llm4sbr/core/cached_stage.hpp"
#include "llm4sbr/core/error.hpp"
#include "llm4sbr/core/hash.hpp"
#include "llm4sbr/core/npy.hpp"
#include "llm4sbr/data/download.hpp"
#include "llm4sbr/data/io.hpp"
#include "llm4sbr/data/prepare.hpp"
#include "llm4sbr/data/readers.hpp"
#include "llm4sbr/enhance/llm4sbr_head.hpp"
#include "llm4sbr/intent/intent_stage.hpp"
#include "llm4sbr/text/prompts.hpp"
#include "llm4sbr/models/session_encoder.hpp"
#include "llm4sbr/train/runtime.hpp"

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

fs::path resolve_data_dir(const std::string& override_dir) {
  std::vector<fs::path> tried;
  if (!override_dir.empty()) {
    if (fs::exists(override_dir)) return override_dir;
    throw ConfigError(fmt::format("data directory '{}' (--data-dir) does not exist", override_dir));
  }
  if (const char* env = std::getenv("LLM4SBR_DATA_DIR"); env && *env) {
    if (fs::exists(env)) return env;
    throw ConfigError(fmt::format("LLM4SBR_DATA_DIR='{}' does not exist", env));
  }
  fs::path fallback = "../shared/data";
  if (fs::exists(fallback)) return fallback;
  throw ConfigError(fmt::format(
      "no data directory: set LLM4SBR_DATA_DIR or pass --data-dir (looked for {} from {}); "
      "`llm4sbr download DATASET` fetches the public files",
      fallback.string(), fs::current_path().string()));
}

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

data::PreparedDataset prepare_cached(const Config& cfg, const fs::path& data_dir, const fs::path& stages_dir) {
  const auto dataset = cfg.require<std::string>("dataset");
  const std::string key = prepare_key(cfg, data_dir);
  const fs::path dir = stages_dir / ("prepare-" + key);
  if (data::is_prepared(dir)) {
    spdlog::info("prepare: re-using {}", dir.string());
    return read_cached_stage(dir, [&] { return data::read_prepared(dir); });
  }
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

Config model_settings(const Config& cfg) {
  const auto model = cfg.require<std::string>("model");
  YAML::Node settings(YAML::NodeType::Map);
  const fs::path configs = cfg.get<std::string>("paths.configs", "configs");
  const fs::path file = configs / "models" / (model + ".yaml");
  if (fs::exists(file)) settings = Config::load(file).root();
  // Without a models.<model> section, node() is null, and merging null would replace the file's keys.
  if (const YAML::Node over = cfg.node("models." + model); over.IsMap()) settings = merge_yaml(settings, over);
  return Config(settings);
}

std::shared_ptr<PlainRecommenderImpl> build_backbone(const Config& cfg, const data::PreparedDataset& ds) {
  const auto opt = train_options_from_config(cfg);
  const Config settings = model_settings(cfg);
  torch::manual_seed(opt.seed);
  models::ModelContext ctx;
  ctx.n_items = ds.n_items();
  ctx.hidden_size = settings.get<std::int64_t>("hidden_size", 100);
  ctx.seed = opt.seed;
  ctx.dataset = &ds;
  return std::make_shared<PlainRecommenderImpl>(models::make_encoder(cfg.require<std::string>("model"), ctx, settings));
}

namespace {

constexpr const char* kCheckpointSettings = "checkpoint.yaml";
// The sections that define a trained model's shape and inputs; evaluation settings (eval.*) stay the user's.
constexpr const char* kModelSections[] = {"model", "models", "enhance", "intent"};

void record_checkpoint_settings(const Config& cfg, const fs::path& run_dir, const std::string& intents_dir) {
  fs::create_directories(run_dir);
  YAML::Node doc(YAML::NodeType::Map);
  // Relative to the checkpoint's folder, so that a run folder moved as a whole still finds its intents.
  doc["intents_dir"] = intents_dir.empty() ? "" : fs::relative(fs::absolute(intents_dir), fs::absolute(run_dir)).string();
  Config recorded(YAML::Clone(cfg.root()));
  // The backbone's settings as merged at training time, so that editing configs/models/ later changes nothing.
  const auto model = cfg.require<std::string>("model");
  recorded.set_node("models", YAML::Node(YAML::NodeType::Map));
  recorded.set_node("models." + model, model_settings(cfg).root());
  doc["config"] = recorded.root();
  YAML::Emitter out;
  out << doc;
  write_file_atomically(run_dir / kCheckpointSettings, std::string(out.c_str()) + "\n");
}

// What a checkpoint is evaluated with: cfg with the model-defining sections of its checkpoint.yaml, the
// intents folder to use, and whether that record existed.
struct CheckpointSettings {
  Config cfg;
  fs::path intents_dir;
  bool recorded = false;
};

CheckpointSettings settings_of_checkpoint(const Config& cfg, const fs::path& checkpoint, fs::path intents_dir) {
  const fs::path file = checkpoint.parent_path() / kCheckpointSettings;
  if (!fs::exists(file)) {
    spdlog::warn("evaluate: no {} beside {}: the model is built from the given config and --set alone (a variant such "
                 "as w/o SBR needs its own settings, e.g. --set enhance.without_sbr=true)",
                 kCheckpointSettings, checkpoint.string());
    return {cfg, intents_dir, false};
  }
  const Config recorded = Config::load(file);
  Config out(YAML::Clone(cfg.root()));
  YAML::Node root = out.root();  // a handle to out's tree
  for (const char* section : kModelSections) {
    const std::string key = std::string("config.") + section;
    if (section != std::string("models") && out.has(section) && recorded.canonical(key) != out.canonical(section))
      spdlog::warn("evaluate: {}.* comes from {}; the given config's values are not used", section, file.string());
    root.remove(section);
    if (const YAML::Node node = recorded.node(key); node && !node.IsNull()) out.set_node(section, YAML::Clone(node));
  }
  const auto trained_with = recorded.get<std::string>("intents_dir", "");
  if (intents_dir.empty() && !trained_with.empty()) {
    intents_dir = fs::path(trained_with).is_absolute() ? fs::path(trained_with) : checkpoint.parent_path() / trained_with;
    if (!fs::exists(intents_dir))
      throw InputError(file.string(), 0, "intents_dir",
                       fmt::format("the intents this checkpoint was trained with ({}) are not there; pass --intents "
                                   "DIR (an intents-<key> folder of the run's stages)",
                                   intents_dir.string()));
  }
  spdlog::info("evaluate: model settings from {}{}", file.string(),
               intents_dir.empty() ? "" : fmt::format(", intents from {}", intents_dir.string()));
  return {out, intents_dir, true};
}

// Intents from another row (--intents): other views cannot feed the checkpoint's gates; another r can, but
// the numbers are then not the row's.
void check_intents_fit_checkpoint(const Config& cfg, const std::vector<std::string>& views, std::int64_t r,
                                  const fs::path& intents_split_dir) {
  const auto trained_views = cfg.get<std::vector<std::string>>("intent.views", {"long", "short"});
  if (views != trained_views)
    throw InputError((intents_split_dir / "done.json").string(), 0, "views",
                     fmt::format("these intents have views [{}], the checkpoint was trained with [{}] (its "
                                 "checkpoint.yaml): pass the intents of its own run, or none",
                                 fmt::join(views, ", "), fmt::join(trained_views, ", ")));
  const auto trained_r = cfg.get<std::int64_t>("intent.top_r", 5);
  if (r >= 0 && r != trained_r)
    spdlog::warn("evaluate: the intents were localized with r = {}, the checkpoint was trained with r = {}", r,
                 trained_r);
}

}  // namespace

ModelRun evaluate_checkpoint(const Config& given_cfg, const data::PreparedDataset& ds, const fs::path& checkpoint,
                             const std::string& split, const fs::path& given_intents_dir) {
  const auto [cfg, intents_dir, recorded] = settings_of_checkpoint(given_cfg, checkpoint, given_intents_dir);
  const auto opt = train_options_from_config(cfg);
  if (ds.split(split).empty())
    throw ConfigError(fmt::format("the {} split of this dataset is empty (data.valid_fraction = 0?)", split));
  Recommender model;
  torch::Tensor intents;
  std::string source;
  if (intents_dir.empty()) {
    model = build_backbone(cfg, ds);
  } else {
    intents = intent::read_intents(intents_dir / split);
    const auto done = intent::intents_done(intents_dir / split);
    const auto views = done->at("views").get<std::vector<std::string>>();
    if (recorded) check_intents_fit_checkpoint(cfg, views, done->value("r_requested", std::int64_t{-1}), intents_dir / split);
    model = build_llm4sbr(cfg, ds, views, intents.size(2));
    source = (intents_dir / split).string();
  }
  load_checkpoint(*model, checkpoint);
  ModelRun run{model->label(), {}, source};
  run.result.test = evaluate(*model, ds.split(split), opt, opt.paper_compatible, intents);
  return run;
}

Recommender build_llm4sbr(const Config& cfg, const data::PreparedDataset& ds, const std::vector<std::string>& views,
                          std::int64_t text_dim) {
  auto backbone = build_backbone(cfg, ds);
  return std::make_shared<enhance::Llm4sbrHeadImpl>(backbone->encoder(),
                                                    enhance::HeadOptions::from_config(cfg, views, text_dim),
                                                    train_options_from_config(cfg).seed);
}

ModelRun train_model(const Config& cfg, const data::PreparedDataset& ds, RecommenderImpl& model, const fs::path& run_dir,
                     const SplitIntents& intents, const std::string& intents_dir) {
  record_checkpoint_settings(cfg, run_dir, intents_dir);
  auto opt = train_options_from_config(cfg);
  opt.run_dir = run_dir;
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

ModelRun train_backbone(const Config& cfg, const data::PreparedDataset& ds, const fs::path& run_dir) {
  auto model = build_backbone(cfg, ds);
  const fs::path dir = run_dir / slug(model->label());  // the folder `run` gives the same model: sr-gnn/
  auto run = train_model(cfg, ds, *model, dir);
  run.checkpoint_dir = dir.string();
  return run;
}

namespace {

// One row: the plain backbone, or Stage 1 (cached) and the LLM4SBR head.
ModelRun run_one(const Config& cfg, const data::PreparedDataset& ds, const std::string& data_key, const fs::path& out_dir,
                 const std::string& label) {
  if (!cfg.get<bool>("enhance.enabled", true)) {
    auto model = build_backbone(cfg, ds);
    const std::string name = label.empty() ? model->label() : label;
    auto run = train_model(cfg, ds, *model, out_dir / slug(name));
    run.label = name;
    run.checkpoint_dir = (out_dir / slug(name)).string();
    return run;
  }
  const auto stage = intent::run_intent_stage(cfg, ds, data_key, out_dir / "stages");
  auto model = build_llm4sbr(cfg, ds, stage.views, stage.dim);
  std::string name = label.empty() ? model->label() : label;
  if (label.empty() && stage.source.kind == "titles") name += " [titles]";
  // The titles source has no view qualifier: its `normal` view is its long view, so that row is `w/o short`.
  if (!label.empty() && stage.source.kind == "titles" && stage.views == std::vector<std::string>{"normal"})
    name += " (titles: same as w/o short)";
  auto run = train_model(cfg, ds, *model, out_dir / slug(name), {stage.train, stage.valid, stage.test},
                         fs::absolute(stage.dir).string());
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
  write_file_atomically(out_dir / "config.yaml", cfg.dump());
  const auto data_dir = resolve_data_dir(cfg.get<std::string>("paths.data", ""));
  const auto ds = prepare_cached(cfg, data_dir, out_dir / "stages");
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
    runs.push_back(run_one(vcfg, ds, data_key, out_dir, v.label));
    // Reports after every row, so a long comparison that is stopped still shows what finished.
    plot_curves(runs, out_dir, opt.ks.back());
    write_reports(cfg, ds, runs, out_dir, title, improvement);
  }
  fmt::print("\n{}\nTest metrics (%), epoch selected on validation, {} test samples:\n\n{}\n", title, ds.test.size(),
             results_table(runs, opt.ks, false, false, improvement));
  std::map<std::string, std::vector<std::string>> by_source;  // one line per intent source
  for (const auto& r : runs)
    if (!r.intents.empty()) by_source[r.intents].push_back(r.label);
  for (const auto& [source, labels] : by_source) fmt::print("Intents from {}: {}\n", source, fmt::join(labels, ", "));
  fmt::print("Written: {}/results.md, metrics.json, curves.png, checkpoints\n", out_dir.string());
  return runs;
}

std::vector<ModelRun> train_prepared(const Config& cfg, const data::PreparedDataset& ds, const fs::path& out_dir) {
  if (!intent::stage1_by_hand(cfg)) return {train_backbone(cfg, ds, out_dir)};
  std::string data_key;
  for (const auto* split : {&ds.train, &ds.valid, &ds.test}) data_key += data::samples_fingerprint(ds, *split);
  data_key = hash_hex(data_key);
  intent::check_given_stage1(cfg, ds, data_key, out_dir / "stages");
  return {run_one(cfg, ds, data_key, out_dir, "")};
}

std::vector<ModelRun> run_experiment(const Config& cfg, const fs::path& out_dir) {
  std::vector<Variant> variants;
  const bool enhanced = cfg.get<bool>("enhance.enabled", true);
  if (!enhanced || cfg.get<bool>("enhance.baseline", true)) variants.push_back({"", {"enhance.enabled=false"}});
  if (enhanced) variants.push_back({"", {}});
  // The title names what trained: with enhance.baseline=false only LLM4SBR(backbone) does.
  const auto backbone = display_name(cfg.require<std::string>("model"));
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
