// TextEncoder: texts -> embedding rows (paper Eq. 2-3, E = Bert(Text); DESIGN.md "Interfaces").
//
// One interface for the item titles (the catalogue) and the LLM answers (the queries of intent
// localization): both must go through the same encoder so that their cosine similarities mean something.
// Implementations: "tfidf" (TF-IDF + LSA, fitted on the catalogue, the offline default; tfidf_lsa.hpp),
// "llama:PATH.gguf" (a GGUF embedding model in-process; llama_encoder.hpp) and "openai:URL[,URL...]"
// (OpenAI-compatible /v1/embeddings servers; openai_encoder.hpp).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/core/settings.hpp"

namespace llm4sbr::embed {

class TextEncoder {
 public:
  virtual ~TextEncoder() = default;

  /// Embeds `texts`: a CPU float32 tensor [texts.size(), dim()], row i for texts[i]. Rows are
  /// L2-normalised when normalize() is true, except that a text the encoder cannot represent (empty,
  /// or, for TF-IDF, made only of unknown words) gives a zero row. Thread-compatible, not thread-safe.
  virtual torch::Tensor encode(const std::vector<std::string>& texts) = 0;
  /// d_text, the embedding width.
  virtual std::int64_t dim() const = 0;
  /// A short description for logs and done.json ("tfidf-lsa(d=256, vocab=123456)").
  virtual std::string name() const = 0;
  /// Whether encode() may be called from several threads at once (the service then encodes without a lock).
  virtual bool concurrent() const { return false; }
  /// Whether encode() L2-normalises its rows (cosine similarity = inner product).
  virtual bool normalize() const { return true; }

  /// Encoders that learn from the catalogue (TF-IDF) fit on the item titles here; pretrained encoders
  /// need nothing and keep this no-op.
  virtual void fit(const std::vector<std::string>& corpus) { (void)corpus; }
  /// False until fit() for encoders that need fitting; encode() throws Error before that.
  virtual bool fitted() const { return true; }
  /// Writes the encoder into `dir` (created if needed) so that load_text_encoder(dir) rebuilds it:
  /// `encoder.json` (written last, {"kind": ..., ...}) plus whatever files the kind needs.
  virtual void save(const std::filesystem::path& dir) const = 0;
};

/// Encodes each distinct text of `texts` once, with `encode_distinct` (texts -> [n, d] float32), and gives
/// every copy of a text that row: [texts.size(), d]. Why: a model run by llama.cpp or a server may give a
/// text slightly different bits at different positions of one batch (the matrix kernels depend on the batch
/// shape and the CPU: seen on AMD Zen 2), and identical texts must get identical rows.
torch::Tensor encode_each_distinct_once(const std::vector<std::string>& texts,
                                        const std::function<torch::Tensor(const std::vector<std::string>&)>& encode_distinct);

/// Builds an encoder from a spec string and its settings (the `embed` section of a run config):
///   "tfidf"                TfidfLsaEncoder with options from `settings.tfidf.*` (TfidfLsaOptions::from_config);
///                          unfitted.
///   "llama:PATH.gguf"      LlamaEncoder with `settings.threads` (0 = all cores) and `settings.batch_tokens`
///                          (2048); InputError naming the file if it is missing or not a GGUF model.
///   "openai:URL[,URL...]"  OpenAiEncoder with `settings.api_model`, `settings.batch` (64) and
///                          `settings.http.*` (http::PoolOptions); asks the server for the width at once, so
///                          an unreachable server or a bad API key throws Error here.
/// Throws ConfigError listing the known specs for anything else.
std::unique_ptr<TextEncoder> make_text_encoder(const std::string& spec, const Config& settings);

/// The keys of embed.* for every encoder (encoder; tfidf.*; threads and batch_tokens of llama:; api_model,
/// batch, max_chars and http.* of openai:), with embed.tfidf.* and embed.http.* checked by their own schemas.
const std::vector<SettingsSchema>& embed_settings();

/// The specs make_text_encoder knows, for help texts and errors.
std::vector<std::string> known_text_encoders();

/// Rebuilds an encoder written by TextEncoder::save. Throws InputError naming `dir/encoder.json` if it is
/// missing or names an unknown kind.
std::unique_ptr<TextEncoder> load_text_encoder(const std::filesystem::path& dir);

}  // namespace llm4sbr::embed
