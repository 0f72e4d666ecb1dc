// The LlmBackend of OpenAI-compatible servers (vLLM, llama.cpp's llama-server, Ollama, TGI): every prompt
// is one /v1/chat/completions request, many in flight at once over all the servers given, with the retry,
// fail-over and rotation policy of http::EndpointPool. The server applies the model's chat template.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "llm4sbr/core/http_pool.hpp"
#include "llm4sbr/llm/llm_backend.hpp"

namespace llm4sbr::llm {

struct OpenAiOptions {
  std::vector<std::string> urls;  ///< server base URLs ("http://host:8000" or ".../v1")
  std::string model;              ///< "model" of the requests; "" = leave it out (llama-server, vLLM serve one)
  std::string system_prompt;      ///< optional system message ("" = none)
  GenerationOptions generation;   ///< max_tokens, temperature, seed, stop are sent; the rest is the server's
  http::PoolOptions http;
};

class OpenAiBackend : public LlmBackend {
 public:
  /// Throws ConfigError for a bad URL. Contacts no server yet: an unreachable one fails in generate().
  explicit OpenAiBackend(OpenAiOptions options);

  /// Sends every prompt and calls on_done on the calling thread as answers come back. Generation::seconds
  /// is the request's wall time, token counts are the server's `usage`. Throws Error naming the endpoint
  /// and the reason when the retry policy gives up (bad API key, unreachable servers, an answer without
  /// choices[0].message.content).
  void generate(const std::vector<std::string>& prompts,
                const std::function<void(std::size_t, const Generation&)>& on_done) override;
  /// "openai:<model>", or "openai:server-default" when no model name is set.
  std::string model_name() const override;
  /// The per-endpoint table of http::EndpointPool::summary_table, at info level.
  void log_summary() const override;

  const http::EndpointPool& pool() const { return *pool_; }
  /// The JSON body of one request (for tests and logs; holds no API key).
  std::string request_body(const std::string& prompt) const;

 private:
  OpenAiOptions options_;
  std::unique_ptr<http::EndpointPool> pool_;
};

}  // namespace llm4sbr::llm
