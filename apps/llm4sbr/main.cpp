// llm4sbr: one command line for the whole pipeline. `llm4sbr --help` lists the subcommands; each is one
// run_<command> function in commands_*.cpp, and the options they share are declared once in cli.cpp.
#include <CLI/CLI.hpp>
#include <c10/util/Exception.h>
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <csignal>
#include <vector>

#include "cli.hpp"
#include "launch.hpp"
#include "llm4sbr/core/error.hpp"
#include "llm4sbr/core/runtime.hpp"

using namespace llm4sbr;

namespace {

// Ctrl-C: one line saying that nothing finished is lost, then the default action (the process ends by SIGINT,
// status 130 in a shell). Only async-signal-safe calls. `serve` and the `--nproc` launcher set their own.
extern "C" void on_interrupt(int sig) {
  static const char kLine[] = "\ninterrupted: the finished work is kept; run the same command again to continue\n";
  [[maybe_unused]] const auto n = ::write(STDERR_FILENO, kLine, sizeof kLine - 1);
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

}  // namespace

int main(int argc, char** argv) {
  ensure_fast_blas(argv);
  cli::remember_arguments(argc, argv);
  CLI::App app{"llm4sbr: session-based recommendation enhanced by LLM intent inference (LLM4SBR, arXiv 2402.13840)"};
  app.require_subcommand(1);
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")->capture_default_str();

  std::vector<cli::Command> commands;
  for (auto group : {cli::add_data_commands, cli::add_stage1_commands, cli::add_train_commands, cli::add_serve_commands})
    for (auto& command : group(app)) commands.push_back(std::move(command));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help is a "ParseError" that exits 0; a usage error exits 2 like every other bad input (CLI11's own
    // codes, 105 for a missing folder, say, would read as a crash to a script).
    return app.exit(e) == 0 ? 0 : 2;
  }
  spdlog::set_level(spdlog::level::from_str(log_level));
  spdlog::set_pattern("[%H:%M:%S] %^%l%$ %v");

  std::signal(SIGINT, on_interrupt);
  // A write past the file-size limit (`ulimit -f`) raises SIGXFSZ, which by default kills the process with no
  // word and a temporary file left behind; ignored, the write fails with EFBIG and the error names the file.
  std::signal(SIGXFSZ, SIG_IGN);
  try {
    for (const auto& command : commands)
      if (command.app->parsed()) command.run();
  } catch (const llm4sbr::Error& e) {
    spdlog::error("{}", e.what());
    return 2;
  } catch (const c10::Error& e) {
    spdlog::error("tensor error: {}", e.what_without_backtrace());
    return 3;
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
  return 0;
}
