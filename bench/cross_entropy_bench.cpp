// The next-item loss of one training batch, forward and backward: train::cross_entropy (the trainer's fused
// loss) against F::cross_entropy, alternated round by round so that both see the same machine load. SR-GNN's
// Beauty batch by default: [100, 12,101] scores.
//
//   build/bin/cross_entropy_bench [--batch 100] [--items 12101] [--reps 200] [--rounds 7]
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <chrono>
#include <vector>

#include "llm4sbr/core/runtime.hpp"
#include "timing.hpp"
#include "llm4sbr/train/cross_entropy.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using LossFn = torch::Tensor (*)(const torch::Tensor&, const torch::Tensor&);

torch::Tensor torch_loss(const torch::Tensor& s, const torch::Tensor& t) {
  return torch::nn::functional::cross_entropy(s, t);
}

// Mean microseconds of `reps` forward+backward passes of `fn`. The gradient is taken with autograd::grad, as a
// step hands it to the scores' producer: no .grad accumulated into a leaf.
double time_us(LossFn fn, const torch::Tensor& scores, const torch::Tensor& targets, int reps) {
  const auto t0 = Clock::now();
  for (int r = 0; r < reps; ++r) {
    const auto loss = fn(scores, targets);
    const auto grad = torch::autograd::grad({loss}, {scores});
  }
  return std::chrono::duration<double>(Clock::now() - t0).count() / reps * 1e6;
}

}  // namespace

int main(int argc, char** argv) {
  llm4sbr::ensure_fast_blas(argv);
  CLI::App app{"The next-item loss: the trainer's fused cross-entropy against F::cross_entropy"};
  std::int64_t batch = 100, items = 12101;
  int reps = 200, rounds = 7;
  app.add_option("--batch", batch, "sessions per batch (B)")->capture_default_str();
  app.add_option("--items", items, "catalogue size (N)")->capture_default_str();
  add_repetition_options(app, reps, "forward+backward passes per round", rounds, "rounds, each timing both in turn");
  CLI11_PARSE(app, argc, argv);
  llm4sbr::configure_runtime();

  torch::manual_seed(1);
  const auto scores = (torch::randn({batch, items}) * 3).requires_grad_();
  const auto targets = torch::randint(0, items, {batch}, torch::kLong);
  std::vector<double> fused, composed;
  for (int r = 0; r < rounds; ++r) {
    fused.push_back(time_us(llm4sbr::train::cross_entropy, scores, targets, reps));
    composed.push_back(time_us(torch_loss, scores, targets, reps));
  }
  fmt::print("cross-entropy, forward and backward, B {} N {}: fused {:.0f} us, F::cross_entropy {:.0f} us (medians of "
             "{} rounds of {}); {:.1f}x\n",
             batch, items, median(fused), median(composed), rounds, reps, median(composed) / median(fused));
  fmt::print("command: build/bin/cross_entropy_bench --batch {} --items {} --reps {} --rounds {}\n", batch, items, reps,
             rounds);
  return 0;
}
