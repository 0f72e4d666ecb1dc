// The tensors of a LibTorch archive (a checkpoint or a training state), by name: for tests that compare the
// weights of two runs.
#pragma once

#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <string>

namespace llm4sbr::testing {

inline std::map<std::string, torch::Tensor> checkpoint_tensors(const std::filesystem::path& file) {
  torch::serialize::InputArchive archive;
  archive.load_from(file.string());
  std::map<std::string, torch::Tensor> out;
  for (const auto& key : archive.keys()) {
    torch::Tensor t;
    if (archive.try_read(key, t)) out[key] = t;
  }
  return out;
}

}  // namespace llm4sbr::testing
