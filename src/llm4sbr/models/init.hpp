// The reference initialisation every backbone and the LLM4SBR head share (backbone-notes §2.7).
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace llm4sbr::models {

/// Draws every parameter of `module` (recursively, in registration order) from U(−1/√d, 1/√d), the
/// initialisation of all five reference codebases (backbone-notes §2.7), with a generator seeded by
/// `seed`, so that a model's initial weights depend only on the seed. Works on any device and dtype.
void init_uniform_reference(torch::nn::Module& module, std::int64_t hidden_size, std::uint64_t seed);

}  // namespace llm4sbr::models
