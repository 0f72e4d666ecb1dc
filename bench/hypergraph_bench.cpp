// S²-DHCN's hypergraph convolution on full Amazon Beauty: one product S x through the prefix chains (a training
// step runs six: three layers forward, three backward), with the plain loop and with the register kernel
// (PrefixChains::Kernel), alternated round by round.
//
//   build/bin/hypergraph_bench [--rounds 5] [--reps 20] [--dim 100] [--data-dir DIR] [--cache runs/bench]
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <filesystem>
#include <vector>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/core/runtime.hpp"
#include "llm4sbr/data/data_dir.hpp"
#include "llm4sbr/models/dhcn.hpp"
#include "llm4sbr/train/experiment.hpp"
#include "timing.hpp"

using namespace llm4sbr;
using Kernel = models::PrefixChains::Kernel;

int main(int argc, char** argv) {
  ensure_fast_blas(argv);
  CLI::App app{"S²-DHCN's chain product on Beauty: the plain loop against the register kernel"};
  int rounds = 5, reps = 20;
  std::int64_t dim = 100;
  std::string data_dir, cache = "runs/bench";
  add_repetition_options(app, reps, "products per round and kernel", rounds, "rounds, each timing both kernels");
  app.add_option("--dim", dim, "columns of x (the hidden size)")->capture_default_str();
  app.add_option("--data-dir", data_dir, "raw data directory");
  app.add_option("--cache", cache, "folder of the cached stages (prepared data)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  const auto info = configure_runtime();
  Config cfg = Config::load("configs/beauty.yaml");
  cfg.set("paths.configs", "configs");
  cfg.apply_overrides({"data.valid_fraction=0"});
  const auto ds = train::prepare_cached(cfg, data::resolve_data_dir(data_dir), std::filesystem::path(cache) / "stages");
  const auto chains = models::PrefixChains::from_samples(ds.train).to(torch::kFloat32);
  torch::NoGradGuard no_grad;
  torch::manual_seed(1);
  const auto x = torch::randn({ds.n_items(), dim});
  auto time_ms = [&](Kernel kernel) { return 1e3 * mean_seconds([&] { chains.multiply(x, kernel); }, reps, 1); };
  std::vector<double> portable, automatic;
  for (int r = 0; r < rounds; ++r) {
    portable.push_back(time_ms(Kernel::portable));
    automatic.push_back(time_ms(Kernel::automatic));
  }
  const bool same = torch::equal(chains.multiply(x, Kernel::portable), chains.multiply(x, Kernel::automatic));
  fmt::print("chain product S x on Beauty ({} chains, {} entries, x [{}, {}], {} LibTorch thread(s)): plain loop "
             "{:.2f} ms, register kernel {:.2f} ms (medians of {} rounds of {}); same values: {}\n",
             chains.chain_offsets.size(0) - 1, chains.first_items.size(0), ds.n_items(), dim, info.intra_op_threads,
             median(portable), median(automatic), rounds, reps, same ? "yes" : "NO");
  fmt::print("command: build/bin/hypergraph_bench --rounds {} --reps {} --dim {}\n", rounds, reps, dim);
  return same ? 0 : 1;
}
