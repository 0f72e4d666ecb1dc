// A progress bar for long work: done/total, rate, elapsed time and ETA on one line of stderr.
// On a terminal it redraws in place; otherwise (CI logs, files) it prints a line every 10 %.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace llm4sbr {

class ProgressBar {
 public:
  /// `label` is shown before the bar, `unit` after the rate ("samples/s"). total = 0 means unknown.
  ProgressBar(std::string label, std::int64_t total, std::string unit = "it");
  ~ProgressBar();

  /// Advances by n units; `extra` is printed at the end of the line (e.g. the running loss).
  void tick(std::int64_t n = 1, const std::string& extra = {});
  /// Prints the final line (100 %, total time, mean rate). Called by the destructor if not called.
  void finish(const std::string& extra = {});

  double elapsed_seconds() const;
  /// Silences every bar of this process (the other ranks of a training job: rank 0 shows the progress).
  static void set_quiet(bool quiet);
  std::int64_t done() const { return done_; }

 private:
  void draw(bool final_line, const std::string& extra);

  std::string label_;
  std::string unit_;
  std::int64_t total_;
  std::int64_t done_ = 0;
  bool tty_;
  bool finished_ = false;
  int last_decile_ = -1;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

/// Seconds from `t0` to now on the steady clock.
inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// "1h02m", "3m05s", "12.3s": a duration a person reads at a glance.
std::string format_duration(double seconds);

}  // namespace llm4sbr
