// libFuzzer target: checkpoint.yaml, the record beside a best.pt that evaluate reads back (train/experiment.cpp,
// settings_of_checkpoint): loaded as a config, its model-defining sections read and merged over a given
// config, its intents_dir read as a string.
#include <cstdint>
#include <string>

#include "fuzz_support.hpp"
#include "llm4sbr/core/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto file = llm4sbr::fuzz::scratch().write_one("checkpoint.yaml", data, size);
  llm4sbr::fuzz::refusals_only([&] {
    const auto recorded = llm4sbr::Config::load(file);
    llm4sbr::Config given = llm4sbr::Config::parse("model: srgnn\nenhance: {tau: 0.1}\n");
    for (const char* section : {"model", "models", "enhance", "intent"}) {
      const std::string key = std::string("config.") + section;
      (void)recorded.canonical(key);
      if (const YAML::Node node = recorded.node(key); node && !node.IsNull()) given.set_node(section, YAML::Clone(node));
    }
    (void)recorded.get<std::string>("intents_dir", "");
    (void)given.get<std::string>("model", "");
    (void)given.get<std::vector<std::string>>("intent.views", {});
    (void)given.get<std::int64_t>("intent.top_r", 5);
  });
  return 0;
}
