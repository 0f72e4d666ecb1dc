#include "cli.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <filesystem>

#include "llm4sbr/core/error.hpp"
#include "llm4sbr/train/config_check.hpp"
#include "llm4sbr/train/trainer.hpp"

namespace llm4sbr::cli {

namespace fs = std::filesystem;

void add_config(CLI::App* cmd, Options& o, bool required) {
  auto* opt = cmd->add_option("--config,-c", o.config_file, "YAML config (see configs/)");
  if (required) opt->required();
  opt->check(CLI::ExistingFile);
  cmd->add_option("--set,-s", o.overrides, "override a config key, e.g. --set train.epochs=3 (repeatable)");
}

void add_data(CLI::App* cmd, Options& o, const std::string& help) { cmd->add_option("--data", o.data, help)->required(); }

void add_split(CLI::App* cmd, Options& o, const std::string& help) {
  cmd->add_option("--split", o.split, help)->capture_default_str();
}

void add_limit(CLI::App* cmd, Options& o, const std::string& help) { cmd->add_option("--limit", o.limit, help); }

void add_out(CLI::App* cmd, Options& o, const std::string& help) { cmd->add_option("--out,-o", o.out, help)->required(); }

void add_data_dir(CLI::App* cmd, Options& o, const std::string& help) { cmd->add_option("--data-dir", o.data_dir, help); }

void add_stage1(CLI::App* cmd, Options& o, bool intents) {
  auto* r = cmd->add_option("--responses", o.responses,
                            "LLM answers made by hand (`infer --split all`, or `merge` of `infer --shard` runs): "
                            "checked against the prepared data, then encoded and localized by this run")
                ->check(CLI::ExistingDirectory);
  if (intents)
    cmd->add_option("--intents", o.intents, "intents made by hand (`localize --split all`), checked against the prepared data")
        ->check(CLI::ExistingDirectory)
        ->excludes(r);
}

void apply_stage1(Config& cfg, const Options& o) {
  if (!o.responses.empty()) cfg.set("intent.responses_dir", fs::absolute(o.responses).string());
  if (!o.intents.empty()) cfg.set("intent.intents_dir", fs::absolute(o.intents).string());
}

Config load_config(const Options& o, const std::string& default_config) {
  Config cfg;
  std::string file = o.config_file;
  if (file.empty() && !default_config.empty() && fs::exists(default_config)) {
    spdlog::info("using {} (pass --config to choose another)", default_config);
    file = default_config;
  } else if (file.empty() && !default_config.empty() && !fs::is_directory(fs::path(default_config).parent_path())) {
    // Run from outside the checkout, the dataset's own settings (MovieLens: 10-minute sessions) went unread
    // without a word, and a different preprocessing came out.
    spdlog::warn("{} is not read: there is no {}/ folder here (run from the checkout's root, or pass --config)",
                 default_config, fs::path(default_config).parent_path().string());
  }
  if (!file.empty()) {
    cfg = Config::load(file);
    if (!cfg.has("paths.configs")) cfg.set("paths.configs", fs::path(file).parent_path().string());
  }
  cfg.apply_overrides(o.overrides);
  train::check_config(cfg);
  train::train_options_from_config(cfg);  // type and range errors now, before any work is done
  return cfg;
}

std::vector<std::string> splits_of(const std::string& split) {
  if (split == "all") return {"train", "valid", "test"};
  if (split == "train" || split == "valid" || split == "test") return {split};
  throw ConfigError(fmt::format("--split must be train, valid, test or all, not '{}'", split));
}

std::vector<data::Sample> first_samples(const std::vector<data::Sample>& samples, std::int64_t limit) {
  if (limit < 0 || static_cast<std::size_t>(limit) >= samples.size()) return samples;
  return {samples.begin(), samples.begin() + limit};
}

}  // namespace llm4sbr::cli
