// A CLI process running beside the test (ranks of a training job, a server): its output goes to a log file,
// it dies with the test process (PDEATHSIG) and is killed (SIGALRM) after a timeout, so that no test leaves
// a process behind.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "e2e/limited_process.hpp"
#include "test_support.hpp"

namespace llm4sbr::testing {

struct Started {
  pid_t pid = -1;
  std::filesystem::path log;  ///< stdout and stderr
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
};

/// Starts `args` (args[0] a path) in `cwd` with `env` added, output to `log`, killed after `timeout_s` seconds
/// (times kChildTimeoutScale).
inline Started start_process(const std::vector<std::string>& args, const std::vector<std::string>& env,
                             const std::filesystem::path& log, unsigned timeout_s, const std::string& cwd) {
  Started s{::fork(), log};
  if (s.pid != 0) return s;
  const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ::dup2(fd, 1);
  ::dup2(fd, 2);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::chdir(cwd.c_str()) != 0) ::_exit(126);
  for (const auto& kv : env) ::putenv(const_cast<char*>(kv.c_str()));
  ::alarm(timeout_s * kChildTimeoutScale);
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  ::execv(argv[0], argv.data());
  ::_exit(127);
}

struct Finished {
  ProcessResult result;  ///< exit code or signal, and the log
  double seconds = 0;    ///< from start to exit
};

/// Waits for a started process to end.
inline Finished wait_process(const Started& s) {
  int status = 0;
  ::waitpid(s.pid, &status, 0);
  Finished f;
  f.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - s.start).count();
  if (WIFEXITED(status)) f.result.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) f.result.signal = WTERMSIG(status);
  f.result.output = read_text(s.log);
  return f;
}

}  // namespace llm4sbr::testing
