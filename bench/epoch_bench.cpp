// `make bench`: how close each backbone's training epoch on full Amazon Beauty comes to this machine's floor.
//
// The floor: every backbone's training step does at least the three products of its scores against the
// whole catalogue, S = H Eᵀ ([B, d] x [d, N]) and its two gradients dH = dS E and dE = dSᵀ H; the probe times
// them on random tensors of the step's shapes (once per width, the median of 7 rounds), over an epoch's batch
// count. Then, in the same process, each backbone trains one epoch through the real trainer (train::fit:
// batches, forward, loss, backward, Adam, the loss checks, the progress bar) and evaluates the test split,
// plain and as LLM4SBR(backbone) with the titles intents (Stage 1 without an LLM, cached in --cache). One
// table: seconds, samples/s, the epoch's ratio to the floor, the head's overhead and the peak RSS of each row.
//
// --batches N trains N batches of evenly spaced training samples and extrapolates the epoch from them (said in
// the table); evaluation always covers the whole test split.
//
//   build/bin/epoch_bench [--models srgnn,tagnn,gcegnn,dhcn,gru4rec,sasrec] [--rows plain,head] [--batches 0]
//                         [--device auto] [--threads 0] [--cache runs/bench] [--data-dir DIR] [--set key=value ...]
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "llm4sbr/core/progress.hpp"
#include "llm4sbr/core/config.hpp"
#include "llm4sbr/core/runtime.hpp"
#include "llm4sbr/data/data_dir.hpp"
#include "llm4sbr/intent/intent_stage.hpp"
#include "llm4sbr/train/build.hpp"
#include "llm4sbr/train/experiment.hpp"
#include "llm4sbr/train/trainer.hpp"
#include "timing.hpp"

using namespace llm4sbr;

namespace {

/// Seconds of the floor's three products for one training step of batch `b`, width `d`, catalogue `n`, on
/// `device` (the mean of `reps` steps after a warm-up). Reading one value of the last product waits for a GPU.
double floor_step_seconds(std::int64_t b, std::int64_t d, std::int64_t n, torch::Device device, int reps) {
  torch::NoGradGuard no_grad;
  const auto opts = torch::TensorOptions().device(device);
  const auto h = torch::randn({b, d}, opts), e = torch::randn({n, d}, opts), ds = torch::randn({b, n}, opts);
  auto step = [&] {
    auto s = torch::mm(h, e.t());
    auto dh = torch::mm(ds, e);
    auto de = torch::mm(ds.t(), h);
    return s[0][0].item<float>() + dh[0][0].item<float>() + de[0][0].item<float>();
  };
  return mean_seconds(step, reps, 5);
}

/// The floor of one step for width d, probed once per run and shared by every row of that width: the median of
/// 7 rounds of 50 steps, so that one slow moment of this shared machine does not move one row's ratio (a
/// probe per model of 50 steps moved between 10.7 and 20.7 s an epoch over one day's runs).
double shared_floor_step_seconds(std::int64_t b, std::int64_t d, std::int64_t n, torch::Device device) {
  static std::map<std::int64_t, double> probed;
  if (const auto it = probed.find(d); it != probed.end()) return it->second;
  std::vector<double> rounds;
  for (int i = 0; i < 7; ++i) rounds.push_back(floor_step_seconds(b, d, n, device, 50));
  return probed[d] = median(rounds);
}

/// The process's peak resident set (VmHWM, MB) since the last reset_peak_rss.
double peak_rss_mb() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;  // "VmHWM:  123 kB"
  return 0;
}

/// Starts a new peak RSS window (Linux >= 4.0: writing 5 to clear_refs resets VmHWM to the current RSS); false
/// where that is not allowed (then the peak counts from the start of the process).
bool reset_peak_rss() {
  std::ofstream clear_refs("/proc/self/clear_refs");
  clear_refs << "5";
  clear_refs.flush();
  return static_cast<bool>(clear_refs);
}

/// `n` of `samples`, evenly spaced (every length of prefix, as the whole split has them), or all of them.
std::vector<data::Sample> evenly_spaced(const std::vector<data::Sample>& samples, std::size_t n) {
  if (n == 0 || n >= samples.size()) return samples;
  std::vector<data::Sample> out;
  out.reserve(n);
  for (std::size_t i = 0; i < n; ++i) out.push_back(samples[i * samples.size() / n]);
  return out;
}

struct Row {
  std::string label;
  double train_s = 0;  ///< a full epoch (extrapolated when --batches)
  double samples_per_s = 0;
  double floor_s = 0;
  double eval_s = 0;
  double hr20 = 0;
  double rss_mb = 0;
  std::optional<double> head_overhead;  ///< vs. the plain backbone's epoch, for a head row
};

}  // namespace

int main(int argc, char** argv) {
  ensure_fast_blas(argv);
  CLI::App app{"Each backbone's Beauty training epoch against the scoring GEMMs' floor, plain and with the LLM4SBR head"};
  std::vector<std::string> names{"srgnn", "tagnn", "gcegnn", "dhcn", "gru4rec", "sasrec"}, rows{"plain", "head"};
  std::vector<std::string> overrides;
  std::string device = "auto", data_dir, cache = "runs/bench";
  std::int64_t batches = 0;
  int threads = 0;
  app.add_option("--models,--model", names, "registered backbones, comma-separated")->delimiter(',')->capture_default_str();
  app.add_option("--rows", rows, "plain (the backbone), head (LLM4SBR(backbone), titles intents)")
      ->delimiter(',')->check(CLI::IsMember({"plain", "head"}))->capture_default_str();
  app.add_option("--batches", batches, "training batches to time per row, the epoch extrapolated (0 = the whole epoch)")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--device", device, "auto, cpu, cuda or cuda:N")->capture_default_str();
  app.add_option("--threads", threads, "LibTorch intra-op threads (0 = automatic)")->capture_default_str();
  app.add_option("--cache", cache, "folder of the cached stages (prepared data, titles intents)")->capture_default_str();
  app.add_option("--data-dir", data_dir, "raw data directory");
  app.add_option("--set", overrides, "override a config key (repeatable)");
  CLI11_PARSE(app, argc, argv);

  const auto rt = configure_runtime(threads);
  Config cfg = Config::load("configs/beauty.yaml");
  cfg.set("paths.configs", "configs");
  cfg.set("device", device);
  cfg.apply_overrides({"data.valid_fraction=0", "train.epochs=1", "intent.source=titles"});
  cfg.apply_overrides(overrides);
  const auto raw_dir = data::resolve_data_dir(data_dir);
  const auto stages = std::filesystem::path(cache) / "stages";
  const auto ds = train::prepare_cached(cfg, raw_dir, stages);
  const auto data_key = train::prepare_key(cfg, raw_dir);
  std::optional<intent::IntentStage> intents;  // made for the first head row

  auto opt = train::train_options_from_config(cfg);
  const auto n_batches = static_cast<std::int64_t>((ds.train.size() + opt.batch_size - 1) / opt.batch_size);
  const auto timed = batches == 0 ? n_batches : std::min(batches, n_batches);
  auto part = ds;
  part.train = evenly_spaced(ds.train, static_cast<std::size_t>(timed * opt.batch_size));
  const double scale = static_cast<double>(ds.train.size()) / static_cast<double>(part.train.size());

  std::vector<Row> table;
  bool rss_per_row = true;
  for (const auto& name : names) {
    Config mcfg = cfg;
    mcfg.set("model", name);
    const auto d = train::model_settings(mcfg).get<std::int64_t>("hidden_size", 100);
    const double floor_s = n_batches * shared_floor_step_seconds(opt.batch_size, d, ds.n_items(), opt.device);
    std::optional<double> plain_s;
    for (const auto& kind : rows) {
      if (kind == "head" && !intents) intents = intent::run_intent_stage(mcfg, ds, data_key, stages);
      // The row's peak: its model and training (the intents, if any, are held already).
      rss_per_row = reset_peak_rss() && rss_per_row;
      models::Recommender model;
      train::SplitIntents split;
      if (kind == "head") {
        split = {intents->train, {}, intents->test};
        model = train::build_llm4sbr(mcfg, ds, intents->views, intents->dim);
      } else {
        model = train::build_backbone(mcfg, ds);
      }
      opt.label = model->label();
      const auto e = train::fit(*model, part, opt, split).epochs.at(0);
      Row row{model->label(), e.train_seconds * scale, e.train_samples_per_second, floor_s, e.eval_seconds,
              e.test.count("HR@20") ? e.test.at("HR@20") : 0.0, peak_rss_mb(), std::nullopt};
      if (kind == "plain") plain_s = row.train_s;
      if (kind == "head" && plain_s) row.head_overhead = row.train_s / *plain_s - 1;
      table.push_back(row);
    }
  }

  const std::string where = opt.device.is_cuda() ? opt.device.str()
                                                 : fmt::format("cpu, {} LibTorch thread(s), {} {} thread(s) ({})",
                                                               rt.intra_op_threads, rt.blas_kind, rt.blas_threads, rt.blas_core);
  fmt::print("\nAmazon Beauty: {} training samples ({} batches of {}), {} test samples, {} items; {}\n", ds.train.size(),
             n_batches, opt.batch_size, ds.test.size(), ds.n_items(), where);
  if (timed < n_batches)
    fmt::print("training seconds extrapolated from {} batches of evenly spaced samples (x{:.2f})\n", timed, scale);
  fmt::print("floor: the scoring GEMMs of an epoch, S = H Eᵀ, dH = dS E, dE = dSᵀ H ([{} x d] x [d x {}], {} times)\n\n",
             opt.batch_size, ds.n_items(), n_batches);
  if (!rss_per_row) fmt::print("peak RSS: since the process started (/proc/self/clear_refs cannot be written here)\n");
  fmt::print("| model | epoch s | samples/s | floor s | epoch / floor | head overhead | test eval s | test HR@20 | peak RSS MB |\n");
  fmt::print("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const auto& r : table)
    fmt::print("| {} | {:.1f} | {:.0f} | {:.1f} | {:.1f} | {} | {:.2f} | {:.2f} | {:.0f} |\n", r.label, r.train_s,
               r.samples_per_s, r.floor_s, r.train_s / r.floor_s,
               r.head_overhead ? fmt::format("{:+.1f} %", 100 * *r.head_overhead) : "-", r.eval_s, r.hr20, r.rss_mb);
  fmt::print("\ncommand: build/bin/epoch_bench --models {} --rows {} --batches {} --device {}{}\n", fmt::join(names, ","),
             fmt::join(rows, ","), batches, device,
             overrides.empty() ? "" : " --set " + fmt::format("{}", fmt::join(overrides, " --set ")));
  return 0;
}
