// Throughput of a backbone on full Amazon Beauty: training samples/s (forward + loss, with the model's
// auxiliary loss, + backward + Adam step, batch 100) and evaluation samples/s (scores over the whole
// catalogue + ranks), and where a training step goes. `make bench` (epoch_bench) gives the table of all of them.
//
//   build/bin/backbone_bench [--model srgnn] [--batches 300] [--threads 0] [--torch-adam] [--torch-loss]
//                            [--data-dir DIR] [--set key=value ...]
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <torch/csrc/autograd/profiler_legacy.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/models/batch.hpp"
#include "llm4sbr/data/data_dir.hpp"
#include "llm4sbr/data/prepare.hpp"
#include "llm4sbr/data/readers.hpp"
#include "llm4sbr/train/cross_entropy.hpp"
#include "llm4sbr/train/experiment.hpp"
#include "llm4sbr/train/fused_adam.hpp"
#include "llm4sbr/core/runtime.hpp"

using namespace llm4sbr;

int main(int argc, char** argv) {
  llm4sbr::ensure_fast_blas(argv);
  CLI::App app{"Backbone training and evaluation throughput on Amazon Beauty"};
  std::string model_name = "srgnn";
  std::vector<std::string> overrides;
  std::int64_t n_batches = 300;
  int threads = 0;
  std::string data_dir;
  app.add_option("--model", model_name, "registered backbone (srgnn, tagnn, gcegnn, dhcn, gru4rec, sasrec)")
      ->capture_default_str();
  app.add_option("--set", overrides, "override a config key, e.g. --set models.dhcn.beta=0 (repeatable)");
  app.add_option("--batches", n_batches, "training batches to time")->capture_default_str();
  app.add_option("--threads", threads, "LibTorch intra-op threads (0 = automatic, see core/runtime.hpp)")->capture_default_str();
  app.add_option("--data-dir", data_dir, "raw data directory");
  bool torch_adam = false;
  app.add_flag("--torch-adam", torch_adam, "step with torch::optim::Adam instead of the trainer's FusedAdam");
  bool torch_loss = false;
  app.add_flag("--torch-loss", torch_loss, "F::cross_entropy instead of the trainer's fused loss");
  std::string profile_path;
  app.add_option("--profile", profile_path,
                 "write LibTorch's profile of the timed training batches to this file (a chrome://tracing or "
                 "ui.perfetto.dev trace; profiling slows each operation a little)");
  CLI11_PARSE(app, argc, argv);

  auto rt = configure_runtime(threads);
  Config cfg = Config::load("configs/beauty.yaml");
  cfg.set("paths.configs", "configs");
  cfg.set("data.valid_fraction", "0");
  cfg.set("model", model_name);
  cfg.apply_overrides(overrides);
  auto raw = data::read_dataset("beauty", data::resolve_data_dir(data_dir) / "amazon-beauty-2014");
  auto ds = data::prepare(raw, data::prepare_options_from_config(cfg));
  auto model = train::build_backbone(cfg, ds);
  const auto adam = torch::optim::AdamOptions(1e-3).weight_decay(1e-5);
  std::unique_ptr<torch::optim::Optimizer> optimizer;  // the trainer's FusedAdam, or torch's own to compare
  if (torch_adam) optimizer = std::make_unique<torch::optim::Adam>(model->parameters(), adam);
  else optimizer = std::make_unique<train::FusedAdam>(model->parameters(), adam);

  auto batches = models::batch_indices(static_cast<std::int64_t>(ds.train.size()), 100, true, 1);
  n_batches = std::min<std::int64_t>(n_batches, static_cast<std::int64_t>(batches.size()));
  // Seconds spent in each part of a training step, to show where the time goes.
  double t_batch = 0, t_forward = 0, t_backward = 0, t_step = 0;
  auto now = [] { return std::chrono::steady_clock::now(); };
  auto secs = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
  auto step = [&](std::size_t b) {
    auto c0 = now();
    auto batch = models::make_batch(ds.train, batches[b]);
    auto c1 = now();
    optimizer->zero_grad();
    auto out = model->forward(batch);
    const auto targets = batch.targets - 1;
    auto loss = torch_loss ? torch::nn::functional::cross_entropy(out.scores, targets)
                           : train::cross_entropy(out.scores, targets);
    if (out.aux_loss.defined()) loss = loss + out.aux_loss;  // as the trainer does (S²-DHCN's SSL)
    auto c2 = now();
    loss.backward();
    auto c3 = now();
    optimizer->step();
    auto c4 = now();
    t_batch += secs(c0, c1), t_forward += secs(c1, c2), t_backward += secs(c2, c3), t_step += secs(c3, c4);
  };
  for (std::size_t b = 0; b < 5; ++b) step(b);  // warm-up: allocator and thread pool
  t_batch = t_forward = t_backward = t_step = 0;
  std::int64_t samples = 0;
  std::optional<torch::autograd::profiler::RecordProfile> profile;
  if (!profile_path.empty()) profile.emplace(profile_path);
  auto t0 = now();
  for (std::int64_t b = 0; b < n_batches; ++b) {
    step(static_cast<std::size_t>(b));
    samples += static_cast<std::int64_t>(batches[static_cast<std::size_t>(b)].size());
  }
  double train_s = secs(t0, now());
  profile.reset();  // writes the trace

  auto t1 = std::chrono::steady_clock::now();
  auto ranks = train::rank_targets(*model, ds.test, 500);
  double eval_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();

  const double train_rate = samples / train_s;
  const double eval_rate = static_cast<double>(ranks.size()) / eval_s;
  fmt::print("{} on Beauty ({} items, {} train / {} test samples); LibTorch {} thread(s), {} {} thread(s), kernels {}\n",
             model->label(), ds.n_items(), ds.train.size(), ds.test.size(), rt.intra_op_threads, rt.blas_kind, rt.blas_threads, rt.blas_core);
  fmt::print("  training:   {:8.0f} samples/s ({} batches of 100) -> {:.1f} s per full epoch\n", train_rate, n_batches,
             static_cast<double>(ds.train.size()) / train_rate);
  fmt::print("              per batch: make_batch {:.1f} ms, forward+loss {:.1f} ms, backward {:.1f} ms, Adam {:.1f} ms\n",
             1e3 * t_batch / n_batches, 1e3 * t_forward / n_batches, 1e3 * t_backward / n_batches, 1e3 * t_step / n_batches);
  fmt::print("  evaluation: {:8.0f} samples/s ({} test samples in {:.2f} s)\n", eval_rate, ranks.size(), eval_s);
  fmt::print("  command: build/bin/backbone_bench --model {} --batches {} --threads {}{}{}{}{}\n", model_name, n_batches,
             threads, torch_adam ? " --torch-adam" : "", torch_loss ? " --torch-loss" : "",
             profile_path.empty() ? "" : " --profile " + profile_path,
             overrides.empty() ? "" : " --set " + fmt::format("{}", fmt::join(overrides, " --set ")));
  return 0;
}
