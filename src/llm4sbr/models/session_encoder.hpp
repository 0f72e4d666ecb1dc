// The seam every backbone implements (DESIGN.md, "Interfaces"). The trainer, the evaluator and the
// LLM4SBR head only ever talk to SessionEncoderImpl; concrete models register themselves by name.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/data/dataset.hpp"

namespace llm4sbr::models {

/// What a model derives from a batch on the CPU before its pass (the graph models' session graphs), already
/// on the model's device. SessionEncoderImpl::prepare makes it; the trainer has it made for the next batches on
/// a thread of its own while a step runs (train/batch_prefetcher.hpp), so that a GPU never waits for it.
struct BatchInputs {
  virtual ~BatchInputs() = default;
};

/// A model's BatchInputs of one type (SR-GNN's SessionGraph, GCE-GNN's RelationGraph).
template <typename T>
struct PreparedInputs final : BatchInputs {
  explicit PreparedInputs(T made) : value(std::move(made)) {}
  T value;
};

/// The T that prepare() made, from `inputs`. Throws std::logic_error if another model made them.
template <typename T>
const T& prepared_as(const BatchInputs& inputs) {
  const auto* made = dynamic_cast<const PreparedInputs<T>*>(&inputs);
  if (made == nullptr) throw std::logic_error("SessionBatch::inputs were prepared by another model");
  return made->value;
}

/// A batch of samples as tensors, all on the model's device.
struct SessionBatch {
  torch::Tensor items;       ///< [B, L] int64 model ids, left-aligned (position 0 = first click), 0 = padding
  torch::Tensor lengths;     ///< [B] int64 number of real clicks (>= 1)
  torch::Tensor mask;        ///< [B, L] bool, true at real clicks
  torch::Tensor targets;     ///< [B] int64 model ids 1..N (the next click)
  torch::Tensor sample_ids;  ///< [B] int64 Sample::id, to look up per-sample side data (intents)
  torch::Tensor intents;     ///< [B, V, d_text] float32 localized intents of the samples (LLM4SBR head);
                             ///< undefined when the run has none
  torch::Tensor host_items;  ///< [B, L] `items` on the CPU (make_batch keeps it): the graph models build their
                             ///< session graphs from it without waiting for the GPU; undefined = use items
  std::shared_ptr<const BatchInputs> inputs;  ///< the model's prepare() of this batch; null: encode derives them
  std::int64_t size() const { return items.size(0); }
  /// The items on the CPU: host_items when kept, else a copy of items (which waits for the device).
  torch::Tensor items_on_cpu() const { return host_items.defined() ? host_items : items.to(torch::kCPU); }
  /// The lengths on the CPU: lengths themselves there, else counted from host_items when kept (prefixes hold no
  /// 0), else copied.
  torch::Tensor lengths_on_cpu() const {
    if (lengths.is_cpu() || !host_items.defined()) return lengths.to(torch::kCPU);
    return host_items.ne(0).sum(1);
  }
};

/// What an encoder hands to its readout, to the scorer and to the LLM4SBR head.
struct SessionRepresentation {
  torch::Tensor local;     ///< [B, d] last-click state (the paper's local representation H^l)
  torch::Tensor global;    ///< [B, d] attentive session vector (the paper's global representation H^g)
  torch::Tensor aux_loss;  ///< scalar auxiliary loss (S²-DHCN's SSL), undefined if the model has none
  torch::Tensor clicks;          ///< [P, d] state of every real click, packed row by row in click order
                                 ///< (for scorers that attend over clicks, TAGNN); undefined if unused
  torch::Tensor click_sessions;  ///< [P] int64 batch row of each click in `clicks`
};

/// A scorer that is one product with a fixed table: score(session, rep) = session · weightᵀ + bias for any rep.
struct LinearScorer {
  torch::Tensor weight;  ///< [N, d], row k scores item k+1; undefined when the model's scorer is not one
  torch::Tensor bias;    ///< [N], or undefined for none
  bool defined() const { return weight.defined(); }
};

/// Static facts a model is built from.
struct ModelContext {
  std::int64_t n_items = 0;     ///< catalogue size N (ids 1..N); the embedding table has N+1 rows
  std::int64_t hidden_size = 100;
  std::uint64_t seed = 0;
  const data::PreparedDataset* dataset = nullptr;  ///< training data, for models with global graphs
};

/// Base class of every backbone (SR-GNN, TAGNN, GCE-GNN, S²-DHCN, GRU4Rec, SASRec).
/// A forward pass is score(readout(encode(batch)), rep): the LLM4SBR head gates rep.global and
/// rep.local between encode and readout, so every backbone gets the head at the same place.
class SessionEncoderImpl : public torch::nn::Module {
 public:
  /// Runs the backbone up to its local and global representations.
  virtual SessionRepresentation encode(const SessionBatch& batch) = 0;
  /// What encode() derives from `batch` on the CPU, copied to `device` without blocking, for
  /// SessionBatch::inputs; null (this default) for a model that derives nothing there. Runs on another thread
  /// while a step runs: it reads no parameter value and draws no random number.
  virtual std::shared_ptr<const BatchInputs> prepare(const SessionBatch& /*batch*/, const torch::Device& /*device*/) const {
    return nullptr;
  }
  /// batch.inputs, or prepare()'s made now (a batch that did not come through the trainer: serving, tests).
  std::shared_ptr<const BatchInputs> inputs_for(const SessionBatch& batch, const torch::Device& device) const {
    return batch.inputs ? batch.inputs : prepare(batch, device);
  }
  /// The model's own readout: the session vector [B, d] from (possibly gated) rep.global/rep.local.
  virtual torch::Tensor readout(const SessionRepresentation& rep) = 0;
  /// Scores of every catalogue item [B, N] (column k is model id k+1; padding is never a candidate).
  virtual torch::Tensor score(const torch::Tensor& session, const SessionRepresentation& rep) = 0;
  /// score() as a table, when it is one (the item embeddings, GRU4Rec's bias): serving then screens a session's
  /// top k instead of scoring the whole catalogue. Undefined (this default) where the scores depend on the
  /// representation or the pass: TAGNN's target attention, S²-DHCN's convolved items.
  virtual LinearScorer linear_scorer() const { return {}; }

  /// encode -> readout -> score: the plain backbone.
  torch::Tensor forward(const SessionBatch& batch) {
    SessionRepresentation rep = encode(batch);
    return score(readout(rep), rep);
  }

  virtual std::int64_t hidden_size() const = 0;
  virtual std::int64_t n_items() const = 0;
  /// Name under which the model is registered ("srgnn").
  virtual std::string name() const = 0;
};

using SessionEncoder = std::shared_ptr<SessionEncoderImpl>;

using EncoderFactory = std::function<SessionEncoder(const ModelContext&, const Config&)>;

/// Builds a registered model. `settings` is the model's config section (hyper-parameters from
/// configs/models/NAME.yaml merged with overrides). Throws ConfigError for an unknown name.
SessionEncoder make_encoder(const std::string& name, const ModelContext& ctx, const Config& settings);
/// Names of every registered model, sorted.
std::vector<std::string> registered_encoders();

// One factory per model file (registry.cpp lists them).
SessionEncoder make_srgnn(const ModelContext& ctx, const Config& settings);
SessionEncoder make_tagnn(const ModelContext& ctx, const Config& settings);
SessionEncoder make_gcegnn(const ModelContext& ctx, const Config& settings);
SessionEncoder make_dhcn(const ModelContext& ctx, const Config& settings);
SessionEncoder make_gru4rec(const ModelContext& ctx, const Config& settings);
SessionEncoder make_sasrec(const ModelContext& ctx, const Config& settings);

}  // namespace llm4sbr::models
