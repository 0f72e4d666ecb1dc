// prepare and download: the commands that read or fetch raw data.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cstdlib>
#include <filesystem>
#include <memory>

#include "cli.hpp"
#include "llm4sbr/core/error.hpp"
#include "llm4sbr/data/data_dir.hpp"
#include "llm4sbr/data/download.hpp"
#include "llm4sbr/data/prepare.hpp"
#include "llm4sbr/data/readers.hpp"
#include "llm4sbr/train/experiment.hpp"

namespace llm4sbr::cli {

namespace fs = std::filesystem;

namespace {

struct PrepareArgs {
  Options o;
  std::string dataset;
};

// Reads a raw dataset, sessionizes, filters and splits it into --out (configs/<dataset>.yaml by default);
// an --out that already holds this preparation is re-used (the cached prepare stage).
void run_prepare(const PrepareArgs& a) {
  Config cfg = load_config(a.o, a.dataset.empty() ? "" : "configs/" + a.dataset + ".yaml");
  if (!a.dataset.empty()) cfg.set("dataset", a.dataset);
  if (!cfg.has("dataset")) throw ConfigError("prepare: give --dataset NAME or a config with `dataset:`");
  const auto ds = train::prepare_into(cfg, data::resolve_data_dir(a.o.data_dir), a.o.out);
  fmt::print("{}\n", data::dataset_stats(ds).dump(2));
}

struct DownloadArgs {
  std::string what, name, data_dir, models_dir = "models";
};

// A public dataset into the data directory, or (`download model NAME`) a GGUF model into --models-dir.
void run_download(DownloadArgs a) {
  if (a.what == "model") {
    if (a.name.empty())
      throw ConfigError(fmt::format("download model: name one of {}", fmt::join(data::downloadable_models(), ", ")));
    data::download_model(a.name, a.models_dir);
    return;
  }
  if (a.what == "dataset") a.what = a.name;
  const char* env = std::getenv("LLM4SBR_DATA_DIR");
  const fs::path target = !a.data_dir.empty() ? fs::path(a.data_dir) : fs::path(env ? env : "../shared/data");
  data::download_dataset(a.what, target);
}

}  // namespace

std::vector<Command> add_data_commands(CLI::App& app) {
  auto prepare = std::make_shared<PrepareArgs>();
  auto* p = app.add_subcommand("prepare", "read a raw dataset, sessionize, filter, split, write a prepared dataset");
  p->add_option("--dataset,-d", prepare->dataset, fmt::format("dataset: {}", fmt::join(data::known_datasets(), ", ")));
  add_data_dir(p, prepare->o);
  add_out(p, prepare->o, "output directory");
  add_config(p, prepare->o, false);

  auto download = std::make_shared<DownloadArgs>();
  auto* d = app.add_subcommand("download", "download a public dataset, or a GGUF model (`download model NAME`)");
  d->add_option("what", download->what,
                fmt::format("a dataset ({}), or `model`", fmt::join(data::downloadable_datasets(), ", ")))->required();
  d->add_option("name", download->name, fmt::format("with `model`: {}", fmt::join(data::downloadable_models(), ", ")));
  d->add_option("--data-dir", download->data_dir, "where datasets go (default: $LLM4SBR_DATA_DIR or ../shared/data)");
  d->add_option("--models-dir", download->models_dir, "where models go")->capture_default_str();

  return {{p, [prepare] { run_prepare(*prepare); }}, {d, [download] { run_download(*download); }}};
}

}  // namespace llm4sbr::cli
