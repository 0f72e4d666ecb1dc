// The service's work per request without HTTP: the Service that `llm4sbr serve` builds, answering the test
// sessions of a prepared dataset in process, `--batch` sessions a call (1: one request at a time, as a lone
// client; more: what the micro-batcher merges under load), each answer written out as the server would. It
// isolates the model, the intents and the answer's JSON from the network and the threads, so that two builds
// can be compared on this noisy machine: run them one after the other, several times.
//
//   build/bin/recommend_bench --checkpoint runs/beauty/llm4sbr-sr-gnn-titles/best.pt \
//       --data runs/beauty/stages/prepare-<key> [--batch 1] [--requests 3000] [--intent-source auto|titles|none]
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/core/progress.hpp"
#include "llm4sbr/core/runtime.hpp"
#include "llm4sbr/data/io.hpp"
#include "llm4sbr/serve/service.hpp"
#include "llm4sbr/train/checkpoint.hpp"
#include "llm4sbr/train/device.hpp"

using namespace llm4sbr;

namespace {

std::vector<serve::RecommendRequest> test_requests(const data::PreparedDataset& ds, std::int64_t k, bool explain) {
  std::vector<serve::RecommendRequest> requests;
  for (const auto& s : ds.test) {
    serve::RecommendRequest r;
    for (const auto id : s.prefix) r.items.push_back(ds.items[static_cast<std::size_t>(id - 1)].raw_id);
    r.k = k;
    r.explain = explain;
    requests.push_back(std::move(r));
  }
  return requests;
}

/// CPU seconds of the process: unlike the wall clock, not counting time the machine gave to other programs.
double cpu_seconds_now() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
}

}  // namespace

int main(int argc, char** argv) {
  ensure_fast_blas(argv);
  CLI::App app{"the service's work per request, in process: model, intents and the answer's JSON, no HTTP"};
  std::string checkpoint, data;
  std::int64_t batch = 1, n_requests = 3000, k = 20;
  bool explain = true;
  serve::ServeOptions service_options;
  app.add_option("--checkpoint", checkpoint, "a best.pt with checkpoint.yaml beside it")->required();
  app.add_option("--data", data, "prepared dataset (its test split's sessions are answered)")->required();
  app.add_option("--batch", batch, "sessions a call of Service::recommend")->check(CLI::Range(1, 100000))->capture_default_str();
  app.add_option("--requests", n_requests, "sessions answered (after 200 to warm up)")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--k", k)->capture_default_str();
  app.add_option("--explain", explain)->capture_default_str();
  app.add_option("--intent-source", service_options.intent_source, "auto, titles or none")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  set_blas_threads(1);  // as `llm4sbr serve`
  configure_runtime(0);
  ProgressBar::set_quiet(true);
  train::LoadOptions load;
  load.text = true;
  const serve::Service service(train::load_trained(checkpoint, torch::Device(torch::kCPU), std::move(load)), service_options);
  const auto ds = data::read_prepared(data);
  const auto requests = test_requests(ds, k, explain);
  if (requests.empty()) throw std::runtime_error(data + ": no test sessions");

  auto answer = [&](std::size_t first) {
    std::vector<serve::RecommendRequest> calls;
    for (std::int64_t i = 0; i < batch; ++i) calls.push_back(requests[(first + static_cast<std::size_t>(i)) % requests.size()]);
    std::size_t bytes = 0;
    for (const auto& a : service.recommend(calls)) bytes += a.dump().size();
    return bytes;
  };
  for (std::size_t i = 0; i < 200; i += static_cast<std::size_t>(batch)) answer(i);
  std::vector<double> per_request_us;
  std::size_t bytes = 0;
  const auto start = std::chrono::steady_clock::now();
  const double cpu_start = cpu_seconds_now();
  for (std::size_t i = 0; i < static_cast<std::size_t>(n_requests); i += static_cast<std::size_t>(batch)) {
    const auto t0 = std::chrono::steady_clock::now();
    bytes += answer(200 + i);
    per_request_us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() /
                             static_cast<double>(batch));
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double cpu_seconds = cpu_seconds_now() - cpu_start;
  const double answered = static_cast<double>(per_request_us.size() * static_cast<std::size_t>(batch));
  fmt::print("| model | intents | batch | requests | CPU µs a request | wall µs (mean) | p50 | p90 | answers/s | bytes an answer |\n");
  fmt::print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  fmt::print("| {} | {} | {} | {:.0f} | {:.0f} | {:.0f} | {:.0f} | {:.0f} | {:.0f} | {:.0f} |\n", service.model_label(),
             service_options.intent_source, batch, answered, cpu_seconds * 1e6 / answered, seconds * 1e6 / answered,
             percentile(per_request_us, 0.5),
             percentile(per_request_us, 0.9), answered / seconds, static_cast<double>(bytes) / answered);
  fmt::print("\n(build/bin/recommend_bench --checkpoint {} --data {} --batch {} --requests {} --intent-source {})\n",
             checkpoint, data, batch, n_requests, service_options.intent_source);
  return 0;
}
