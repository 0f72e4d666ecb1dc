#include "llm4sbr/train/experiment.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <fstream>

#include "llm4sbr/core/error.hpp"
#include "llm4sbr/core/hash.hpp"
#include "llm4sbr/data/io.hpp"
#include "llm4sbr/data/prepare.hpp"
#include "llm4sbr/data/readers.hpp"
#include "llm4sbr/models/session_encoder.hpp"
#include "llm4sbr/train/runtime.hpp"

namespace llm4sbr::train {

namespace fs = std::filesystem;

namespace {

void write_text(const fs::path& file, const std::string& text) {
  auto tmp = file;
  tmp += ".tmp";
  {
    std::ofstream out(tmp);
    if (!out) throw Error("cannot write " + tmp.string());
    out << text;
  }
  fs::rename(tmp, file);
}

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

data::PreparedDataset prepare_cached(const Config& cfg, const fs::path& data_dir, const fs::path& stages_dir) {
  const auto dataset = cfg.require<std::string>("dataset");
  const fs::path source = data_dir / data::dataset_folder(dataset);
  const std::string key = hash_hex(fmt::format("{}\n{}\n{}", dataset, cfg.canonical("data"), source_fingerprint(source)));
  const fs::path dir = stages_dir / ("prepare-" + key);
  if (data::is_prepared(dir)) {
    spdlog::info("prepare: re-using {}", dir.string());
    return data::read_prepared(dir);
  }
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

ModelRun evaluate_checkpoint(const Config& cfg, const data::PreparedDataset& ds, const fs::path& checkpoint,
                             const std::string& split) {
  auto model = build_backbone(cfg, ds);
  load_checkpoint(*model, checkpoint);
  const auto opt = train_options_from_config(cfg);
  if (ds.split(split).empty())
    throw ConfigError(fmt::format("the {} split of this dataset is empty (data.valid_fraction = 0?)", split));
  ModelRun run{model->label(), {}};
  run.result.test = evaluate(*model, ds.split(split), opt, opt.paper_compatible);
  return run;
}

ModelRun train_backbone(const Config& cfg, const data::PreparedDataset& ds, const fs::path& run_dir) {
  auto opt = train_options_from_config(cfg);
  auto model = build_backbone(cfg, ds);
  opt.run_dir = run_dir / cfg.require<std::string>("model");
  opt.label = model->label();
  std::int64_t n_params = 0;
  for (const auto& p : model->parameters()) n_params += p.numel();
  spdlog::info("train: {} ({} parameters) on {} samples", opt.label, n_params, ds.train.size());
  return {model->label(), fit(*model, ds, opt)};
}

std::string results_table(const std::vector<ModelRun>& runs, const std::vector<std::int64_t>& ks, bool markdown,
                          bool best_on_test) {
  const auto names = metric_names(ks);
  std::size_t label_width = 5;
  for (const auto& r : runs) label_width = std::max(label_width, r.label.size());
  std::string out;
  auto cell = [&](const std::string& s, std::size_t w) { return markdown ? fmt::format(" {} |", s) : fmt::format(" {:>{}}", s, w); };
  out += markdown ? fmt::format("| {} |", "Model") : fmt::format("{:<{}}", "Model", label_width);
  for (const auto& n : names) out += cell(n, 8);
  out += "\n";
  if (markdown) {
    out += "|---|";
    for (std::size_t i = 0; i < names.size(); ++i) out += "---:|";
    out += "\n";
  }
  for (const auto& r : runs) {
    const auto& m = best_on_test ? r.result.best_on_test : r.result.test;
    out += markdown ? fmt::format("| {} |", r.label) : fmt::format("{:<{}}", r.label, label_width);
    for (const auto& n : names) out += cell(fmt::format("{:.2f}", m.count(n) ? m.at(n) : 0.0), 8);
    out += "\n";
  }
  return out;
}

void write_reports(const Config& cfg, const data::PreparedDataset& ds, const std::vector<ModelRun>& runs,
                   const fs::path& run_dir) {
  const auto opt = train_options_from_config(cfg);
  nlohmann::json metrics;
  metrics["dataset"] = cfg.get<std::string>("dataset", ds.name);
  metrics["stats"] = data::dataset_stats(ds);
  metrics["paper_compatible"] = opt.paper_compatible;
  for (const auto& r : runs) metrics["models"][r.label] = r.result.to_json();
  // The first run's figures also sit at the top level, the layout scripts read for a single model.
  if (!runs.empty()) {
    auto first = runs.front().result.to_json();
    for (const char* k : {"test", "best_on_test", "epochs"}) metrics[k] = first[k];
  }
  write_text(run_dir / "metrics.json", metrics.dump(2) + "\n");

  std::string md = fmt::format("# Results: {} on {}\n\n", cfg.get<std::string>("model", "?"), metrics["dataset"].get<std::string>());
  md += fmt::format("Test metrics (%) of the epoch selected on the validation split{}; averaged over all {} test samples{}.\n\n",
                    runs.empty() || runs.front().result.selected_on_validation ? "" : " (no validation split: last epoch)",
                    ds.test.size(), opt.paper_compatible ? " with the reference code's @5/@10 averaging (paper_compatible)" : "");
  md += results_table(runs, opt.ks, true);
  md += "\nBest value of each metric over epochs on the test set (the papers' protocol; optimistic):\n\n";
  md += results_table(runs, opt.ks, true, true);
  md += "\n## Epochs\n\n| model | epoch | lr | loss | s/epoch | samples/s | valid HR@20 | valid MRR@20 | test HR@20 | test MRR@20 |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const auto& r : runs)
    for (const auto& e : r.result.epochs)
      md += fmt::format("| {} | {}{} | {:.0e} | {:.4f} | {:.1f} | {:.0f} | {} | {} | {:.2f} | {:.2f} |\n", r.label, e.epoch,
                        e.epoch == r.result.best_epoch ? "*" : "", e.lr, e.train_loss, e.train_seconds,
                        e.train_samples_per_second, e.valid.empty() ? "-" : fmt::format("{:.2f}", e.valid.at("HR@20")),
                        e.valid.empty() ? "-" : fmt::format("{:.2f}", e.valid.at("MRR@20")), e.test.at("HR@20"),
                        e.test.at("MRR@20"));
  md += fmt::format("\n## Data\n\n```\n{}\n```\n\n## Settings\n\n```yaml\n{}```\n", data::dataset_stats(ds).dump(2), cfg.dump());
  write_text(run_dir / "results.md", md);
}

std::vector<ModelRun> run_experiment(const Config& cfg, const fs::path& out_dir) {
  configure_runtime(cfg.get<int>("threads", 0));
  fs::create_directories(out_dir);
  write_text(out_dir / "config.yaml", cfg.dump());
  const auto data_dir = resolve_data_dir(cfg.get<std::string>("paths.data", ""));
  auto ds = prepare_cached(cfg, data_dir, out_dir / "stages");
  std::vector<ModelRun> runs;
  runs.push_back(train_backbone(cfg, ds, out_dir));
  write_reports(cfg, ds, runs, out_dir);
  const auto opt = train_options_from_config(cfg);
  fmt::print("\nTest metrics (%), epoch selected on validation, {} test samples:\n\n{}\n", ds.test.size(),
             results_table(runs, opt.ks, false));
  fmt::print("Written: {}/results.md, metrics.json, checkpoints\n", out_dir.string());
  return runs;
}

}  // namespace llm4sbr::train
