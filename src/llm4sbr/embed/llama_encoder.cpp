#include "llm4sbr/embed/llama_encoder.hpp"

#include <fmt/format.h>
#include <llama.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <thread>

#include "llm4sbr/core/atomic_file.hpp"
#include "llm4sbr/core/error.hpp"
#include "llm4sbr/llm/llama_backend.hpp"

namespace llm4sbr::embed {

namespace fs = std::filesystem;

LlamaEncoder::LlamaEncoder(const fs::path& model_file, int threads, int batch_tokens, int gpu_layers)
    : file_(model_file), batch_tokens_(batch_tokens) {
  if (!fs::exists(model_file)) throw InputError(model_file.string(), 0, "", "embedding model file not found");
  llm::init_llama_logging();
  llama_model_params mp = llama_model_default_params();
  mp.n_gpu_layers = gpu_layers;  // negative = all
  model_ = llama_model_load_from_file(model_file.c_str(), mp);
  if (!model_) throw InputError(model_file.string(), 0, "", "llama.cpp could not load this file as a GGUF model");
  dim_ = llama_model_n_embd(model_);
  // One text must fit both a decode call and the model's positions (512 for BERT).
  const int n_ctx_train = llama_model_n_ctx_train(model_);
  max_text_tokens_ = n_ctx_train > 0 ? std::min(batch_tokens_, n_ctx_train) : batch_tokens_;
  max_seqs_ = static_cast<int>(std::min<std::size_t>(llama_max_parallel_sequences(), 64));
  llama_context_params cp = llama_context_default_params();
  cp.embeddings = true;
  cp.n_ctx = static_cast<uint32_t>(batch_tokens_);
  cp.n_batch = static_cast<uint32_t>(batch_tokens_);
  cp.n_ubatch = static_cast<uint32_t>(batch_tokens_);  // non-causal models need a whole sequence in one ubatch
  cp.n_seq_max = static_cast<uint32_t>(max_seqs_);
  cp.kv_unified = true;
  const int n_threads = threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  cp.n_threads = n_threads;
  cp.n_threads_batch = n_threads;
  ctx_ = llama_init_from_model(model_, cp);
  if (!ctx_) {
    llama_model_free(model_);
    throw InputError(model_file.string(), 0, "", "could not create an embedding context");
  }
  if (llama_pooling_type(ctx_) == LLAMA_POOLING_TYPE_NONE) {
    // A model without its own pooling (a decoder LLM): mean-pool its token states.
    llama_free(ctx_);
    cp.pooling_type = LLAMA_POOLING_TYPE_MEAN;
    ctx_ = llama_init_from_model(model_, cp);
    if (!ctx_) {
      llama_model_free(model_);
      throw InputError(model_file.string(), 0, "", "could not create a mean-pooling embedding context");
    }
  }
}

LlamaEncoder::~LlamaEncoder() {
  if (ctx_) llama_free(ctx_);
  if (model_) llama_model_free(model_);
}

std::string LlamaEncoder::name() const { return fmt::format("llama:{} (d={})", file_.filename().string(), dim_); }

void LlamaEncoder::save(const fs::path& dir) const {
  fs::create_directories(dir);
  const nlohmann::json meta = {{"kind", "llama"}, {"name", name()}, {"model", fs::absolute(file_).string()},
                               {"batch_tokens", batch_tokens_}, {"dim", dim_}};
  write_file_atomically(dir / "encoder.json", meta.dump(2) + "\n");
}

torch::Tensor LlamaEncoder::encode(const std::vector<std::string>& texts) {
  return encode_each_distinct_once(texts, [this](const std::vector<std::string>& distinct) { return encode_distinct(distinct); });
}

torch::Tensor LlamaEncoder::encode_distinct(const std::vector<std::string>& texts) {
  const llama_vocab* vocab = llama_model_get_vocab(model_);
  auto out = torch::zeros({static_cast<std::int64_t>(texts.size()), dim_}, torch::kFloat32);
  auto acc = out.accessor<float, 2>();
  llama_batch batch = llama_batch_init(batch_tokens_, 0, 1);
  std::vector<std::size_t> in_batch;  // text index of each sequence in the batch

  auto flush = [&] {
    if (in_batch.empty()) return;
    llama_memory_clear(llama_get_memory(ctx_), true);
    if (llama_decode(ctx_, batch) < 0) {
      llama_batch_free(batch);
      throw Error(fmt::format("{}: llama_decode failed on a batch of {} texts", name(), in_batch.size()));
    }
    for (std::size_t s = 0; s < in_batch.size(); ++s) {
      const float* e = llama_get_embeddings_seq(ctx_, static_cast<llama_seq_id>(s));
      if (!e) {
        llama_batch_free(batch);
        throw Error(fmt::format("{}: llama.cpp gave no pooled embedding for text {}", name(), in_batch[s]));
      }
      double norm = 0;
      for (std::int64_t k = 0; k < dim_; ++k) norm += static_cast<double>(e[k]) * e[k];
      const double inv = norm > 0 ? 1.0 / std::sqrt(norm) : 0.0;
      for (std::int64_t k = 0; k < dim_; ++k) acc[static_cast<std::int64_t>(in_batch[s])][k] = static_cast<float>(e[k] * inv);
    }
    batch.n_tokens = 0;
    in_batch.clear();
  };

  std::vector<llama_token> tokens;
  for (std::size_t i = 0; i < texts.size(); ++i) {
    if (texts[i].find_first_not_of(" \t\r\n") == std::string::npos) continue;  // empty: zero row
    tokens.resize(texts[i].size() + 8);
    int n = llama_tokenize(vocab, texts[i].data(), static_cast<int32_t>(texts[i].size()), tokens.data(),
                           static_cast<int32_t>(tokens.size()), true, false);
    if (n < 0) {
      tokens.resize(static_cast<std::size_t>(-n));
      n = llama_tokenize(vocab, texts[i].data(), static_cast<int32_t>(texts[i].size()), tokens.data(),
                         static_cast<int32_t>(tokens.size()), true, false);
    }
    if (n > max_text_tokens_) {
      spdlog::warn("{}: text {} has {} tokens, cut to {}", name(), i, n, max_text_tokens_);
      n = max_text_tokens_;
    }
    if (batch.n_tokens + n > batch_tokens_ || static_cast<int>(in_batch.size()) >= max_seqs_) flush();
    const auto seq = static_cast<llama_seq_id>(in_batch.size());
    for (int k = 0; k < n; ++k) {
      const int32_t j = batch.n_tokens++;
      batch.token[j] = tokens[static_cast<std::size_t>(k)];
      batch.pos[j] = k;
      batch.n_seq_id[j] = 1;
      batch.seq_id[j][0] = seq;
      batch.logits[j] = true;
    }
    in_batch.push_back(i);
  }
  flush();
  llama_batch_free(batch);
  return out;
}

}  // namespace llm4sbr::embed
