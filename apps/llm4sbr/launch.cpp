#include "launch.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "llm4sbr/core/error.hpp"
#include "llm4sbr/core/progress.hpp"
#include "llm4sbr/train/distributed.hpp"

namespace llm4sbr::cli {

namespace {

std::vector<std::string>& arguments() {
  static std::vector<std::string> args;
  return args;
}

// The arguments a rank runs: ours without --nproc (a rank must not launch again).
std::vector<std::string> rank_arguments() {
  std::vector<std::string> out;
  const auto& args = arguments();
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--nproc") {
      ++i;
      continue;
    }
    if (args[i].rfind("--nproc=", 0) == 0) continue;
    out.push_back(args[i]);
  }
  return out;
}

// A TCP port that is free now on 127.0.0.1 (the kernel picks it; rank 0's store binds it a moment later).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    if (fd >= 0) ::close(fd);
    throw Error(fmt::format("--nproc: no free TCP port on 127.0.0.1: {}", std::strerror(errno)));
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

volatile std::sig_atomic_t pending_signal = 0;
extern "C" void remember_signal(int sig) { pending_signal = sig; }

// Starts rank `rank` of `world` as a child that dies with this process.
pid_t start_rank(int rank, int world, int port, const std::vector<std::string>& args) {
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) throw Error(fmt::format("--nproc: cannot start rank {}: {}", rank, std::strerror(errno)));
  if (pid > 0) return pid;
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(1);
  // The cores shared out, unless the user chose (OMP_NUM_THREADS alone also sets OpenBLAS's, which LibTorch uses).
  const char* omp = std::getenv("OMP_NUM_THREADS");
  const auto threads = omp && *omp ? std::string(omp)
                                   : std::to_string(std::max(1u, std::thread::hardware_concurrency() / static_cast<unsigned>(world)));
  for (const auto& [name, value] :
       {std::pair{"RANK", std::to_string(rank)}, {"LOCAL_RANK", std::to_string(rank)}, {"WORLD_SIZE", std::to_string(world)},
        {"LOCAL_WORLD_SIZE", std::to_string(world)}, {"MASTER_ADDR", std::string("127.0.0.1")},
        {"MASTER_PORT", std::to_string(port)}})
    ::setenv(name, value.c_str(), 1);
  ::setenv("OMP_NUM_THREADS", threads.c_str(), 0);  // the user's own choice stays
  ::setenv("OPENBLAS_NUM_THREADS", threads.c_str(), 0);
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  ::execv("/proc/self/exe", argv.data());
  ::_exit(127);
}

std::string describe(int status) {
  if (WIFSIGNALED(status))
    return fmt::format("was killed by signal {} ({}), so it could not say why", WTERMSIG(status), strsignal(WTERMSIG(status)));
  return fmt::format("exited with code {} (its error is above)", WEXITSTATUS(status));
}

// $MASTER_PORT when the user set it, else a free port.
int rendezvous_port() {
  const char* port = std::getenv("MASTER_PORT");
  if (!port || !*port) return free_port();
  char* end = nullptr;
  const long p = std::strtol(port, &end, 10);
  if (*end != '\0' || p < 1 || p > 65535) throw ConfigError(fmt::format("$MASTER_PORT = '{}' is not a port", port));
  return static_cast<int>(p);
}

}  // namespace

void remember_arguments(int argc, char** argv) { arguments().assign(argv, argv + argc); }

void add_distributed(CLI::App* cmd, Options& o) {
  cmd->add_option("--nproc", o.nproc,
                  "train with N processes on this machine (data-parallel, Gloo; rendezvous on $MASTER_PORT or a free "
                  "port). Across machines, start each rank with torchrun, or with RANK, WORLD_SIZE, LOCAL_RANK, "
                  "MASTER_ADDR and MASTER_PORT set (README, \"Training on several processes or machines\")")
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--dist-timeout", o.dist_timeout_s,
                  "seconds a rank of a training job waits for the others (to join, and in every collective) before it fails")
      ->check(CLI::Range(1, 7 * 24 * 3600))
      ->capture_default_str();
}

bool launch_ranks(const Options& o) {
  if (o.nproc <= 1) return false;
  if (const char* world = std::getenv("WORLD_SIZE"); world && std::string(world) != "1")
    throw ConfigError(fmt::format("--nproc {}: this process is already a rank of a job (WORLD_SIZE = {}); start the "
                                  "job either with --nproc or with torchrun, not both",
                                  o.nproc, world));
  const int port = rendezvous_port();
  const auto args = rank_arguments();
  spdlog::info("launching {} ranks on this machine (Gloo, rendezvous at 127.0.0.1:{})", o.nproc, port);
  if (static_cast<unsigned>(o.nproc) > std::thread::hardware_concurrency())
    spdlog::warn("--nproc {} on {} cores: the ranks will share cores and run slower than fewer would", o.nproc,
                 std::thread::hardware_concurrency());
  std::signal(SIGINT, remember_signal);
  std::signal(SIGTERM, remember_signal);
  std::vector<pid_t> pids;
  for (int r = 0; r < o.nproc; ++r) pids.push_back(start_rank(r, o.nproc, port, args));

  int failed_rank = -1, failed_status = 0, alive = o.nproc, interrupted = 0;
  long sweep = 0, failure_sweep = -1;  // a sweep: the ranks reaped between two waits
  std::chrono::steady_clock::time_point term_at{}, kill_at{};
  const auto signal_alive = [&](int sig) {
    for (const auto pid : pids)
      if (pid > 0) ::kill(pid, sig);
  };
  while (alive > 0) {
    if (const int sig = pending_signal; sig != 0) {
      interrupted = sig;
      signal_alive(sig);
      pending_signal = 0;
    }
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    const auto now = std::chrono::steady_clock::now();
    if (pid <= 0) {
      ++sweep;
      if (failed_rank >= 0 && now >= term_at) signal_alive(SIGTERM), term_at = kill_at;
      if (failed_rank >= 0 && now >= kill_at) signal_alive(SIGKILL);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    const auto it = std::find(pids.begin(), pids.end(), pid);
    if (it == pids.end()) continue;
    const int rank = static_cast<int>(it - pids.begin());
    *it = -1;
    --alive;
    const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    // Among the ranks that failed in the first failure's sweep, one killed by a signal is named: the others
    // exited with an error because they lost it at their next collective (waitpid's order among them is not
    // the order they stopped in).
    const bool first_failure = failed_rank < 0;
    const bool signalled_first = !first_failure && sweep == failure_sweep && WIFSIGNALED(status) &&
                                 !WIFSIGNALED(failed_status);
    if (!ok && (first_failure || signalled_first) && !interrupted) {
      failed_rank = rank, failed_status = status, failure_sweep = sweep;
      // The others usually notice the lost peer at once and say so; those that do not are stopped.
      term_at = now + std::chrono::seconds(3), kill_at = term_at + std::chrono::seconds(10);
      if (alive > 0) spdlog::error("rank {} {}: stopping the other ranks", rank, describe(status));
    }
  }
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  if (interrupted) {  // the user stopped the job: not a failure
    spdlog::warn("interrupted ({}): run the same command again to resume from the last finished epoch", strsignal(interrupted));
    spdlog::default_logger()->flush();
    std::exit(128 + interrupted);
  }
  if (failed_rank >= 0)
    throw Error(fmt::format("the training job failed: rank {} of {} was the first to stop: it {}. A rank that fails "
                            "because another hung or died names it in its own error",
                            failed_rank, o.nproc, describe(failed_status)));
  return true;
}

void join_job(const Options& o, const Config& cfg) {
  auto& job = train::distributed();
  if (!job.join_from_environment(std::chrono::seconds(o.dist_timeout_s))) return;
  spdlog::set_pattern(fmt::format("[%H:%M:%S] [rank {}] %^%l%$ %v", job.rank()));
  if (!job.is_main()) {
    ProgressBar::set_quiet(true);
    if (spdlog::get_level() < spdlog::level::warn) spdlog::set_level(spdlog::level::warn);
  }
  // Every rank must train the same thing; paths, threads and devices may differ between machines.
  Config same(YAML::Clone(cfg.root()));
  for (const auto* key : {"paths", "threads", "device"}) same.set_node(key, YAML::Node());
  job.check_same("settings", same.dump());
}

}  // namespace llm4sbr::cli
