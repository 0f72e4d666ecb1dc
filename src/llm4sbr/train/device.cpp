#include "llm4sbr/train/device.hpp"

#include <fmt/format.h>

#include <cstdlib>

#include "llm4sbr/core/error.hpp"
#include "llm4sbr/train/distributed.hpp"

namespace llm4sbr::train {

torch::Device resolve_device(const std::string& setting, const std::string& key) {
  const bool has_cuda = torch::cuda::is_available();
  const auto count = has_cuda ? static_cast<int>(torch::cuda::device_count()) : 0;
  if (setting == "auto") return has_cuda ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
  if (setting == "cpu") return torch::kCPU;
  int index = 0;
  if (setting.rfind("cuda", 0) != 0 ||
      (setting.size() > 4 && (setting[4] != ':' || setting.size() == 5 ||
                              setting.find_first_not_of("0123456789", 5) != std::string::npos || setting.size() > 8)))
    throw ConfigError(fmt::format("{} = '{}': expected auto, cpu, cuda or cuda:N", key, setting));
  if (setting.size() > 5) index = std::stoi(setting.substr(5));
  if (!torch::hasCUDA())
    throw ConfigError(fmt::format(
        "{} = '{}', but this llm4sbr is built against a LibTorch without CUDA (Debian's is CPU-only): build it against "
        "a CUDA LibTorch as the README's \"Building for a GPU\" says, or use {}=cpu",
        key, setting, key));
  if (index >= count)
    throw ConfigError(fmt::format("{} = '{}', but {} (CUDA_VISIBLE_DEVICES = '{}')", key, setting,
                                  count == 0 ? "no CUDA GPU is visible" : fmt::format("only {} CUDA GPU(s) are visible", count),
                                  std::getenv("CUDA_VISIBLE_DEVICES") ? std::getenv("CUDA_VISIBLE_DEVICES") : "unset"));
  return {torch::kCUDA, static_cast<torch::DeviceIndex>(index)};
}

torch::Device device_from_config(const Config& cfg) {
  const auto setting = cfg.get<std::string>("device", "auto");
  const auto device = resolve_device(setting);
  // One GPU per rank of a training job, torchrun's convention: `auto` and `cuda` mean cuda:LOCAL_RANK.
  const auto& job = distributed();
  if (device.is_cuda() && (setting == "auto" || setting == "cuda") && job.active())
    return {torch::kCUDA, static_cast<torch::DeviceIndex>(job.local_rank() % torch::cuda::device_count())};
  return device;
}

torch::Device device_of(const torch::nn::Module& module) {
  const auto params = module.parameters();
  return params.empty() ? torch::Device(torch::kCPU) : params.front().device();
}

}  // namespace llm4sbr::train
