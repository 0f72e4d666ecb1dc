// a · bᵀ for a few rows against a catalogue-sized table, the products of serving one session (its scores,
// the localization of its intents): GEMM (at::matmul) against core/linalg's times_transposed, and the one-pass
// product with a packed bfloat16 copy of the table that screens localization candidates (Bf16Table: its
// portable kernel, and its AVX512-BF16 dot-product kernel where the CPU has one), one OpenBLAS thread as
// `llm4sbr serve` runs it. Prints a markdown table of milliseconds a product. With --cold,
// a 64 MB buffer is written between calls (untimed), so the table comes from memory as it does in a server
// whose other work evicts it from the caches.
//
//   build/bin/times_transposed_bench --items 12101 --dims 100,256 --rows 1,2,4,8 [--cold]
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "llm4sbr/core/linalg.hpp"
#include "llm4sbr/core/runtime.hpp"

namespace {

/// Milliseconds a call of f, each call timed on its own; with cold, the caches are flushed before each.
template <class F>
double ms_per_call(F&& f, int calls, bool cold) {
  static std::vector<char> flush(64 << 20);
  for (int i = 0; i < 10; ++i) f();  // warm the allocator
  double total = 0;
  for (int i = 0; i < calls; ++i) {
    if (cold) std::fill(flush.begin(), flush.end(), static_cast<char>(i));
    const auto t0 = std::chrono::steady_clock::now();
    f();
    total += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  }
  return total / calls;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("times_transposed against GEMM on serving shapes");
  std::int64_t items = 12101;
  std::vector<std::int64_t> dims{100, 256}, rows{1, 2, 3, 4, 8};
  int calls = 300;
  bool cold = false;
  app.add_option("--items", items, "rows of the table (the catalogue)")->capture_default_str();
  app.add_option("--dims", dims, "widths d")->delimiter(',');
  app.add_option("--rows", rows, "rows m of a")->delimiter(',');
  app.add_option("--calls", calls, "products timed per cell")->capture_default_str();
  app.add_flag("--cold", cold, "flush the caches before each call (the table comes from memory)");
  CLI11_PARSE(app, argc, argv);
  llm4sbr::set_blas_threads(1);
  torch::set_num_threads(1);
  torch::NoGradGuard no_grad;
  torch::manual_seed(0);
  fmt::print("| d | m | GEMM ms | times_transposed ms | speed-up | packed bf16 ms | speed-up | bf16 dot pairs ms | "
             "speed-up |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const auto d : dims) {
    const auto b = torch::randn({items, d});
    const llm4sbr::Bf16Table portable(b.to(torch::kBFloat16), llm4sbr::Bf16Table::Kernel::portable);
    const llm4sbr::Bf16Table automatic(b.to(torch::kBFloat16));
    for (const auto m : rows) {
      const auto a = torch::randn({m, d});
      const double gemm = ms_per_call([&] { return torch::matmul(a, b.t()); }, calls, cold);
      const double ours = ms_per_call([&] { return llm4sbr::times_transposed(a, b); }, calls, cold);
      const double bf16 = ms_per_call([&] { return portable.times_transposed(a); }, calls, cold);
      std::string pairs = "- | -";  // no AVX512-BF16 on this CPU
      if (automatic.dot_pairs()) {
        const double ms = ms_per_call([&] { return automatic.times_transposed(a); }, calls, cold);
        pairs = fmt::format("{:.3f} | {:.2f}x", ms, gemm / ms);
      }
      fmt::print("| {} | {} | {:.3f} | {:.3f} | {:.2f}x | {:.3f} | {:.2f}x | {} |\n", d, m, gemm, ours, gemm / ours, bf16,
                 gemm / bf16, pairs);
    }
  }
  fmt::print("\n(build/bin/times_transposed_bench --items {} --calls {}{}; speed-ups against GEMM)\n", items, calls,
             cold ? " --cold" : "");
}
