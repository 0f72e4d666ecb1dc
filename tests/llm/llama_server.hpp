// Test harness: a real llama.cpp `llama-server` (built from the same source) on 127.0.0.1, on a port the
// kernel picks (--port 0: no race between choosing a free port and binding it), started and killed by PID.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <regex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "test_support.hpp"

namespace llm4sbr::testing {

/// Skips the current test when no llama-server binary was built or found.
#define LLM4SBR_REQUIRE_LLAMA_SERVER()                                                            \
  do {                                                                                            \
    if (std::string(LLM4SBR_LLAMA_SERVER).empty() || !std::filesystem::exists(LLM4SBR_LLAMA_SERVER)) \
      GTEST_SKIP() << "llama-server not available: " << LLM4SBR_LLAMA_SERVER;                     \
  } while (0)

class LlamaServer {
 public:
  /// Starts `llama-server -m model --host 127.0.0.1 --port 0 extra...`, its output in `log_file`, and waits
  /// until it listens and /health answers 200. Throws std::runtime_error with the log's tail otherwise.
  LlamaServer(const std::filesystem::path& model, const std::vector<std::string>& extra, std::filesystem::path log_file)
      : log_(std::move(log_file)) {
    std::vector<std::string> args = {LLM4SBR_LLAMA_SERVER, "-m", model.string(), "--host", "127.0.0.1", "--port", "0",
                                     "--no-webui", "--threads-http", "4"};
    args.insert(args.end(), extra.begin(), extra.end());
    pid_ = fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) exec_server(args, log_);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(90);
    while (std::chrono::steady_clock::now() < deadline) {
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error("llama-server exited at start:\n" + log_tail());
      }
      if (port_ == 0) port_ = port_from_log();
      if (port_ != 0 && healthy()) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    stop();
    throw std::runtime_error("llama-server did not become healthy within 90 s:\n" + log_tail());
  }
  ~LlamaServer() { stop(); }
  LlamaServer(const LlamaServer&) = delete;
  LlamaServer& operator=(const LlamaServer&) = delete;

  /// Kills the server (SIGKILL by default: a crash, not a shutdown) and reaps it. Idempotent.
  void stop(int sig = SIGKILL) {
    if (pid_ <= 0) return;
    kill(pid_, sig);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::string log_tail(std::size_t chars = 3000) const {
    const std::string text = read_text(log_);
    return text.size() > chars ? text.substr(text.size() - chars) : text;
  }

 private:
  [[noreturn]] static void exec_server(const std::vector<std::string>& args, const std::filesystem::path& log) {
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
    }
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }

  // The server logs "listening on http://127.0.0.1:PORT" once bound.
  int port_from_log() const {
    std::smatch m;
    const std::string text = read_text(log_);
    static const std::regex re("listening on http://127\\.0\\.0\\.1:([0-9]+)");
    return std::regex_search(text, m, re) ? std::stoi(m[1]) : 0;
  }

  bool healthy() const {
    httplib::Client client("127.0.0.1", port_);
    client.set_connection_timeout(1);
    auto res = client.Get("/health");
    return res && res->status == 200;
  }

  std::filesystem::path log_;
  pid_t pid_ = -1;
  int port_ = 0;
};

/// The chat server of the tests: the tiny Qwen2 model, greedy, 4 slots, 1 thread (the machine has 2 cores
/// and the tests run two at a time).
inline std::vector<std::string> tiny_chat_server_args() { return {"-np", "4", "-c", "8192", "-t", "1", "-tb", "1"}; }

}  // namespace llm4sbr::testing
