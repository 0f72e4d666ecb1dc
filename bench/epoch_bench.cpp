// Seconds per full training epoch on Amazon Beauty through the real trainer (train::fit: batches, forward,
// loss, backward, Adam, the loss checks), for a backbone or LLM4SBR(backbone), on the CPU or a GPU.
// LLM4SBR rows are fed seeded random unit intents of --text-dim (the head's cost depends on their shape
// only), so the figure needs no Stage 1. Evaluation of the test split is timed separately.
//
//   build/bin/epoch_bench [--model srgnn] [--head] [--device auto] [--epochs 1] [--text-dim 768]
//                         [--threads 0] [--data-dir DIR] [--set key=value ...]
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <string>
#include <vector>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/core/runtime.hpp"
#include "llm4sbr/data/data_dir.hpp"
#include "llm4sbr/data/prepare.hpp"
#include "llm4sbr/data/readers.hpp"
#include "llm4sbr/train/build.hpp"
#include "llm4sbr/train/device.hpp"
#include "llm4sbr/train/trainer.hpp"

using namespace llm4sbr;

int main(int argc, char** argv) {
  ensure_fast_blas(argv);
  CLI::App app{"Seconds per training epoch on Amazon Beauty"};
  std::string model_name = "srgnn", device = "auto", data_dir;
  std::vector<std::string> overrides;
  bool head = false;
  std::int64_t epochs = 1, text_dim = 768;
  int threads = 0;
  app.add_option("--model", model_name, "registered backbone (srgnn, tagnn, gcegnn, dhcn, gru4rec, sasrec)")->capture_default_str();
  app.add_flag("--head", head, "LLM4SBR(backbone): the head with random intents");
  app.add_option("--device", device, "auto, cpu, cuda or cuda:N")->capture_default_str();
  app.add_option("--epochs", epochs, "epochs to train (each is timed)")->capture_default_str();
  app.add_option("--text-dim", text_dim, "width of the random intents (768: a BERT-base embedding)")->capture_default_str();
  app.add_option("--threads", threads, "LibTorch intra-op threads (0 = automatic)")->capture_default_str();
  app.add_option("--data-dir", data_dir, "raw data directory");
  app.add_option("--set", overrides, "override a config key (repeatable)");
  CLI11_PARSE(app, argc, argv);

  const auto rt = configure_runtime(threads);
  Config cfg = Config::load("configs/beauty.yaml");
  cfg.set("paths.configs", "configs");
  cfg.set("model", model_name);
  cfg.set("device", device);
  cfg.apply_overrides({"data.valid_fraction=0", "train.epochs=" + std::to_string(epochs)});
  cfg.apply_overrides(overrides);
  const auto raw = data::read_dataset("beauty", data::resolve_data_dir(data_dir) / "amazon-beauty-2014");
  const auto ds = data::prepare(raw, data::prepare_options_from_config(cfg));

  train::SplitIntents intents;
  models::Recommender model;
  if (head) {
    torch::manual_seed(1);
    const auto unit = [&](const std::vector<data::Sample>& split) {  // one row per sample id
      std::int64_t rows = 0;
      for (const auto& s : split) rows = std::max(rows, s.id + 1);
      const auto x = torch::randn({rows, 2, text_dim});
      return x / x.norm(2, -1, true);
    };
    intents = {unit(ds.train), {}, unit(ds.test)};
    model = train::build_llm4sbr(cfg, ds, {"long", "short"}, text_dim);
  } else {
    model = train::build_backbone(cfg, ds);
  }
  const auto opt = train::train_options_from_config(cfg);
  const auto result = train::fit(*model, ds, opt, intents);

  const std::string where = opt.device.is_cuda() ? fmt::format("{} ({})", opt.device.str(), "CUDA")
                                                 : fmt::format("cpu ({} LibTorch threads, {})", rt.intra_op_threads, rt.blas_kind);
  for (const auto& e : result.epochs)
    fmt::print("{:<18} {:<28} epoch {}: train {:7.2f} s ({:8.0f} samples/s), evaluation of {} test samples {:6.2f} s, "
               "loss {:.4f}, HR@20 {:.2f}\n",
               model->label(), where, e.epoch, e.train_seconds, e.train_samples_per_second, ds.test.size(),
               e.eval_seconds, e.train_loss, e.test.count("HR@20") ? e.test.at("HR@20") : 0.0);
  fmt::print("command: build/bin/epoch_bench --model {}{} --device {} --epochs {}{}\n", model_name, head ? " --head" : "",
             device, epochs, overrides.empty() ? "" : " --set " + fmt::format("{}", fmt::join(overrides, " --set ")));
  return 0;
}
