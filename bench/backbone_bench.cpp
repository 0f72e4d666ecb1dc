// Throughput of a backbone on full Amazon Beauty: training samples/s (forward + loss, with the model's
// auxiliary loss, + backward + Adam step, batch 100) and evaluation samples/s (scores over the whole
// catalogue + ranks), and where a training step goes. `make bench` (epoch_bench) gives the table of all of them.
// With --head, LLM4SBR(backbone) (titles intents) trains beside the plain backbone, one batch each in turn on
// the same batches, so that the head's overhead is measured under the same machine load (two epochs timed one
// after the other on this shared machine differ by more than the head costs).
//
//   build/bin/backbone_bench [--model srgnn] [--batches 300] [--head] [--threads 0] [--torch-adam] [--torch-loss]
//                            [--profile FILE] [--data-dir DIR] [--cache runs/bench] [--set key=value ...]
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <ATen/record_function.h>
#include <torch/csrc/autograd/profiler_legacy.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/core/runtime.hpp"
#include "llm4sbr/data/data_dir.hpp"
#include "llm4sbr/intent/intent_stage.hpp"
#include "llm4sbr/models/batch.hpp"
#include "llm4sbr/train/cross_entropy.hpp"
#include "llm4sbr/train/experiment.hpp"
#include "llm4sbr/train/fused_adam.hpp"

using namespace llm4sbr;

namespace {

using Clock = std::chrono::steady_clock;

double seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

// A model under test, its optimizer, the training intents it reads (undefined for a plain backbone) and the
// seconds its timed steps spent in each part.
struct Timed {
  models::Recommender model;
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  torch::Tensor intents, test_intents;
  double batch = 0, forward = 0, backward = 0, step = 0;

  double total() const { return batch + forward + backward + step; }
  void reset() { batch = forward = backward = step = 0; }
};

Timed timed(models::Recommender model, bool torch_adam, torch::Tensor intents = {}, torch::Tensor test_intents = {}) {
  const auto adam = torch::optim::AdamOptions(1e-3).weight_decay(1e-5);
  Timed t{std::move(model), nullptr, std::move(intents), std::move(test_intents)};
  if (torch_adam) t.optimizer = std::make_unique<torch::optim::Adam>(t.model->parameters(), adam);
  else t.optimizer = std::make_unique<train::FusedAdam>(t.model->parameters(), adam);
  return t;
}

// One training step of `t` on the samples `indices` of `train`, its parts timed.
void step(Timed& t, const std::vector<data::Sample>& train, const std::vector<std::int64_t>& indices, bool torch_loss) {
  RECORD_USER_SCOPE(t.model->label().c_str());  // a --profile trace groups each step's operations under its model
  const auto c0 = Clock::now();
  auto batch = models::make_batch(train, indices);
  if (t.intents.defined()) batch.intents = t.intents.index_select(0, batch.sample_ids);  // as the trainer does
  const auto c1 = Clock::now();
  train::clear_gradients(*t.optimizer);  // as the trainer does
  auto out = t.model->forward(batch);
  const auto targets = batch.targets - 1;
  auto loss = torch_loss ? torch::nn::functional::cross_entropy(out.scores, targets) : train::cross_entropy(out.scores, targets);
  if (out.aux_loss.defined()) loss = loss + out.aux_loss;  // as the trainer does (S²-DHCN's SSL, the head's)
  const auto c2 = Clock::now();
  loss.backward();
  const auto c3 = Clock::now();
  t.optimizer->step();
  const auto c4 = Clock::now();
  t.batch += seconds(c0, c1), t.forward += seconds(c1, c2), t.backward += seconds(c2, c3), t.step += seconds(c3, c4);
}

void print_row(const Timed& t, std::int64_t n_batches, std::int64_t samples, std::size_t train_size,
               const std::vector<data::Sample>& test) {
  const auto t0 = Clock::now();
  const auto ranks = train::rank_targets(*t.model, test, 500, t.test_intents);
  const double eval_s = seconds(t0, Clock::now());
  const double rate = static_cast<double>(samples) / t.total();
  const double ms = 1e3 / static_cast<double>(n_batches);
  fmt::print("{}\n", t.model->label());
  fmt::print("  training:   {:8.0f} samples/s ({} batches of 100) -> {:.1f} s per full epoch\n", rate, n_batches,
             static_cast<double>(train_size) / rate);
  fmt::print("              per batch: make_batch {:.1f} ms, forward+loss {:.1f} ms, backward {:.1f} ms, Adam {:.1f} ms\n",
             ms * t.batch, ms * t.forward, ms * t.backward, ms * t.step);
  fmt::print("  evaluation: {:8.0f} samples/s ({} test samples in {:.2f} s)\n", static_cast<double>(ranks.size()) / eval_s,
             ranks.size(), eval_s);
}

}  // namespace

int main(int argc, char** argv) {
  llm4sbr::ensure_fast_blas(argv);
  CLI::App app{"Backbone training and evaluation throughput on Amazon Beauty"};
  std::string model_name = "srgnn", data_dir, cache = "runs/bench", profile_path;
  std::vector<std::string> overrides;
  std::int64_t n_batches = 300;
  int threads = 0;
  bool head = false, torch_adam = false, torch_loss = false;
  app.add_option("--model", model_name, "registered backbone (srgnn, tagnn, gcegnn, dhcn, gru4rec, sasrec)")
      ->capture_default_str();
  app.add_option("--set", overrides, "override a config key, e.g. --set models.dhcn.beta=0 (repeatable)");
  app.add_option("--batches", n_batches, "training batches to time")->capture_default_str();
  app.add_flag("--head", head,
               "also train LLM4SBR(model) on titles intents, one batch each in turn, and print the head's overhead");
  app.add_option("--threads", threads, "LibTorch intra-op threads (0 = automatic, see core/runtime.hpp)")->capture_default_str();
  app.add_option("--data-dir", data_dir, "raw data directory");
  app.add_option("--cache", cache, "folder of the cached stages (prepared data, titles intents; epoch_bench's)")
      ->capture_default_str();
  app.add_flag("--torch-adam", torch_adam, "step with torch::optim::Adam instead of the trainer's FusedAdam");
  app.add_flag("--torch-loss", torch_loss, "F::cross_entropy instead of the trainer's fused loss");
  app.add_option("--profile", profile_path,
                 "write LibTorch's profile of the timed training batches to this file (a chrome://tracing or "
                 "ui.perfetto.dev trace; profiling slows each operation a little)");
  CLI11_PARSE(app, argc, argv);

  auto rt = configure_runtime(threads);
  Config cfg = Config::load("configs/beauty.yaml");
  cfg.set("paths.configs", "configs");
  cfg.apply_overrides({"data.valid_fraction=0", "intent.source=titles"});
  cfg.set("model", model_name);
  cfg.apply_overrides(overrides);
  const auto raw_dir = data::resolve_data_dir(data_dir);
  const auto stages = std::filesystem::path(cache) / "stages";
  const auto ds = train::prepare_cached(cfg, raw_dir, stages);

  std::vector<Timed> under_test;
  under_test.push_back(timed(train::build_backbone(cfg, ds), torch_adam));
  if (head) {
    const auto intents = intent::run_intent_stage(cfg, ds, train::prepare_key(cfg, raw_dir), stages);
    under_test.push_back(timed(train::build_llm4sbr(cfg, ds, intents.views, intents.dim), torch_adam, intents.train,
                               intents.test));
  }

  auto batches = models::batch_indices(static_cast<std::int64_t>(ds.train.size()), 100, true, 1);
  n_batches = std::min<std::int64_t>(n_batches, static_cast<std::int64_t>(batches.size()));
  for (std::size_t b = 0; b < 5; ++b)  // warm-up: allocator and thread pool
    for (auto& t : under_test) step(t, ds.train, batches[b], torch_loss);
  for (auto& t : under_test) t.reset();
  std::int64_t samples = 0;
  std::optional<torch::autograd::profiler::RecordProfile> profile;
  if (!profile_path.empty()) profile.emplace(profile_path);
  for (std::int64_t b = 0; b < n_batches; ++b) {
    const auto& indices = batches[static_cast<std::size_t>(b)];
    for (auto& t : under_test) step(t, ds.train, indices, torch_loss);
    samples += static_cast<std::int64_t>(indices.size());
  }
  profile.reset();  // writes the trace

  fmt::print("Beauty ({} items, {} train / {} test samples); LibTorch {} thread(s), {} {} thread(s), kernels {}\n",
             ds.n_items(), ds.train.size(), ds.test.size(), rt.intra_op_threads, rt.blas_kind, rt.blas_threads,
             rt.blas_core);
  for (const auto& t : under_test) print_row(t, n_batches, samples, ds.train.size(), ds.test);
  if (head)
    fmt::print("  head overhead: {:+.1f} % of the backbone's training time (the same {} batches, alternated)\n",
               100 * (under_test[1].total() / under_test[0].total() - 1), n_batches);
  fmt::print("  command: build/bin/backbone_bench --model {} --batches {}{} --threads {}{}{}{}{}\n", model_name, n_batches,
             head ? " --head" : "", threads, torch_adam ? " --torch-adam" : "", torch_loss ? " --torch-loss" : "",
             profile_path.empty() ? "" : " --profile " + profile_path,
             overrides.empty() ? "" : " --set " + fmt::format("{}", fmt::join(overrides, " --set ")));
  return 0;
}
