#include "llm4sbr/llm/llm_backend.hpp"

#include <fmt/format.h>

#include "llm4sbr/core/error.hpp"
#include "llm4sbr/core/hash.hpp"
#include "llm4sbr/llm/llama_backend.hpp"
#include "llm4sbr/llm/openai_backend.hpp"

namespace llm4sbr::llm {

const std::vector<SettingsSchema>& llm_settings() {
  using enum SettingType;
  static const std::vector<SettingsSchema> schemas{
      {"llm",
       {{"model", kString}, {"max_tokens", kInteger}, {"temperature", kNumber}, {"seed", kInteger}, {"stop", kStrings},
        {"parallel", kInteger}, {"batch_tokens", kInteger}, {"threads", kInteger}, {"context", kInteger},
        {"gpu_layers", kInteger}, {"chunk", kInteger}, {"api_model", kString}, {"http", kSection}}},
      http::PoolOptions::settings("llm.http")};
  return schemas;
}

std::uint32_t prompt_seed(std::uint32_t seed, const std::string& prompt) {
  const std::uint64_t h = fnv1a64(prompt, fnv1a64(std::to_string(seed)));
  return static_cast<std::uint32_t>(h ^ (h >> 32));
}

GenerationOptions generation_options_from_config(const Config& cfg) {
  GenerationOptions o;
  o.max_tokens = cfg.get<std::int64_t>("llm.max_tokens", o.max_tokens);
  o.temperature = cfg.get<double>("llm.temperature", o.temperature);
  o.seed = cfg.get<std::uint32_t>("llm.seed", o.seed);
  o.stop = cfg.get<std::vector<std::string>>("llm.stop", o.stop);
  o.parallel = cfg.get<std::int64_t>("llm.parallel", o.parallel);
  o.batch_tokens = cfg.get<std::int64_t>("llm.batch_tokens", o.batch_tokens);
  o.threads = cfg.get<std::int64_t>("llm.threads", o.threads);
  o.context = cfg.get<std::int64_t>("llm.context", o.context);
  o.gpu_layers = cfg.get<std::int64_t>("llm.gpu_layers", o.gpu_layers);
  if (o.gpu_layers < -1) throw ConfigError("llm.gpu_layers must be -1 (all), 0 (none) or a layer count");
  if (o.max_tokens < 1) throw ConfigError("llm.max_tokens must be >= 1");
  if (o.parallel < 1) throw ConfigError("llm.parallel must be >= 1");
  return o;
}

std::unique_ptr<LlmBackend> make_llm_backend(const std::string& spec, const Config& cfg) {
  const auto colon = spec.find(':');
  const std::string kind = spec.substr(0, colon);
  const std::string rest = colon == std::string::npos ? "" : spec.substr(colon + 1);
  const std::string system_prompt = cfg.get<std::string>("prompt.system", "");
  if (kind == "llama" && !rest.empty()) {
    auto b = std::make_unique<LlamaBackend>(rest, generation_options_from_config(cfg));
    b->system_prompt = system_prompt;
    return b;
  }
  if (kind == "openai" && !rest.empty()) {
    OpenAiOptions o;
    o.urls = http::split_urls(rest);
    o.model = cfg.get<std::string>("llm.api_model", "");
    o.system_prompt = system_prompt;
    o.generation = generation_options_from_config(cfg);
    o.http = http::PoolOptions::from_config(cfg, "llm.http");
    return std::make_unique<OpenAiBackend>(std::move(o));
  }
  throw ConfigError(fmt::format("unknown LLM '{}': use llama:PATH.gguf (in-process llama.cpp) or "
                                "openai:URL[,URL...] (OpenAI-compatible servers)",
                                spec));
}

std::string trim_answer(const std::string& text) {
  const auto b = text.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return text.substr(b, text.find_last_not_of(" \t\r\n") - b + 1);
}

}  // namespace llm4sbr::llm
