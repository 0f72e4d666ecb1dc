// Load on a running `llm4sbr serve`: real sessions (the prefixes of a prepared dataset's test split, as raw
// item ids) for a fixed time, then requests/s and latency percentiles, two ways:
// - closed loop (--clients): N clients each send their next request when the previous answer arrives; at 1
//   client the idle latency, at more the saturation rate;
// - open loop (--rates): requests sent on a fixed schedule (request i at i/rate seconds) by a pool of
//   connections, latency measured from the scheduled time, so that a server falling behind shows its queue in
//   the percentiles instead of slowing the load down (no coordinated omission).
//
//   build/bin/llm4sbr serve --run runs/beauty --port 8080 &
//   build/bin/serve_bench --port 8080 --data runs/beauty/stages/prepare-<key> --clients 1,4,16 --rates 500,1000
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "llm4sbr/data/io.hpp"

namespace {

struct Load {
  double requests_per_second = 0;
  std::vector<double> latencies_ms;  ///< sorted
  std::int64_t errors = 0;
  std::vector<std::string> error_reasons;  ///< the first few
  std::vector<double> late_ms;             ///< open loop: how late each request was sent after its due time, sorted
};

double percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  return sorted[std::min(sorted.size() - 1, static_cast<std::size_t>(p * static_cast<double>(sorted.size())))];
}

// Requests that got no answer: counted apart (not in the rate or the latencies); the first few reasons are
// printed under the table, so that an error count can be told apart (a lost connection, a 5xx).
struct Errors {
  std::atomic<std::int64_t> count{0};
  std::mutex mutex;
  std::vector<std::string> first;

  void add(const httplib::Result& res) {
    ++count;
    std::lock_guard<std::mutex> lock(mutex);
    if (first.size() < 3)
      first.push_back(res ? fmt::format("HTTP {}: {}", res->status, res->body.substr(0, 200))
                          : "no answer: " + httplib::to_string(res.error()));
  }
};

// The answers of every sender since `start`: rate and sorted latencies.
Load collect(const std::vector<std::vector<double>>& latencies, Errors& errors,
             std::chrono::steady_clock::time_point start) {
  Load load;
  for (const auto& l : latencies) load.latencies_ms.insert(load.latencies_ms.end(), l.begin(), l.end());
  std::sort(load.latencies_ms.begin(), load.latencies_ms.end());
  load.requests_per_second = static_cast<double>(load.latencies_ms.size()) /
                             std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  load.errors = errors.count;
  load.error_reasons = errors.first;
  return load;
}

Load run_clients(const std::string& host, int port, const std::vector<std::string>& bodies, int clients, double seconds) {
  std::vector<std::vector<double>> latencies(static_cast<std::size_t>(clients));
  Errors errors;
  const auto start = std::chrono::steady_clock::now();
  const auto end = start + std::chrono::duration<double>(seconds);
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c)
    threads.emplace_back([&, c] {
      httplib::Client client(host, port);
      client.set_keep_alive(true);
      client.set_tcp_nodelay(true);
      for (std::size_t i = static_cast<std::size_t>(c); std::chrono::steady_clock::now() < end; i += static_cast<std::size_t>(clients)) {
        const auto t0 = std::chrono::steady_clock::now();
        auto res = client.Post("/v1/recommend", bodies[i % bodies.size()], "application/json");
        if (!res || res->status != 200) {
          errors.add(res);
          continue;
        }
        latencies[static_cast<std::size_t>(c)].push_back(
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      }
    });
  for (auto& t : threads) t.join();
  return collect(latencies, errors, start);
}

// Open loop: request i is due at start + i / rate; a free connection sends it then (or as soon as one is free).
Load run_rate(const std::string& host, int port, const std::vector<std::string>& bodies, double rate, double seconds,
              int connections) {
  const auto total = static_cast<std::int64_t>(rate * seconds);
  std::vector<std::vector<double>> latencies(static_cast<std::size_t>(connections)), late(latencies.size());
  std::atomic<std::int64_t> next{0};
  Errors errors;
  const auto start = std::chrono::steady_clock::now() + std::chrono::milliseconds(100);
  std::vector<std::thread> threads;
  for (int c = 0; c < connections; ++c)
    threads.emplace_back([&, c] {
      httplib::Client client(host, port);
      client.set_keep_alive(true);
      client.set_tcp_nodelay(true);
      for (std::int64_t i = next++; i < total; i = next++) {
        const auto due = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                     std::chrono::duration<double>(static_cast<double>(i) / rate));
        std::this_thread::sleep_until(due);
        late[static_cast<std::size_t>(c)].push_back(
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - due).count());
        auto res = client.Post("/v1/recommend", bodies[static_cast<std::size_t>(i) % bodies.size()], "application/json");
        if (!res || res->status != 200) {
          errors.add(res);
          continue;
        }
        latencies[static_cast<std::size_t>(c)].push_back(
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - due).count());
      }
    });
  for (auto& t : threads) t.join();
  auto load = collect(latencies, errors, start);
  for (const auto& l : late) load.late_ms.insert(load.late_ms.end(), l.begin(), l.end());
  std::sort(load.late_ms.begin(), load.late_ms.end());
  return load;
}

// A row of the table; the run's first error reasons go to `notes`, printed after the table.
void print_row(const std::string& label, const Load& load, std::vector<std::string>& notes) {
  fmt::print("| {} | {:.0f} | {:.2f} | {:.2f} | {:.2f} | {} |\n", label, load.requests_per_second,
             percentile(load.latencies_ms, 0.5), percentile(load.latencies_ms, 0.9), percentile(load.latencies_ms, 0.99),
             load.errors);
  for (const auto& reason : load.error_reasons) notes.push_back(fmt::format("{}: {}", label, reason));
  // The part of the latency spent before sending: the sender waking up late, or every connection busy.
  if (!load.late_ms.empty())
    notes.push_back(fmt::format("{}: sent after its due time by p50 {:.2f} ms, p99 {:.2f} ms", label,
                                percentile(load.late_ms, 0.5), percentile(load.late_ms, 0.99)));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"requests/s and latency of a running `llm4sbr serve` on real test sessions"};
  std::string host = "127.0.0.1", data;
  int port = 8080, k = 20;
  bool explain = true;
  double seconds = 10;
  std::vector<int> clients{1, 4, 16};
  std::vector<double> rates;
  // Not more: Debian's cpp-httplib (0.11) wakes the thread of every kept-alive connection each ~11 ms while it
  // waits for the next request (a 10 ms poll, then a 1 ms sleep); at 64 connections that was ~8 % of the
  // server's CPU at 1,500 requests/s. 16 still hold that rate (~5 requests in flight), and a request that
  // waits for a free connection is late from its scheduled time, so its wait is in the latency.
  int connections = 16;
  app.add_option("--host", host)->capture_default_str();
  app.add_option("--port", port)->capture_default_str();
  app.add_option("--data", data, "prepared dataset (its test split's sessions are sent)")->required();
  app.add_option("--clients", clients, "closed-loop clients, one run each (0: no closed-loop run)")
      ->delimiter(',')
      ->check(CLI::Range(0, 100000));
  app.add_option("--rates", rates, "open-loop request rates (requests/s), one run each")
      ->delimiter(',')
      ->check(CLI::Range(1.0, 1e7));
  app.add_option("--connections", connections, "open loop: connections sending on schedule")
      ->capture_default_str()
      ->check(CLI::Range(1, 10000));
  app.add_option("--seconds", seconds, "seconds a run")->capture_default_str()->check(CLI::Range(0.1, 86400.0));
  std::string dump;
  app.add_option("--dump-bodies", dump, "write the request bodies to this file, one a line, and exit (for wrk)");
  app.add_option("--k", k)->capture_default_str();
  app.add_option("--explain", explain)->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  const auto ds = llm4sbr::data::read_prepared(data);
  std::vector<std::string> bodies;
  for (const auto& s : ds.test) {
    nlohmann::json items = nlohmann::json::array();
    for (const auto id : s.prefix) items.push_back(ds.items[static_cast<std::size_t>(id - 1)].raw_id);
    bodies.push_back(nlohmann::json{{"items", items}, {"k", k}, {"explain", explain}}.dump());
  }
  if (!dump.empty()) {
    std::ofstream out(dump);
    for (const auto& b : bodies) out << b << '\n';
    if (!out.flush()) throw std::runtime_error("cannot write " + dump);
    return 0;
  }
  fmt::print("{} test sessions of {}, k = {}, explain = {}, {} s a run\n\n", bodies.size(), ds.name, k, explain, seconds);
  fmt::print("| load | requests/s | p50 ms | p90 ms | p99 ms | errors |\n|---|---:|---:|---:|---:|---:|\n");
  std::vector<std::string> notes;
  for (const int c : clients) {
    if (c == 0) continue;  // `--clients 0` (or an empty value, which CLI11 reads as 0): open loop only
    print_row(fmt::format("{} closed-loop client{}", c, c == 1 ? "" : "s"), run_clients(host, port, bodies, c, seconds), notes);
  }
  for (const double r : rates)
    print_row(fmt::format("open loop, {:.0f} requests/s offered", r), run_rate(host, port, bodies, r, seconds, connections),
              notes);
  if (!notes.empty()) fmt::print("\nerrors (the first of each run) and the open loop's sending delays:\n");
  for (const auto& note : notes) fmt::print("- {}\n", note);
  return 0;
}
