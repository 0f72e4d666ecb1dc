// What every subcommand of the llm4sbr CLI shares: the options declared once (--config/--set, --data,
// --split, --limit, --out, --data-dir), loading and checking the config, and picking splits and samples.
// Each subcommand is one run_<command> function in commands_*.cpp, registered by an add_<group> function.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/data/dataset.hpp"

namespace llm4sbr::cli {

/// The options a subcommand may take; each command declares the ones it uses with the add_* helpers.
struct Options {
  std::string config_file;             ///< --config
  std::vector<std::string> overrides;  ///< --set key=value
  std::string data;                    ///< --data: a prepared dataset directory
  std::string split = "all";           ///< --split
  std::int64_t limit = -1;             ///< --limit: first N samples of each split (-1 = all)
  std::string out;                     ///< --out
  std::string data_dir;                ///< --data-dir: raw data
  std::string responses;               ///< --responses: Stage 1 answers made by hand (infer/merge)
  std::string intents;                 ///< --intents: Stage 1 intents made by hand (localize)
  int nproc = 1;                       ///< --nproc: ranks of a training job started on this machine
  int dist_timeout_s = 1800;           ///< --dist-timeout: seconds a collective waits (PyTorch's default)
};

/// A registered subcommand: its CLI11 app and what running it does (after parsing, inside main's try).
struct Command {
  CLI::App* app = nullptr;
  std::function<void()> run;
};

/// --config (required or not) and --set.
void add_config(CLI::App* cmd, Options& o, bool required);
/// --data (required): a prepared dataset directory.
void add_data(CLI::App* cmd, Options& o, const std::string& help = "prepared dataset directory");
/// --split with its default (o.split); `all` is allowed only where `help` says so.
void add_split(CLI::App* cmd, Options& o, const std::string& help = "train, valid, test or all");
/// --limit N.
void add_limit(CLI::App* cmd, Options& o, const std::string& help = "only the first N samples of each split");
/// --out (required).
void add_out(CLI::App* cmd, Options& o, const std::string& help);
/// --data-dir.
void add_data_dir(CLI::App* cmd, Options& o, const std::string& help = "raw data directory (default: $LLM4SBR_DATA_DIR or ../shared/data)");

/// Stage 1 run by hand, for train, run, compare and ablate: --responses DIR (answers of `infer`/`merge`) and,
/// when `intents`, --intents DIR (output of `localize`); the two exclude each other.
void add_stage1(CLI::App* cmd, Options& o, bool intents);
/// --responses / --intents as intent.responses_dir / intent.intents_dir (absolute paths).
void apply_stage1(Config& cfg, const Options& o);

/// The config of --config (with its includes) and --set; without a file, `default_config` (when it exists)
/// is the starting point. Unknown keys, bad types and bad training settings are ConfigErrors here, before
/// any work is done.
Config load_config(const Options& o, const std::string& default_config = "");

/// The splits a stage command works on: one name, or "all" for train, valid and test.
std::vector<std::string> splits_of(const std::string& split);
/// The first `limit` samples of a split (all when limit < 0): quick runs and tests.
std::vector<data::Sample> first_samples(const std::vector<data::Sample>& samples, std::int64_t limit);

/// The subcommands, by group (commands_data.cpp, commands_stage1.cpp, commands_train.cpp, commands_serve.cpp).
std::vector<Command> add_data_commands(CLI::App& app);
std::vector<Command> add_stage1_commands(CLI::App& app);
std::vector<Command> add_train_commands(CLI::App& app);
std::vector<Command> add_serve_commands(CLI::App& app);

}  // namespace llm4sbr::cli
