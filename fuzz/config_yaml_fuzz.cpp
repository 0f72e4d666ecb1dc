// libFuzzer target: YAML config files with `include:` (Config::load). The input holds up to three files,
// a.yaml (the one loaded), b.yaml and c.yaml, cut at '\x1c'; they may include each other, themselves or
// files that do not exist.
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_support.hpp"
#include "llm4sbr/core/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto& dir = llm4sbr::fuzz::scratch();
  dir.write({"a.yaml", "b.yaml", "c.yaml"}, llm4sbr::fuzz::split_files(data, size));
  llm4sbr::fuzz::refusals_only([&] {
    const auto cfg = llm4sbr::Config::load(dir.path() / "a.yaml");
    (void)cfg.dump();
    (void)cfg.canonical();
    (void)cfg.get<std::string>("model", "");
    (void)cfg.get<std::int64_t>("train.epochs", 0);
    (void)cfg.get<std::vector<std::string>>("intent.views", {});
  });
  return 0;
}
