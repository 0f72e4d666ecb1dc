// Running the CLI as a child process with a fault: a cap on the size of any file it writes (RLIMIT_FSIZE, the
// kernel's `ulimit -f`), so that writes fail part-way exactly like on a full disk, for root and non-root alike.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#ifndef LLM4SBR_CHILD_TIMEOUT_SCALE
#define LLM4SBR_CHILD_TIMEOUT_SCALE 1
#endif

namespace llm4sbr::testing {

/// How many times a child's time limit is stretched in this build: the limits catch hangs, and the sanitized
/// build (tests/CMakeLists.txt sets 4) runs the CLI 3-5 times slower.
constexpr unsigned kChildTimeoutScale = LLM4SBR_CHILD_TIMEOUT_SCALE;

struct ProcessResult {
  int exit_code = -1;  ///< the exit status, or -1 when it did not exit (killed by a signal, e.g. the timeout)
  int signal = 0;      ///< the signal that ended it, if any
  std::string output;  ///< stdout and stderr together
};

/// Runs `argv` (argv[0] is a path) with `env` added to the environment, in `cwd`. Every file it writes is capped
/// at `file_size_limit` bytes (< 0: no cap), as `ulimit -f` does: SIGXFSZ keeps its default action (the end of
/// the process), so a program that is to fail with an error naming the file must ignore it itself. The output
/// comes through a pipe, which the cap does not touch, so the error message is never lost. The child is killed (SIGALRM) after `timeout_s` seconds (times kChildTimeoutScale).
inline ProcessResult run_with_file_size_limit(const std::vector<std::string>& argv, std::int64_t file_size_limit,
                                              unsigned timeout_s, const std::string& cwd = ".",
                                              const std::vector<std::string>& env = {}) {
  int fds[2];
  ProcessResult result;
  if (::pipe(fds) != 0) return result;
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(fds[1], 1);
    ::dup2(fds[1], 2);
    ::close(fds[0]);
    ::close(fds[1]);
    if (::chdir(cwd.c_str()) != 0) ::_exit(126);
    for (const auto& kv : env) ::putenv(const_cast<char*>(kv.c_str()));
    ::signal(SIGXFSZ, SIG_DFL);  // as a shell leaves it: llm4sbr ignores it, so its writes fail with EFBIG
    if (file_size_limit >= 0) {
      const rlimit cap{static_cast<rlim_t>(file_size_limit), static_cast<rlim_t>(file_size_limit)};
      if (::setrlimit(RLIMIT_FSIZE, &cap) != 0) ::_exit(126);
    }
    ::alarm(timeout_s * kChildTimeoutScale);  // a pending alarm survives exec and ends a hung child
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  char buf[4096];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) result.output.append(buf, static_cast<std::size_t>(n));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result.signal = WTERMSIG(status);
  return result;
}

}  // namespace llm4sbr::testing
