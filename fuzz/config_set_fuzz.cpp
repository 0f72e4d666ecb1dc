// libFuzzer target: `--set key=value` overrides (one per line) applied to a config, then read back the way
// the stages read settings.
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_support.hpp"
#include "llm4sbr/core/config.hpp"

namespace {

// A few sections of configs/defaults.yaml, so that overrides meet maps, sequences and scalars.
constexpr const char* kBase = R"(model: srgnn
train: {epochs: 30, lr: 0.001, select_metric: HR@20}
eval: {ks: [5, 10, 20]}
intent: {views: [long, short], top_r: 5}
models: {srgnn: {hidden_size: 100}}
)";

std::vector<std::string> lines_of(const std::uint8_t* data, std::size_t size) {
  std::vector<std::string> out;
  std::string line;
  for (std::size_t i = 0; i < size; ++i) {
    if (data[i] == '\n') out.push_back(std::move(line)), line.clear();
    else line.push_back(static_cast<char>(data[i]));
  }
  if (!line.empty()) out.push_back(std::move(line));
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto overrides = lines_of(data, size);
  llm4sbr::fuzz::refusals_only([&] {
    llm4sbr::Config cfg = llm4sbr::Config::parse(kBase);
    cfg.apply_overrides(overrides);
    (void)cfg.dump();
    (void)cfg.canonical();
    for (const auto& item : overrides) {
      const std::string key = item.substr(0, item.find('='));
      if (cfg.has(key)) (void)cfg.canonical(key);
    }
    (void)cfg.get<std::int64_t>("train.epochs", 0);
    (void)cfg.get<double>("train.lr", 0);
    (void)cfg.get<std::vector<std::int64_t>>("eval.ks", {});
    (void)cfg.get<std::vector<std::string>>("intent.views", {});
    (void)cfg.sub("models.srgnn").canonical();
  });
  return 0;
}
