// A trained model on disk, and the one way the project rebuilds it (RecBole's load_data_and_model).
//
// A run folder of one model holds best.pt and last.pt (LibTorch archives of the parameters and buffers)
// beside checkpoint.yaml, the record training writes first:
//
//   config:        the full settings, with models.<model> as merged at training time (so that editing
//                  configs/models/ later changes nothing)
//   prepared_dir:  the prepared dataset it was trained on              ("" when not known)
//   encoder_dir:   the fitted text encoder of its intents               ("" for a plain backbone)
//   intents_dir:   the intents-<key> folder it was trained with        ("" for a plain backbone)
//
// Every folder is relative to the checkpoint's folder, so a run folder moved as a whole still loads.
// `load_trained` reads the record, the data and the weights and returns a ready model: evaluate uses it,
// and so will the online service, so that offline and online rankings cannot drift apart.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/data/dataset.hpp"
#include "llm4sbr/embed/text_encoder.hpp"
#include "llm4sbr/intent/intents.hpp"
#include "llm4sbr/models/recommender.hpp"

namespace llm4sbr::train {

/// Writes the parameters and buffers of `model` to `file` (LibTorch archive), atomically: a killed run
/// leaves the previous checkpoint, never a half-written one.
void save_checkpoint(torch::nn::Module& model, const std::filesystem::path& file);
/// Loads parameters saved by save_checkpoint. Throws InputError naming the file if it does not match the
/// model: an entry the model does not have (an LLM4SBR checkpoint loaded into the plain backbone), or a
/// tensor of another shape (another dataset, catalogue or model setting).
void load_checkpoint(torch::nn::Module& model, const std::filesystem::path& file);

/// The folders a trained model needs besides its weights; empty = not known, or none.
struct TrainedInputs {
  std::filesystem::path prepared;  ///< the prepared dataset (items.tsv, train.tsv, ...)
  std::filesystem::path encoder;   ///< the fitted text encoder of the intents (encoder.json, ...)
  std::filesystem::path intents;   ///< the intents-<key> folder (<split>/intents.npy, done.json)
  std::filesystem::path responses; ///< the responses-<key> folder of the LLM answers behind the intents
};

/// Writes run_dir/checkpoint.yaml (see the file comment) for a model trained with `cfg` on `inputs`.
void record_checkpoint(const Config& cfg, const std::filesystem::path& run_dir, const TrainedInputs& inputs);

/// checkpoint.yaml as read back, its folders resolved against the checkpoint's folder.
struct CheckpointRecord {
  std::filesystem::path file;  ///< the checkpoint.yaml read
  Config config;               ///< the `config:` section
  TrainedInputs inputs;
};

/// The record beside `checkpoint` (a best.pt or last.pt), or nullopt when there is none. Throws
/// InputError naming the file for malformed YAML.
std::optional<CheckpointRecord> read_checkpoint_record(const std::filesystem::path& checkpoint);

struct LoadOptions {
  /// The caller's settings. Evaluation settings (eval.*, train.eval_batch_size, threads) stay these; the
  /// sections that define the model (model, models, enhance, intent, prompt) come from checkpoint.yaml, and a
  /// section given here with other values is warned about. A checkpoint without a record is built from
  /// these settings alone (warned about).
  Config config;
  /// The prepared data, when the caller has read it already; else the recorded folder is read.
  std::shared_ptr<const data::PreparedDataset> dataset;
  /// Intents to feed the model instead of the recorded ones (another row's intents-<key> folder). Intents
  /// of other views are refused (InputError naming both); another top-r is warned about.
  std::filesystem::path intents;
  /// Load the recorded text encoder and embed the catalogue with it (what answering a new session needs;
  /// evaluating the stored intents does not).
  bool text = true;
};

/// A trained model with everything it needs at inference.
struct TrainedModel {
  models::Recommender model;  ///< weights loaded, in eval mode, on the requested device
  Config config;              ///< the settings it was built from (LoadOptions::config with the record's sections)
  /// The catalogue (items with model ids, raw ids and titles) and the splits. GCE-GNN's global graph and
  /// S²-DHCN's hypergraph are built from its training split when the model is built.
  std::shared_ptr<const data::PreparedDataset> dataset;
  bool recorded = false;  ///< whether checkpoint.yaml was there
  std::filesystem::path intents_dir;  ///< the intents folder the model is fed from ("" for a plain backbone)
  /// The LLM answers behind the recorded intents (<split>/responses.jsonl; "" for titles, or when not recorded):
  /// the service's cache of Stage-1 answers.
  std::filesystem::path responses_dir;
  std::vector<std::string> views;     ///< the intents' views, in order ([] for a plain backbone)
  std::int64_t text_dim = 0;          ///< d_text of the intents (0 for a plain backbone)
  std::unique_ptr<embed::TextEncoder> encoder;  ///< the fitted text encoder (null: plain, or text = false)
  torch::Tensor catalogue;  ///< [N, d_text] float32 title embeddings, row k = item k+1 (undefined without encoder)

  /// The intents of a split of intents_dir, [n_samples, V, d_text] float32 on the model's device;
  /// undefined for a plain backbone. Throws InputError if the split's intents are missing or unfinished.
  torch::Tensor intents(const std::string& split) const;
};

/// What computing the intents of new sessions needs (`serve`, `evaluate --online-intents`): the model's
/// catalogue indexed for localization and its recorded intent.* settings (top-r, weights), no records written.
struct OnlineIntents {
  std::unique_ptr<intent::IntentLocalizer> index;
  intent::IntentsOptions options;
};

/// The OnlineIntents of `trained` (an LLM4SBR model). The index is the blocked localizer: the same results
/// as FAISS's (localizer.hpp), and for the few queries of a request a matrix product where FAISS scans the
/// catalogue with its scalar inner product. Throws Error naming the model when it has no fitted encoder.
OnlineIntents online_intents(const TrainedModel& trained);

/// Rebuilds the model saved in `checkpoint` (best.pt or last.pt with checkpoint.yaml beside it) on `device`.
/// Throws InputError naming the file when the checkpoint, its record, data, intents or encoder are missing
/// or do not fit the model (an LLM4SBR checkpoint without intents included), ConfigError for bad settings.
TrainedModel load_trained(const std::filesystem::path& checkpoint, const torch::Device& device = torch::kCPU,
                          LoadOptions options = {});

}  // namespace llm4sbr::train
