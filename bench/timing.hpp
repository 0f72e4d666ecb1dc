// Timing helpers shared by the benches: the mean time of a step over repetitions, and the median of rounds (one
// slow moment of a shared machine moves a mean, not a median).
#pragma once

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

/// The middle value of v (the upper one of the two middle values for an even count); v must not be empty.
inline double median(std::vector<double> v) {
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
  return v[v.size() / 2];
}

/// Seconds a call of step() takes, the mean of `reps` calls after `warmup` untimed ones.
template <typename Step>
double mean_seconds(Step&& step, int reps, int warmup = 3) {
  for (int i = 0; i < warmup; ++i) step();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; ++i) step();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
}

/// The --reps and --rounds options of a microbenchmark (timed calls a round, rounds), both at least 1:
/// mean_seconds divides by reps, and median needs a round.
inline void add_repetition_options(CLI::App& app, int& reps, const std::string& reps_help, int& rounds,
                                   const std::string& rounds_help) {
  app.add_option("--reps", reps, reps_help)->check(CLI::Range(1, 1000000))->capture_default_str();
  app.add_option("--rounds", rounds, rounds_help)->check(CLI::Range(1, 1000000))->capture_default_str();
}
