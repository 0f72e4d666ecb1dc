// Where models train and score: the `device` setting (auto, cpu, cuda, cuda:N).
#pragma once

#include <torch/torch.h>

#include <string>

#include "llm4sbr/core/config.hpp"

namespace llm4sbr::train {

/// Parses a device setting: "auto" (CUDA device 0 when this LibTorch has CUDA and sees a GPU, else the CPU),
/// "cpu", "cuda" (device 0) or "cuda:N". Throws ConfigError naming `key` for anything else, and for a CUDA
/// device this build or machine does not have (Debian's LibTorch is CPU-only: the README's "Building for
/// a GPU" says how to build against a CUDA LibTorch).
torch::Device resolve_device(const std::string& setting, const std::string& key = "device");

/// cfg["device"] (default "auto"), resolved; in a training job of several ranks, `auto` and `cuda` are
/// cuda:LOCAL_RANK (one GPU per rank).
torch::Device device_from_config(const Config& cfg);

/// The device of a module's parameters (the CPU for a module without any).
torch::Device device_of(const torch::nn::Module& module);

}  // namespace llm4sbr::train
