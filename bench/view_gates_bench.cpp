// The LLM4SBR head's gates and DirectAU of one training batch, forward and backward: gate_views (one
// autograd node, backward written out) against composed_gate_views (LibTorch operations), alternated round by
// round so that both see the same machine load. The head's share of a training step that is not its
// projection.
//
//   build/bin/view_gates_bench [--batch 100] [--views 2] [--dim 100] [--reps 300] [--rounds 5] [--au-weight 0.1]
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <chrono>
#include <vector>

#include "llm4sbr/core/runtime.hpp"
#include "timing.hpp"
#include "llm4sbr/enhance/view_gates.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using GateFn = llm4sbr::enhance::GatedViews (*)(const torch::Tensor&, const std::vector<torch::Tensor>&,
                                                const std::vector<torch::Tensor>&, double);

// Mean microseconds of `reps` forward+backward passes of `fn` (a loss reading every output).
double time_us(GateFn fn, const torch::Tensor& projected, const std::vector<torch::Tensor>& anchors,
               const std::vector<torch::Tensor>& weights, double au_weight, int reps) {
  const auto t0 = Clock::now();
  for (int r = 0; r < reps; ++r) {
    const auto out = fn(projected, anchors, weights, au_weight);
    auto loss = out.alphas.sum();
    for (const auto& g : out.gated) loss = loss + g.sum();
    if (out.au.defined()) loss = loss + out.au;
    loss.backward();
  }
  return std::chrono::duration<double>(Clock::now() - t0).count() / reps * 1e6;
}

}  // namespace

int main(int argc, char** argv) {
  llm4sbr::ensure_fast_blas(argv);
  CLI::App app{"The LLM4SBR head's gates and DirectAU: one autograd node against LibTorch operations"};
  std::int64_t batch = 100, views = 2, dim = 100;
  int reps = 300, rounds = 5;
  double au_weight = 0.1;
  app.add_option("--batch", batch, "sessions per batch (B)")->capture_default_str();
  app.add_option("--views", views, "intent views (V)")->capture_default_str();
  app.add_option("--dim", dim, "hidden size (d)")->capture_default_str();
  add_repetition_options(app, reps, "forward+backward passes per round", rounds, "rounds, each timing both in turn");
  app.add_option("--au-weight", au_weight, "DirectAU weight (0: the gates alone, as in evaluation)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  llm4sbr::configure_runtime();

  torch::manual_seed(1);
  const auto projected = torch::randn({batch, views, dim}).requires_grad_();
  std::vector<torch::Tensor> anchors, weights;
  for (std::int64_t v = 0; v < views; ++v) {
    anchors.push_back(torch::randn({batch, dim}).requires_grad_());
    weights.push_back(torch::randn({1, dim}).requires_grad_());
  }
  std::vector<double> fused, composed;
  for (int r = 0; r < rounds; ++r) {
    fused.push_back(time_us(llm4sbr::enhance::gate_views, projected, anchors, weights, au_weight, reps));
    composed.push_back(time_us(llm4sbr::enhance::composed_gate_views, projected, anchors, weights, au_weight, reps));
  }
  fmt::print("gates + DirectAU, forward and backward, B {} V {} d {}: one node {:.0f} us, LibTorch operations {:.0f} us "
             "(medians of {} rounds of {}); {:.1f}x\n",
             batch, views, dim, median(fused), median(composed), rounds, reps, median(composed) / median(fused));
  fmt::print("command: build/bin/view_gates_bench --batch {} --views {} --dim {} --reps {} --rounds {} --au-weight {}\n",
             batch, views, dim, reps, rounds, au_weight);
  return 0;
}
