// The floor's three products of one training step (S = H Eᵀ, dH = dS E, dE = dSᵀ H; [100 x d] x [d x 12,101]),
// run three ways and alternated round by round: OpenBLAS on its own threads (how the models and epoch_bench's
// floor run them), OpenBLAS on one thread, and each product cut in two halves along the catalogue that two
// threads of this program compute at once, each with single-threaded OpenBLAS (dH's two [B, d] parts added).
// The question it answers: how much of the second core OpenBLAS's own threading uses on these shapes.
//
//   build/bin/scoring_threads_bench [--batch 100] [--dim 100] [--items 12101] [--reps 100] [--rounds 5]
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "llm4sbr/core/runtime.hpp"
#include "timing.hpp"

namespace {

// One helper thread that runs one job at a time while the caller runs another (blocking hand-off: no spinning).
class Helper {
 public:
  Helper() : thread_([this] { loop(); }) {}
  ~Helper() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    wake_.notify_one();
    thread_.join();
  }
  // Runs `mine` here and `theirs` on the helper, returns when both are done.
  void both(const std::function<void()>& mine, const std::function<void()>& theirs) {
    {
      std::lock_guard lock(mutex_);
      job_ = theirs;
    }
    wake_.notify_one();
    mine();
    std::unique_lock lock(mutex_);
    done_.wait(lock, [this] { return !job_; });
  }

 private:
  void loop() {
    std::unique_lock lock(mutex_);
    for (;;) {
      wake_.wait(lock, [this] { return stop_ || job_; });
      if (stop_) return;
      lock.unlock();
      job_();
      lock.lock();
      job_ = nullptr;
      done_.notify_one();
    }
  }
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::function<void()> job_;
  bool stop_ = false;
  std::thread thread_;
};

struct Operands {
  torch::Tensor h, e, ds;  // [B, d], [N, d], [B, N]
  torch::Tensor s, dh, dh2, de;
};

void whole(Operands& o) {
  torch::mm_out(o.s, o.h, o.e.t());
  torch::mm_out(o.dh, o.ds, o.e);
  torch::mm_out(o.de, o.ds.t(), o.h);
}

void halves(Operands& o, Helper& helper) {
  const auto n = o.e.size(0);
  // Half k (0: items [0, n/2), 1: the rest) of t along its catalogue dimension `dim`.
  auto half = [n](const torch::Tensor& t, std::int64_t dim, int k) {
    return t.narrow(dim, k == 0 ? 0 : n / 2, k == 0 ? n / 2 : n - n / 2);
  };
  auto both_halves = [&](const std::function<void(int)>& product) {
    helper.both([&] { product(0); }, [&] { product(1); });
  };
  both_halves([&](int k) {
    auto s = half(o.s, 1, k);
    torch::mm_out(s, o.h, half(o.e, 0, k).t());
  });
  both_halves([&](int k) {
    auto dh = k == 0 ? o.dh : o.dh2;
    torch::mm_out(dh, half(o.ds, 1, k), half(o.e, 0, k));
  });
  o.dh.add_(o.dh2);
  both_halves([&](int k) {
    auto de = half(o.de, 0, k);
    torch::mm_out(de, half(o.ds, 1, k).t(), o.h);
  });
}

}  // namespace

int main(int argc, char** argv) {
  llm4sbr::ensure_fast_blas(argv);
  CLI::App app{"The floor's three scoring products: OpenBLAS's threads, one thread, and halves on two threads"};
  std::int64_t batch = 100, dim = 100, items = 12101;
  int reps = 100, rounds = 5;
  app.add_option("--batch", batch, "sessions per batch (B)")->capture_default_str();
  app.add_option("--dim", dim, "hidden size (d)")->capture_default_str();
  app.add_option("--items", items, "catalogue size (N)")->capture_default_str();
  add_repetition_options(app, reps, "steps per round and way", rounds, "rounds, each timing the three ways in turn");
  CLI11_PARSE(app, argc, argv);
  const auto info = llm4sbr::configure_runtime();
  if (info.blas_threads < 2) {
    fmt::print("OpenBLAS runs {} thread(s) here: nothing to compare\n", info.blas_threads);
    return 0;
  }
  torch::NoGradGuard no_grad;
  torch::manual_seed(1);
  Operands o{torch::randn({batch, dim}), torch::randn({items, dim}), torch::randn({batch, items}),
             torch::empty({batch, items}), torch::empty({batch, dim}), torch::empty({batch, dim}),
             torch::empty({items, dim})};
  Helper helper;
  std::vector<double> own, one, split;
  for (int r = 0; r < rounds; ++r) {
    own.push_back(1e6 * mean_seconds([&] { whole(o); }, reps));
    {
      const llm4sbr::ScopedBlasThreads single(1);
      one.push_back(1e6 * mean_seconds([&] { whole(o); }, reps));
      split.push_back(1e6 * mean_seconds([&] { halves(o, helper); }, reps));
    }
  }
  // The halves compute the same products: S and dE element for element, dH as two partial sums added.
  whole(o);
  const auto s = o.s.clone(), dh = o.dh.clone(), de = o.de.clone();
  {
    const llm4sbr::ScopedBlasThreads single(1);
    halves(o, helper);
  }
  auto relative = [](const torch::Tensor& a, const torch::Tensor& b) {
    return (a - b).abs().max().item<double>() / b.abs().max().item<double>();
  };
  const double diff = std::max({relative(o.s, s), relative(o.dh, dh), relative(o.de, de)});
  fmt::print("three scoring products, B {} d {} N {}: OpenBLAS on {} threads {:.0f} us, on 1 thread {:.0f} us, halves "
             "on 2 threads of 1 {:.0f} us (medians of {} rounds of {} steps); halves against whole: largest "
             "difference {:.1e} of the largest value\n",
             batch, dim, items, info.blas_threads, median(own), median(one), median(split), rounds, reps, diff);
  fmt::print("command: build/bin/scoring_threads_bench --batch {} --dim {} --items {} --reps {} --rounds {}\n", batch,
             dim, items, reps, rounds);
  return 0;
}
