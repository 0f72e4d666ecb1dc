// Text embeddings from a GGUF embedding model run in-process by llama.cpp: how a user runs the paper's
// BERT (Eq. 2-3) or any BERT-family / GGUF embedding model, with the model's own pooling.
#pragma once

#include <filesystem>

#include "llm4sbr/embed/text_encoder.hpp"

struct llama_model;
struct llama_context;

namespace llm4sbr::embed {

class LlamaEncoder : public TextEncoder {
 public:
  /// Loads `model_file`. threads = 0: all cores. batch_tokens bounds the tokens of one llama_decode call
  /// (a text longer than that, or than the model's context, is cut to fit, with a warning).
  /// Throws InputError naming the file if it is missing or not a GGUF model.
  /// gpu_layers: layers offloaded to llama.cpp's GPU backend (-1 = all, 0 = none; ignored without one).
  explicit LlamaEncoder(const std::filesystem::path& model_file, int threads = 0, int batch_tokens = 2048,
                        int gpu_layers = -1);
  ~LlamaEncoder() override;

  /// [n, n_embd] float32, L2-normalised; many texts share one llama_decode (one sequence each). An empty
  /// text gives a zero row; identical texts are encoded once and share their row.
  torch::Tensor encode(const std::vector<std::string>& texts) override;
  std::int64_t dim() const override { return dim_; }
  std::string name() const override;
  void save(const std::filesystem::path& dir) const override;

 private:
  /// encode() of texts that are all different.
  torch::Tensor encode_distinct(const std::vector<std::string>& texts);

  std::filesystem::path file_;
  llama_model* model_ = nullptr;
  llama_context* ctx_ = nullptr;
  std::int64_t dim_ = 0;
  int batch_tokens_ = 2048;
  int max_text_tokens_ = 512;
  int max_seqs_ = 1;
};

}  // namespace llm4sbr::embed
