// a · bᵀ for a few rows against a catalogue-sized table, the products of serving one session (its scores,
// the localization of its intents): GEMM (at::matmul) against core/linalg's times_transposed, one OpenBLAS
// thread as `llm4sbr serve` runs it. Prints a markdown table of milliseconds a product.
//
//   build/bin/times_transposed_bench --items 12101 --dims 100,256 --rows 1,2,4,8
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <torch/torch.h>

#include <chrono>

#include "llm4sbr/core/linalg.hpp"
#include "llm4sbr/core/runtime.hpp"

namespace {

template <class F>
double ms_per_call(F&& f, int calls) {
  for (int i = 0; i < 10; ++i) f();  // warm caches and allocator
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < calls; ++i) f();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / calls;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("times_transposed against GEMM on serving shapes");
  std::int64_t items = 12101;
  std::vector<std::int64_t> dims{100, 256}, rows{1, 2, 3, 4, 8};
  int calls = 300;
  app.add_option("--items", items, "rows of the table (the catalogue)")->capture_default_str();
  app.add_option("--dims", dims, "widths d")->delimiter(',');
  app.add_option("--rows", rows, "rows m of a")->delimiter(',');
  app.add_option("--calls", calls, "products timed per cell")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  llm4sbr::set_blas_threads(1);
  torch::set_num_threads(1);
  torch::NoGradGuard no_grad;
  torch::manual_seed(0);
  fmt::print("| d | m | GEMM ms | times_transposed ms | speed-up |\n|---:|---:|---:|---:|---:|\n");
  for (const auto d : dims) {
    const auto b = torch::randn({items, d});
    for (const auto m : rows) {
      const auto a = torch::randn({m, d});
      const double gemm = ms_per_call([&] { return torch::matmul(a, b.t()); }, calls);
      const double ours = ms_per_call([&] { return llm4sbr::times_transposed(a, b); }, calls);
      fmt::print("| {} | {} | {:.3f} | {:.3f} | {:.2f}x |\n", d, m, gemm, ours, gemm / ours);
    }
  }
  fmt::print("\n(build/bin/times_transposed_bench --items {} --calls {})\n", items, calls);
}
