#include "llm4sbr/embed/text_encoder.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <unordered_map>

#include "llm4sbr/core/error.hpp"
#include "llm4sbr/embed/llama_encoder.hpp"
#include "llm4sbr/embed/openai_encoder.hpp"
#include "llm4sbr/embed/tfidf_lsa.hpp"

namespace llm4sbr::embed {

torch::Tensor encode_each_distinct_once(const std::vector<std::string>& texts,
                                        const std::function<torch::Tensor(const std::vector<std::string>&)>& encode_distinct) {
  std::vector<std::string> distinct;
  std::vector<std::int64_t> row_of_text;
  row_of_text.reserve(texts.size());
  std::unordered_map<std::string_view, std::int64_t> row_of;
  for (const auto& t : texts) {
    const auto [it, added] = row_of.try_emplace(t, static_cast<std::int64_t>(distinct.size()));
    if (added) distinct.push_back(t);
    row_of_text.push_back(it->second);
  }
  const auto rows = encode_distinct(distinct);
  if (distinct.size() == texts.size()) return rows;
  return rows.index_select(0, torch::tensor(row_of_text, torch::kLong));
}

std::vector<std::string> known_text_encoders() { return {"tfidf", "llama:PATH.gguf", "openai:URL[,URL...]"}; }

const std::vector<SettingsSchema>& embed_settings() {
  using enum SettingType;
  static const std::vector<SettingsSchema> schemas{
      {"embed",
       {{"encoder", kString}, {"tfidf", kSection}, {"threads", kInteger}, {"batch_tokens", kInteger},
        {"gpu_layers", kInteger}, {"api_model", kString}, {"batch", kInteger}, {"max_chars", kInteger}, {"http", kSection}}},
      TfidfLsaOptions::settings("embed.tfidf"), http::PoolOptions::settings("embed.http")};
  return schemas;
}

std::unique_ptr<TextEncoder> make_text_encoder(const std::string& spec, const Config& settings) {
  if (spec == "tfidf") return std::make_unique<TfidfLsaEncoder>(TfidfLsaOptions::from_config(settings.sub("tfidf")));
  if (spec.starts_with("llama:") && spec.size() > 6)
    return std::make_unique<LlamaEncoder>(spec.substr(6), settings.get<int>("threads", 0), settings.get<int>("batch_tokens", 2048),
                                          settings.get<int>("gpu_layers", -1));
  if (spec.starts_with("openai:") && spec.size() > 7)
    return std::make_unique<OpenAiEncoder>(OpenAiEncoderOptions::from_config(http::split_urls(spec.substr(7)), settings));
  throw ConfigError(fmt::format("unknown text encoder '{}' (known: {})", spec, fmt::join(known_text_encoders(), ", ")));
}

std::unique_ptr<TextEncoder> load_text_encoder(const std::filesystem::path& dir) {
  const auto file = dir / "encoder.json";
  std::ifstream in(file);
  if (!in) throw InputError(file.string(), 0, "", "cannot open (no finished encoder in this directory)");
  try {
    const auto meta = nlohmann::json::parse(in);
    const auto kind = meta.at("kind").get<std::string>();
    if (kind == "tfidf") return TfidfLsaEncoder::load(dir);
    if (kind == "llama")
      return std::make_unique<LlamaEncoder>(meta.at("model").get<std::string>(), 0, meta.value("batch_tokens", 2048));
    if (kind == "openai") return OpenAiEncoder::from_metadata(meta);
    throw InputError(file.string(), 0, "kind", fmt::format("unknown encoder kind '{}'", kind));
  } catch (const nlohmann::json::exception& e) {
    throw InputError(file.string(), 0, "", std::string("bad encoder metadata: ") + e.what());
  }
}

}  // namespace llm4sbr::embed
