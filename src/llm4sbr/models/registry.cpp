#include <fmt/format.h>

#include <map>

#include "llm4sbr/models/session_encoder.hpp"

namespace llm4sbr::models {

namespace {
// Adding a backbone means adding its file and one line here (the llama.cpp habit).
const std::map<std::string, EncoderFactory>& registry() {
  static const std::map<std::string, EncoderFactory> r = {
      {"srgnn", make_srgnn},
      {"tagnn", make_tagnn},
      {"gcegnn", make_gcegnn},
      {"dhcn", make_dhcn},
      {"gru4rec", make_gru4rec},
      {"sasrec", make_sasrec},
  };
  return r;
}
}  // namespace

std::vector<std::string> registered_encoders() {
  std::vector<std::string> names;
  for (const auto& [name, f] : registry()) names.push_back(name);
  return names;
}

SessionEncoder make_encoder(const std::string& name, const ModelContext& ctx, const Config& settings) {
  auto it = registry().find(name);
  if (it == registry().end())
    throw ConfigError(fmt::format("unknown model '{}'; known models: {}", name,
                                  fmt::join(registered_encoders(), ", ")));
  return it->second(ctx, settings);
}

}  // namespace llm4sbr::models
