// A TextEncoder over OpenAI-compatible /v1/embeddings servers (vLLM, llama-server --embedding, Ollama,
// TEI, OpenAI): texts go in batches, many batches in flight over all the servers given, with the retry,
// fail-over and rotation policy of http::EndpointPool (the one the HTTP LLM backend uses).
#pragma once

#include <string>
#include <vector>

#include "llm4sbr/core/http_pool.hpp"
#include "llm4sbr/embed/text_encoder.hpp"

namespace llm4sbr::embed {

struct OpenAiEncoderOptions {
  std::vector<std::string> urls;  ///< server base URLs ("http://host:8000" or ".../v1")
  std::string model;              ///< "model" of the requests; "" = leave it out (a server with one model)
  std::int64_t batch = 64;        ///< texts per request
  std::int64_t dim = 0;           ///< embedding width if known (a saved encoder); 0 = ask the server
  /// Texts are cut to this many bytes (at a UTF-8 boundary) before they are sent: servers refuse an input
  /// longer than the model's context (BERT-family: 512 tokens, about 2,000 characters of English), and a
  /// long-view list of titles easily is. 0 = send everything.
  std::int64_t max_chars = 1500;
  http::PoolOptions http;

  /// Reads `api_model`, `batch`, `max_chars` and `http.*` from an encoder settings section (the `embed` section).
  /// Throws ConfigError naming the key for a bad value.
  static OpenAiEncoderOptions from_config(const std::vector<std::string>& urls, const Config& settings);
};

class OpenAiEncoder : public TextEncoder {
 public:
  /// With options.dim = 0, embeds one probe text to learn the width, so that a wrong URL, model or API
  /// key fails here, before any work. Throws ConfigError for a bad URL, Error when the server fails.
  explicit OpenAiEncoder(OpenAiEncoderOptions options);

  /// [texts.size(), dim()] float32, rows L2-normalised here (whatever the server does); an empty text is
  /// not sent and gets a zero row; identical texts are sent once and share their row. Throws Error naming
  /// the endpoint for an answer of the wrong shape.
  torch::Tensor encode(const std::vector<std::string>& texts) override;
  std::int64_t dim() const override { return options_.dim; }
  /// "openai:<model>@<first URL> (d=<dim>)".
  std::string name() const override;
  /// encoder.json: {"kind": "openai", "urls", "model", "batch", "dim", "http"} (no API key, only the name
  /// of its environment variable).
  void save(const std::filesystem::path& dir) const override;
  /// Rebuilds a saved encoder from the contents of its encoder.json. Throws nlohmann::json::exception for
  /// a missing or mistyped field (load_text_encoder turns it into an InputError naming the file).
  static std::unique_ptr<OpenAiEncoder> from_metadata(const nlohmann::json& meta);

  const http::EndpointPool& pool() const { return *pool_; }

 private:
  /// encode() of texts that are all different.
  torch::Tensor encode_distinct(const std::vector<std::string>& texts);

  OpenAiEncoderOptions options_;
  std::unique_ptr<http::EndpointPool> pool_;
};

}  // namespace llm4sbr::embed
