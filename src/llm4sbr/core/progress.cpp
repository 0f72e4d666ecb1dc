#include "llm4sbr/core/progress.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>

namespace llm4sbr {

namespace {

bool quiet_bars = false;

// Asked once: the service makes bars for a request's one or two texts, and isatty is a system call (0.8 % of a
// served request's CPU in perf on this virtual machine). A process that later points stderr elsewhere keeps
// the first answer.
bool stderr_is_tty() {
  static const bool tty = isatty(STDERR_FILENO) != 0;
  return tty;
}

}  // namespace

void ProgressBar::set_quiet(bool quiet) { quiet_bars = quiet; }

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  if (seconds < 60) return fmt::format("{:.1f}s", seconds);
  auto s = static_cast<long long>(seconds);
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}h{:02}m", s / 3600, (s % 3600) / 60);
}

ProgressBar::ProgressBar(std::string label, std::int64_t total, std::string unit)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(total),
      tty_(stderr_is_tty()),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

ProgressBar::~ProgressBar() {
  if (!finished_) finish();
}

double ProgressBar::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void ProgressBar::tick(std::int64_t n, const std::string& extra) {
  done_ += n;
  auto now = std::chrono::steady_clock::now();
  if (tty_) {
    // Redrawing more than ~10 times a second costs more than it tells.
    if (now - last_draw_ < std::chrono::milliseconds(100) && done_ < total_) return;
    last_draw_ = now;
    draw(false, extra);
    return;
  }
  if (total_ <= 0) return;
  int decile = static_cast<int>(10 * done_ / total_);
  if (decile > last_decile_ && decile < 10) {
    last_decile_ = decile;
    draw(false, extra);
  }
}

void ProgressBar::finish(const std::string& extra) {
  if (finished_) return;
  finished_ = true;
  draw(true, extra);
}

void ProgressBar::draw(bool final_line, const std::string& extra) {
  if (quiet_bars) return;
  double elapsed = elapsed_seconds();
  double rate = elapsed > 0 ? done_ / elapsed : 0.0;
  std::string bar;
  std::string count;
  std::string eta;
  if (total_ > 0) {
    constexpr int kWidth = 24;
    double frac = std::min(1.0, static_cast<double>(done_) / total_);
    int full = static_cast<int>(frac * kWidth);
    bar = fmt::format("{:3.0f}% |{}{}| ", 100 * frac, std::string(full, '#'), std::string(kWidth - full, ' '));
    count = fmt::format("{}/{}", done_, total_);
    eta = final_line ? fmt::format(" in {}", format_duration(elapsed))
                     : fmt::format(" ETA {}", rate > 0 ? format_duration((total_ - done_) / rate) : "?");
  } else {
    count = fmt::format("{}", done_);
    eta = fmt::format(" {}", format_duration(elapsed));
  }
  std::string line = fmt::format("{} {}{} [{:.1f} {}/s{}]{}{}", label_, bar, count, rate, unit_, eta,
                                 extra.empty() ? "" : " ", extra);
  if (tty_) {
    std::fprintf(stderr, "\r\033[K%s%s", line.c_str(), final_line ? "\n" : "");
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fflush(stderr);
}

}  // namespace llm4sbr
