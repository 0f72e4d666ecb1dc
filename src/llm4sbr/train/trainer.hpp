// Training with validation-based model selection and early stopping, and evaluation on every split.
//
// Defaults are the paper's (paper-notes §5): Adam lr 1e-3 with coupled L2 1e-5, learning rate x0.1
// every 3 epochs (stepped after each epoch, as LLM4SBR and GCE-GNN do), batch 100, up to 30 epochs,
// patience 5. Unlike the reference code, the epoch is selected on a validation split carved from the
// training sessions and the patience counter resets on improvement; the papers' "best of each metric
// over epochs on the test set" is reported beside it, labelled as such.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/data/dataset.hpp"
#include "llm4sbr/train/metrics.hpp"
#include "llm4sbr/models/recommender.hpp"
#include "llm4sbr/core/settings.hpp"

namespace llm4sbr::train {

using MetricMap = std::map<std::string, double>;

struct TrainOptions {
  std::int64_t epochs = 30;
  std::int64_t batch_size = 100;
  std::int64_t eval_batch_size = 500;
  double lr = 1e-3;
  double l2 = 1e-5;          ///< Adam weight decay (coupled L2, like the reference code)
  std::int64_t lr_step = 3;  ///< epochs between learning-rate decays
  double lr_gamma = 0.1;
  std::int64_t patience = 5;     ///< epochs without validation improvement before stopping
  std::string select_metric = "HR@20";  ///< validation metric that selects the epoch
  std::uint64_t seed = 2020;
  std::vector<std::int64_t> ks = {5, 10, 20};
  bool paper_compatible = false;  ///< headline metrics with the reference's @5/@10 averaging
  std::filesystem::path run_dir;  ///< checkpoints go here (best.pt, last.pt); empty = none written
  std::string label;              ///< prefix of progress lines ("SR-GNN")
  /// Where the model trains and is evaluated (the `device` setting): fit moves the model and the intents
  /// there once; batches are built on the CPU and copied without blocking.
  torch::Device device = torch::kCPU;
  /// Batches built ahead of the step on a thread of their own (train.prefetch_batches, BatchPrefetcher):
  /// unset = 2 on a GPU, 0 on a CPU (there building is ~1 % of a step and the other core runs OpenBLAS).
  std::optional<std::int64_t> prefetch_batches;
  /// prefetch_batches, or its default for `device`.
  std::size_t prefetch_depth() const;
  /// Continue from run_dir/state.pt when it was written with the same state_key (the `resume` setting,
  /// default true): a killed run re-run into its folder goes on from its last finished epoch (resume.hpp).
  bool resume = true;
  std::string state_key;  ///< fingerprint of the settings that define the run (train_model sets it)
  std::function<void()> on_best_saved;  ///< called after each best.pt is written (checkpoint.yaml beside it)
};

/// The keys of train.* and eval.* (the settings schema train_options_from_config reads).
const std::vector<SettingsSchema>& train_settings();

/// Reads `train.*` and `eval.*` keys: train.epochs, batch_size, eval_batch_size, lr, l2, lr_step,
/// lr_gamma, patience, select_metric, seed, prefetch_batches; eval.ks, eval.paper_compatible; and `device`
/// (device.hpp).
TrainOptions train_options_from_config(const Config& cfg);

struct EpochRecord {
  std::int64_t epoch = 0;  ///< 1-based
  double lr = 0;
  double train_loss = 0;   ///< mean total loss over batches
  double train_seconds = 0;
  double eval_seconds = 0;
  double train_samples_per_second = 0;
  MetricMap valid;  ///< empty when there is no validation split
  MetricMap test;
};

struct TrainResult {
  std::vector<EpochRecord> epochs;
  std::int64_t best_epoch = 0;  ///< epoch selected on validation (the last epoch without a valid split)
  MetricMap test;               ///< test metrics of the selected epoch (the headline: standard or paper_compatible)
  MetricMap test_standard;      ///< the same epoch, correct averaging over all samples
  MetricMap test_paper_compatible;  ///< the same epoch, averaged like the reference code
  MetricMap best_on_test;       ///< each metric's best over epochs on test (the papers' protocol)
  std::map<std::string, std::int64_t> best_on_test_epoch;
  bool selected_on_validation = false;

  nlohmann::json to_json() const;
  /// The inverse of to_json (a resumed run's earlier epochs). Throws nlohmann::json errors for other JSON.
  static TrainResult from_json(const nlohmann::json& j);
};

/// The localized intents of each split (Stage 1 output, intents.npy): [n_samples, V, d_text] float32,
/// row s = the sample with Sample::id s. Undefined tensors when the run has no intents.
struct SplitIntents {
  torch::Tensor train, valid, test;
  /// The tensor of a split by name ("train", "valid", "test"); throws ConfigError for another name.
  const torch::Tensor& of(const std::string& split) const;
};

/// Padded click pairs (samples x longest prefix²) an evaluation batch may hold per sample of
/// train.eval_batch_size: a full batch of prefixes up to 64 clicks long.
constexpr std::int64_t kEvalCellsPerSample = 64 * 64;

/// The evaluation batches of a split, consecutive samples in order: at most `batch_size` samples and at most
/// batch_size * kEvalCellsPerSample padded click pairs (count x longest prefix²), since a session-graph model's
/// memory grows with the square of the longest prefix in its batch. A batch of long sessions is cut smaller,
/// so peak memory stays bounded whatever the lengths; scores never depend on the batch.
std::vector<std::vector<std::int64_t>> eval_batches(const std::vector<data::Sample>& samples, std::int64_t batch_size);

/// Ranks of each sample's target (1-based) on a split, in sample order; the model runs in eval mode
/// without gradients. Nothing depends on which samples share a batch. `intents` are the split's intents
/// (undefined = none), handed to the model in each batch. `prefetch` batches are built ahead on a thread of
/// their own (TrainOptions::prefetch_batches); the ranks do not depend on it.
std::vector<std::int64_t> rank_targets(models::RecommenderImpl& model, const std::vector<data::Sample>& samples,
                                       std::int64_t batch_size, const torch::Tensor& intents = {},
                                       std::size_t prefetch = 0);

/// Metrics of a split (percent).
MetricMap evaluate(models::RecommenderImpl& model, const std::vector<data::Sample>& samples, const TrainOptions& opt,
                   bool paper_compatible, const torch::Tensor& intents = {});

/// Trains `model` on ds.train, selects on ds.valid, reports ds.test. Loads the selected weights into
/// `model` before returning. Throws Error if the loss becomes NaN (with the epoch and batch), and
/// InputError if the intents of a split do not have one row per sample.
TrainResult fit(models::RecommenderImpl& model, const data::PreparedDataset& ds, const TrainOptions& opt,
                const SplitIntents& intents = {});

}  // namespace llm4sbr::train
