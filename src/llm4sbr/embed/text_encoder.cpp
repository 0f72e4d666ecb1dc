#include "llm4sbr/embed/text_encoder.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <fstream>

#include "llm4sbr/core/error.hpp"
#include "llm4sbr/embed/tfidf_lsa.hpp"

namespace llm4sbr::embed {

std::vector<std::string> known_text_encoders() { return {"tfidf"}; }

std::unique_ptr<TextEncoder> make_text_encoder(const std::string& spec, const Config& settings) {
  if (spec == "tfidf") return std::make_unique<TfidfLsaEncoder>(TfidfLsaOptions::from_config(settings.sub("tfidf")));
  // Pretrained embedding encoders plug in here, e.g.:
  //   else if (spec.starts_with("llama:"))  -> llama.cpp embeddings of the GGUF model at spec.substr(6)
  //   else if (spec.starts_with("openai:")) -> an OpenAI-compatible /v1/embeddings server at spec.substr(7)
  // and add their spec to known_text_encoders() and their kind to load_text_encoder().
  else {
    throw ConfigError(fmt::format("unknown text encoder '{}' (known: {})", spec, fmt::join(known_text_encoders(), ", ")));
  }
}

std::unique_ptr<TextEncoder> load_text_encoder(const std::filesystem::path& dir) {
  const auto file = dir / "encoder.json";
  std::ifstream in(file);
  if (!in) throw InputError(file.string(), 0, "", "cannot open (no finished encoder in this directory)");
  std::string kind;
  try {
    kind = nlohmann::json::parse(in).at("kind").get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    throw InputError(file.string(), 0, "kind", std::string("bad encoder metadata: ") + e.what());
  }
  if (kind == "tfidf") return TfidfLsaEncoder::load(dir);
  // else if (kind == "llama") ... (the lead's pretrained encoders)
  throw InputError(file.string(), 0, "kind", fmt::format("unknown encoder kind '{}'", kind));
}

}  // namespace llm4sbr::embed
