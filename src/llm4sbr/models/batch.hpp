// Turning samples into padded tensor batches, and iterating over a split in (shuffled) batches.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <span>
#include <vector>

#include "llm4sbr/data/dataset.hpp"
#include "llm4sbr/models/session_encoder.hpp"

namespace llm4sbr::models {

/// Packs samples[indices] into a SessionBatch on `device`: items [B, L] left-aligned and padded with 0
/// to the longest prefix of the batch (or to `pad_to` if larger: a faithful switch for models whose
/// reference pads to the dataset-wide maximum), lengths, mask, targets and sample ids.
/// Throws InputError if a sample has an empty prefix.
SessionBatch make_batch(const std::vector<data::Sample>& samples, std::span<const std::int64_t> indices,
                                const torch::Device& device = torch::kCPU, std::int64_t pad_to = 0);

/// Copies a CPU tensor to `device` without making the host wait: on CUDA through pinned (page-locked)
/// memory with an asynchronous copy, so the GPU keeps working while the next batch is built. A plain
/// copy from pageable memory would synchronise with the GPU at every call. Returns `host` itself on the CPU.
torch::Tensor to_device(const torch::Tensor& host, const torch::Device& device);

/// Convenience: the batch of all given samples in order.
SessionBatch make_batch(const std::vector<data::Sample>& samples, const torch::Device& device = torch::kCPU);

/// The order in which an epoch visits a split, cut into batches of `batch_size` (the last one smaller).
/// With `shuffle`, the order is a permutation drawn from `seed` (one per epoch: pass seed + epoch).
std::vector<std::vector<std::int64_t>> batch_indices(std::int64_t n, std::int64_t batch_size, bool shuffle,
                                                     std::uint64_t seed);

/// Longest prefix over samples (the dataset-wide padding length of the reference code).
std::int64_t max_prefix_length(const std::vector<data::Sample>& samples);

}  // namespace llm4sbr::models
