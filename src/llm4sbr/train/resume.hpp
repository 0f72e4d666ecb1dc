// The resumable state of a training run (issue 14): written atomically at the end of every epoch, so that
// a run killed at any moment continues from its last finished epoch and ends exactly as an uninterrupted
// run would (bit for bit on the CPU).
//
// One LibTorch archive, run_dir/state.pt, holds everything an uninterrupted run still has in memory after
// an epoch: the parameters and buffers, the optimizer's moments and step counts, the CPU random generator
// (dropout, S²-DHCN's permutations), and as JSON the epoch, the early-stopping counters, the test ranks of
// the best epoch and the per-epoch records. The data order needs nothing: epoch e shuffles with seed + e.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "llm4sbr/train/trainer.hpp"

namespace llm4sbr::train {

/// What fit keeps between epochs, besides the model and the optimizer.
struct FitProgress {
  std::int64_t epoch = 0;      ///< the last finished epoch (0 = none)
  bool finished = false;       ///< training ended: every epoch ran, or early stopping fired
  double best_valid = -1;      ///< best validation score so far
  std::int64_t bad_epochs = 0;  ///< epochs since it improved
  std::vector<std::int64_t> best_test_ranks;  ///< test ranks of the selected epoch
  TrainResult result;          ///< the epochs so far, best_epoch, best_on_test
};

/// Writes `file` atomically (a killed write leaves the previous state). `key` fingerprints the settings
/// the run was started with. Throws Error naming the file when it cannot be written.
void save_training_state(const std::filesystem::path& file, const torch::nn::Module& model,
                         const torch::optim::Optimizer& optimizer, const FitProgress& progress, const std::string& key);

/// Restores a state written by save_training_state into `model`, `optimizer`, the CPU random generator and
/// `progress`, and returns "". Changes nothing and returns why when the state does not apply: it was written
/// for other settings (`key` differs), or it is past `max_epochs`. Throws InputError naming the file for a
/// truncated or corrupt state, or one of another model.
std::string load_training_state(const std::filesystem::path& file, torch::nn::Module& model,
                                torch::optim::Optimizer& optimizer, FitProgress& progress, const std::string& key,
                                std::int64_t max_epochs);

/// The same from the bytes of `file` (a distributed job's rank 0 reads it and sends it to every rank).
std::string load_training_state(const std::filesystem::path& file, const std::string& bytes, torch::nn::Module& model,
                                torch::optim::Optimizer& optimizer, FitProgress& progress, const std::string& key,
                                std::int64_t max_epochs);

/// The bytes of a state file. Throws InputError naming it when it cannot be read.
std::string read_training_state(const std::filesystem::path& file);

/// Training's kill points (core/kill_point.hpp): "train:2:5" (epoch 2, batch 5), "eval:2", "state:2" (half of
/// epoch 2's state written); "train:2:5@1" kills only rank 1 of a distributed job. Costs one comparison when
/// $LLM4SBR_KILL_AT is unset.
void kill_point(const char* stage, std::int64_t epoch, std::int64_t batch = -1);

}  // namespace llm4sbr::train
