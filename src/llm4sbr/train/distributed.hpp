// Data-parallel training over processes and machines (issue 14), on PyTorch's own engine: c10d's TCPStore for
// the rendezvous and its Gloo process group for the collectives (Gloo also moves CUDA tensors, through host
// memory). A job follows torchrun's conventions: RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR,
// MASTER_PORT, and TORCHELASTIC_USE_AGENT_STORE (torchrun's agent hosts the store, so rank 0 joins it as a
// client); GLOO_SOCKET_IFNAME picks the network interfaces. `llm4sbr train --nproc N` starts such a job on
// one machine (apps/llm4sbr/launch.cpp).
//
// What each rank does (fit in trainer.cpp): every rank shuffles an epoch with the same seed and trains on
// its contiguous shard of every global batch; gradients (and the batch's loss) are summed with bucketed,
// flattened all-reduces, each rank's loss weighted by its share of the batch, so the step is the one process's
// step on the whole batch up to float rounding. Every rank evaluates its part of the validation and test
// samples (their ranks are summed, so all reach the same decisions); rank 0 writes checkpoints, the resumable
// state and reports. A rank that dies breaks its peers' connections:
// they fail with an error naming the lost rank at once, and a hung one within the job's timeout.
#pragma once

#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace llm4sbr::train {

/// One process's place in the training job, and its collectives. A process outside a job is rank 0 of 1,
/// where every collective returns at once.
class Distributed {
 public:
  Distributed();
  ~Distributed();

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  int local_rank() const { return local_rank_; }
  bool active() const { return world_size_ > 1; }   ///< more than one process
  bool is_main() const { return rank_ == 0; }       ///< the rank that evaluates and writes

  /// Sums every tensor over the ranks, in place (one all-reduce per tensor, all in flight together).
  /// Throws Error naming this rank when a peer is lost (exited, killed, network) or the job's timeout passes.
  void all_reduce_sum(std::vector<torch::Tensor>& tensors);
  /// Rank `root`'s tensor into every rank's `tensor` (same shape and dtype everywhere). Errors as all_reduce_sum.
  void broadcast(torch::Tensor& tensor, int root = 0);
  /// Rank 0's bytes on every rank (a file only rank 0 can read: the resumable state).
  std::string broadcast_bytes(const std::string& bytes);
  /// Throws ConfigError on every rank, quoting the first differing line, unless every rank passes the same
  /// `text` (its settings, the fingerprint of its data): ranks that train different things must not start.
  void check_same(const std::string& what, const std::string& text);
  /// Rank 0 runs `work` while the others wait as long as it takes (no timeout: a Stage-1 stage may run for
  /// hours; a rank 0 that dies ends the wait with an error), then the others run it, re-using what it cached.
  void main_first(const std::function<void()>& work);

  /// Joins the job described by the environment (torchrun's variables); returns false, changing nothing,
  /// when WORLD_SIZE is unset or 1. `timeout` bounds every collective and the rendezvous.
  /// Throws ConfigError naming the variable when one is missing or malformed, or when this build's LibTorch
  /// has no Gloo; Error when the rendezvous fails.
  bool join_from_environment(std::chrono::seconds timeout);

 private:
  void check(const std::string& what, const std::function<void()>& collective) const;

  int rank_ = 0, world_size_ = 1, local_rank_ = 0;
  struct Group;
  std::unique_ptr<Group> group_;
};

/// This process's job (rank 0 of 1 until join_from_environment succeeds).
Distributed& distributed();

/// The gradient exchange of one model: its parameters' gradients flattened into buckets of about
/// `bucket_bytes` (one all-reduce each), together with the batch's loss and whether each gradient exists.
/// Parameters that no rank gave a gradient keep none, as in one process.
class GradientReducer {
 public:
  GradientReducer(std::vector<torch::Tensor> parameters, std::int64_t bucket_bytes = 25 << 20);

  /// Sums the gradients of every rank into each parameter's .grad, and returns the sum of `weighted_loss`
  /// over the ranks (a CPU double scalar). Each rank passes its loss already scaled by its share of the
  /// global batch, and backpropagated that scaled loss: the sums are then the whole batch's mean loss and
  /// its gradient. `weighted_loss` may be undefined for a rank with no samples in this batch.
  torch::Tensor reduce(const torch::Tensor& weighted_loss);

  double seconds() const { return seconds_; }           ///< spent in reduce since construction
  std::int64_t bytes_per_step() const { return bytes_; }  ///< bytes each rank contributes per step

 private:
  std::vector<torch::Tensor> parameters_;
  std::vector<std::vector<std::size_t>> buckets_;  ///< parameter indices per bucket
  std::int64_t bytes_ = 0;
  double seconds_ = 0;
};

}  // namespace llm4sbr::train
