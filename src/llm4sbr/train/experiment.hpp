// `llm4sbr run`, `ablate` and `compare`: from one config to results. Prepares the data and runs Stage 1
// (both cached in <out>/stages by a hash of their inputs and settings), trains the plain backbone and
// LLM4SBR(backbone) with the same seed, and writes config.yaml, metrics.json, results.md, curves.png
// and checkpoints.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/data/dataset.hpp"
#include "llm4sbr/models/recommender.hpp"
#include "llm4sbr/train/build.hpp"
#include "llm4sbr/train/checkpoint.hpp"
#include "llm4sbr/train/report.hpp"
#include "llm4sbr/train/trainer.hpp"

namespace llm4sbr::train {

/// The folder of a prepare stage in stages_dir: stages_dir/prepare-<key>.
std::filesystem::path prepared_dir(const std::filesystem::path& stages_dir, const std::string& key);

/// The folder of `dataset` in `data_dir`. Throws ConfigError when it is missing or empty, saying where the
/// data directory comes from and how to fill it (`llm4sbr download NAME`).
std::filesystem::path dataset_source(const std::string& dataset, const std::filesystem::path& data_dir);

/// The prepare stage's cache key: a hash of the dataset name, the data settings and the size and
/// modification time of the source files.
std::string prepare_key(const Config& cfg, const std::filesystem::path& data_dir);

/// Prepares `cfg["dataset"]` with the `data.*` settings into stages_dir/prepare-<prepare_key>, or re-uses
/// that directory when it is already complete.
data::PreparedDataset prepare_cached(const Config& cfg, const std::filesystem::path& data_dir,
                                     const std::filesystem::path& stages_dir);

/// `llm4sbr prepare --out DIR`: the same stage into a folder of the user's choosing. DIR keeps the
/// prepare_key it was made with (DIR/prepare_key), and a DIR that already holds this preparation is re-used.
data::PreparedDataset prepare_into(const Config& cfg, const std::filesystem::path& data_dir,
                                   const std::filesystem::path& dir);

/// Evaluates `checkpoint` on a split ("train", "valid", "test") of ds: the model comes from load_trained
/// (checkpoint.hpp) with `cfg` as the caller's settings, ds as its data and `intents_dir` (if given) instead
/// of the intents it was trained with. `online_intents` replaces the stored intents as `llm4sbr serve`'s
/// fallbacks would: "titles" (each sample's titles intents computed now with the recorded encoder), "none"
/// (zero intents); "" keeps the stored ones. Throws ConfigError for an empty split or another online_intents,
/// InputError (from load_trained) when the checkpoint does not fit the model and dataset.
ModelRun evaluate_checkpoint(const Config& cfg, const data::PreparedDataset& ds, const std::filesystem::path& checkpoint,
                             const std::string& split, const std::filesystem::path& intents_dir = {},
                             const std::string& online_intents = "");

/// The fingerprint of what a trained model depends on (data, model settings, training, evaluation, the head,
/// and `intents_dir` for LLM4SBR), recorded in its resumable state (resume.hpp): a re-run with another
/// fingerprint trains from scratch. Leaves out paths, device, threads, resume, the settings of other stages
/// and rows, train.eval_batch_size and train.epochs (a finished run given more epochs continues).
std::string training_state_key(const Config& cfg, const data::PreparedDataset& ds,
                               const std::filesystem::path& intents_dir = {});

/// Trains `model` on ds (with the split intents, if any) and returns its result; checkpoints go to run_dir,
/// beside run_dir/checkpoint.yaml (record_checkpoint): the full settings and the folders of `inputs`.
ModelRun train_model(const Config& cfg, const data::PreparedDataset& ds, models::RecommenderImpl& model,
                     const std::filesystem::path& run_dir, const SplitIntents& intents = {},
                     const TrainedInputs& inputs = {});

/// Builds the plain backbone named in cfg, trains it on ds and returns its result; its checkpoints go to
/// run_dir/<row folder> (sr-gnn/, as in `llm4sbr run`), ModelRun::checkpoint_dir. `prepared_dir`, the folder
/// ds was read from, goes into checkpoint.yaml ("" = ds was not read from one).
ModelRun train_backbone(const Config& cfg, const data::PreparedDataset& ds, const std::filesystem::path& run_dir,
                        const std::filesystem::path& prepared_dir = {});

/// `llm4sbr train`: the plain backbone (train_backbone), or, when Stage 1 was run by hand
/// (intent.responses_dir or intent.intents_dir, checked against ds first), LLM4SBR(backbone) on it into
/// run_dir/<row folder>, with the stages it needs under run_dir/stages.
/// `prepared_dir` as for train_backbone.
std::vector<ModelRun> train_prepared(const Config& cfg, const data::PreparedDataset& ds,
                                     const std::filesystem::path& run_dir, const std::filesystem::path& prepared_dir = {});

/// One row of a results table: `set` overrides applied to the run's config, and a label ("" = the model's).
struct Variant {
  std::string label;
  std::vector<std::string> set;
};

/// Trains every variant on the same prepared data (Stage 1 cached per intent setting) and writes one
/// table. A variant with enhance.enabled=false is the plain backbone. Returns the runs in order.
std::vector<ModelRun> run_variants(const Config& cfg, const std::filesystem::path& out_dir,
                                   const std::vector<Variant>& variants, const std::string& title, bool improvement);

/// `llm4sbr run`: the plain backbone and LLM4SBR(backbone) (enhance.enabled=false trains only the first;
/// enhance.baseline=false only the second), with the Table-3-style comparison.
std::vector<ModelRun> run_experiment(const Config& cfg, const std::filesystem::path& out_dir);

/// `llm4sbr ablate`: the paper's Table 4 / Fig. 6 variants (w/o SBR, w/o LLM, w/o AU, w/o long, w/o short,
/// normal) and the top-r sweep {0, 1, 3, 5} (Fig. 7) in one table.
std::vector<Variant> ablation_variants();

/// `llm4sbr compare`: every model in `models`, plain and with the head, in one table.
std::vector<Variant> comparison_variants(const std::vector<std::string>& models);

}  // namespace llm4sbr::train
