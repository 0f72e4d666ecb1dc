// `llm4sbr run`: from a config to results. Prepares the data (cached in the run directory by a hash of
// the dataset and the data settings), builds the model, trains, evaluates, and writes config.yaml,
// metrics.json, results.md and checkpoints.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/data/dataset.hpp"
#include "llm4sbr/train/trainer.hpp"

namespace llm4sbr::train {

/// The raw-data directory: `override_dir` if set, else $LLM4SBR_DATA_DIR, else ../shared/data.
/// Throws ConfigError naming every place it looked if none exists.
std::filesystem::path resolve_data_dir(const std::string& override_dir = "");

/// Prepares `cfg["dataset"]` with the `data.*` settings into stages_dir/prepare-<hash>, or re-uses that
/// directory when it is already complete. The hash covers the dataset name, the data settings and the
/// size and modification time of the source files.
data::PreparedDataset prepare_cached(const Config& cfg, const std::filesystem::path& data_dir,
                                     const std::filesystem::path& stages_dir);

/// The hyper-parameters of the model named by cfg["model"]: configs/models/<model>.yaml (found through
/// cfg["paths.configs"]) overridden by cfg["models.<model>"] (so `--set models.srgnn.step=2` works).
Config model_settings(const Config& cfg);

/// One trained model: its table label and its result.
struct ModelRun {
  std::string label;
  TrainResult result;
};

/// Builds the plain backbone named by cfg["model"] for ds (seeded by train.seed).
std::shared_ptr<PlainRecommenderImpl> build_backbone(const Config& cfg, const data::PreparedDataset& ds);

/// Builds the model of cfg, loads `checkpoint` and evaluates it on a split ("train", "valid", "test").
/// Throws InputError if the checkpoint does not fit the model and dataset.
ModelRun evaluate_checkpoint(const Config& cfg, const data::PreparedDataset& ds, const std::filesystem::path& checkpoint,
                             const std::string& split);

/// Builds the model named in cfg, trains it on ds and returns its result. Checkpoints go to run_dir.
ModelRun train_backbone(const Config& cfg, const data::PreparedDataset& ds, const std::filesystem::path& run_dir);

/// A text table (rows = models, columns = metrics in display order); markdown when `markdown`.
std::string results_table(const std::vector<ModelRun>& runs, const std::vector<std::int64_t>& ks, bool markdown,
                          bool best_on_test = false);

/// Writes metrics.json and results.md for the runs into run_dir.
void write_reports(const Config& cfg, const data::PreparedDataset& ds, const std::vector<ModelRun>& runs,
                   const std::filesystem::path& run_dir);

/// The whole `llm4sbr run`: returns the runs (the plain backbone for now).
std::vector<ModelRun> run_experiment(const Config& cfg, const std::filesystem::path& out_dir);

}  // namespace llm4sbr::train
