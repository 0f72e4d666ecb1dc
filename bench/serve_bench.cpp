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
#include <stdexcept>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "llm4sbr/data/io.hpp"

namespace {

struct Load {
  double requests_per_second = 0;
  std::vector<double> latencies_ms;  ///< sorted
  std::int64_t errors = 0;
};

double percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  return sorted[std::min(sorted.size() - 1, static_cast<std::size_t>(p * static_cast<double>(sorted.size())))];
}

// The answers of every sender since `start`: rate and sorted latencies.
Load collect(const std::vector<std::vector<double>>& latencies, std::int64_t errors,
             std::chrono::steady_clock::time_point start) {
  Load load;
  for (const auto& l : latencies) load.latencies_ms.insert(load.latencies_ms.end(), l.begin(), l.end());
  std::sort(load.latencies_ms.begin(), load.latencies_ms.end());
  load.requests_per_second = static_cast<double>(load.latencies_ms.size()) /
                             std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  load.errors = errors;
  return load;
}

Load run_clients(const std::string& host, int port, const std::vector<std::string>& bodies, int clients, double seconds) {
  std::vector<std::vector<double>> latencies(static_cast<std::size_t>(clients));
  std::atomic<std::int64_t> errors{0};
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
        if (!res || res->status != 200) {  // not an answer: counted apart, not in the rate or the latencies
          ++errors;
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
  std::vector<std::vector<double>> latencies(static_cast<std::size_t>(connections));
  std::atomic<std::int64_t> next{0}, errors{0};
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
        auto res = client.Post("/v1/recommend", bodies[static_cast<std::size_t>(i) % bodies.size()], "application/json");
        if (!res || res->status != 200) {
          ++errors;
          continue;
        }
        latencies[static_cast<std::size_t>(c)].push_back(
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - due).count());
      }
    });
  for (auto& t : threads) t.join();
  return collect(latencies, errors, start);
}

void print_row(const std::string& label, const Load& load) {
  fmt::print("| {} | {:.0f} | {:.2f} | {:.2f} | {:.2f} | {} |\n", label, load.requests_per_second,
             percentile(load.latencies_ms, 0.5), percentile(load.latencies_ms, 0.9), percentile(load.latencies_ms, 0.99),
             load.errors);
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
  int connections = 64;
  app.add_option("--host", host)->capture_default_str();
  app.add_option("--port", port)->capture_default_str();
  app.add_option("--data", data, "prepared dataset (its test split's sessions are sent)")->required();
  app.add_option("--clients", clients, "closed-loop clients, one run each")->delimiter(',');
  app.add_option("--rates", rates, "open-loop request rates (requests/s), one run each")->delimiter(',');
  app.add_option("--connections", connections, "open loop: connections sending on schedule")->capture_default_str();
  app.add_option("--seconds", seconds, "seconds a run")->capture_default_str();
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
  for (const int c : clients) print_row(fmt::format("{} closed-loop client{}", c, c == 1 ? "" : "s"), run_clients(host, port, bodies, c, seconds));
  for (const double r : rates)
    print_row(fmt::format("open loop, {:.0f} requests/s offered", r), run_rate(host, port, bodies, r, seconds, connections));
  return 0;
}
