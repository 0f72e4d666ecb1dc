// models::layer_norm against torch::layer_norm on SASRec's shape (the rows of a Beauty batch, [850, 100] by
// default): forward alone without a gradient, and forward + backward, alternated round by round.
//
//   build/bin/layer_norm_bench [--rows 850] [--dim 100] [--reps 500] [--rounds 5]
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <vector>

#include "llm4sbr/core/runtime.hpp"
#include "llm4sbr/models/layer_norm.hpp"
#include "timing.hpp"

int main(int argc, char** argv) {
  llm4sbr::ensure_fast_blas(argv);
  CLI::App app{"models::layer_norm against torch::layer_norm, forward and forward + backward"};
  std::int64_t rows = 850, dim = 100;
  int reps = 500, rounds = 5;
  app.add_option("--rows", rows, "rows (SASRec: the batch's clicks)")->capture_default_str();
  app.add_option("--dim", dim, "width (the hidden size)")->capture_default_str();
  add_repetition_options(app, reps, "calls per round and function", rounds, "rounds, each timing both functions");
  CLI11_PARSE(app, argc, argv);
  llm4sbr::configure_runtime();
  constexpr double kEps = 1e-8;  // SASRec's
  torch::manual_seed(1);
  const auto x = torch::randn({rows, dim}).requires_grad_();
  const auto w = torch::ones({dim}).requires_grad_(), b = torch::zeros({dim}).requires_grad_();
  const auto g = torch::randn({rows, dim});
  auto ours = [&] { return llm4sbr::models::layer_norm(x, w, b, kEps); };
  auto theirs = [&] { return torch::layer_norm(x, {dim}, w, b, kEps); };
  auto forward = [](auto norm) {
    return [norm] {
      torch::NoGradGuard no_grad;
      norm();
    };
  };
  auto both = [&g](auto norm) { return [norm, &g] { norm().backward(g); }; };
  std::vector<double> ours_f, theirs_f, ours_fb, theirs_fb;
  for (int r = 0; r < rounds; ++r) {
    theirs_f.push_back(1e6 * mean_seconds(forward(theirs), reps, 5));
    ours_f.push_back(1e6 * mean_seconds(forward(ours), reps, 5));
    theirs_fb.push_back(1e6 * mean_seconds(both(theirs), reps, 5));
    ours_fb.push_back(1e6 * mean_seconds(both(ours), reps, 5));
  }
  fmt::print("layer norm [{}, {}], float32: forward torch {:.1f} us, ours {:.1f} us; forward + backward torch {:.1f} "
             "us, ours {:.1f} us (medians of {} rounds of {})\n",
             rows, dim, median(theirs_f), median(ours_f), median(theirs_fb), median(ours_fb), rounds, reps);
  fmt::print("command: build/bin/layer_norm_bench --rows {} --dim {} --reps {} --rounds {}\n", rows, dim, reps, rounds);
  return 0;
}
