// The fixture of the service's tests: `llm4sbr serve` as a real process on a free local port, over the
// LLM4SBR(SR-GNN) row of a `llm4sbr run` on a Beauty subset (titles intents), with a real HTTP client.
// A suite derives from ServeFixture and calls start_server (with the serve flags and environment it
// needs) from its SetUpTestSuite.
#pragma once

#include <gtest/gtest.h>
#include <httplib.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <regex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "e2e/background_process.hpp"
#include "test_support.hpp"

namespace llm4sbr::testing {

/// A TCP port free now on 127.0.0.1 (the kernel picks it).
inline int free_port() {
  const int sock = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(sock, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(sock, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    throw std::runtime_error("free_port: cannot bind port 0");
  ::close(sock);
  return ntohs(addr.sin_port);
}

/// A raw TCP connection to 127.0.0.1:port (for clients that misbehave), or -1.
inline int connect_loopback(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) return fd;
  ::close(fd);
  return -1;
}

/// Sends `request` as it is over a raw connection to 127.0.0.1:port and returns what comes back until the server
/// closes the connection or 10 s pass ("" when it cannot connect).
inline std::string raw_exchange(int port, const std::string& request) {
  const int fd = connect_loopback(port);
  if (fd < 0) return "";
  timeval timeout{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  ::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string answer;
  char buf[4096];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) answer.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  return answer;
}

class ServeFixture : public ::testing::Test {
 protected:
  static constexpr unsigned kTimeoutSeconds = 600;

  /// Trains the run (once per test process) on `sessions` Beauty sessions with `run_flags` added (titles
  /// intents unless they say otherwise) and starts `llm4sbr serve --run` on it with `flags` and `env`.
  static void start_server(const std::vector<std::string>& flags = {}, const std::vector<std::string>& env = {},
                           const std::vector<std::string>& run_flags = {}, int sessions = 1500) {
    dir_ = new TempDir;
    std::vector<std::string> run_args{
        LLM4SBR_CLI, "run", "--config", "configs/beauty.yaml", "--out", (*dir_ / "run").string(), "--set",
        "data.max_sessions=" + std::to_string(sessions), "--set", "data.min_item_count=3", "--set",
        "data.iterative_filter=true", "--set", "train.epochs=1", "--set", "threads=1", "--set", "enhance.baseline=false"};
    run_args.insert(run_args.end(), run_flags.begin(), run_flags.end());
    const auto run = run_with_file_size_limit(run_args, -1, kTimeoutSeconds, LLM4SBR_SOURCE_DIR);
    ASSERT_EQ(run.exit_code, 0) << run.output;
    std::vector<std::string> args{LLM4SBR_CLI, "serve", "--run", (*dir_ / "run").string(), "--port", "0",
                                  "--set", "threads=1"};
    args.insert(args.end(), flags.begin(), flags.end());
    server_ = new Started(start_process(args, env, *dir_ / "server.log", kTimeoutSeconds, LLM4SBR_SOURCE_DIR));
    port_ = port_of(server_->log);
    ASSERT_NE(port_, 0) << read_text(server_->log);
  }

  /// The port a server printed in "serving ... on http://127.0.0.1:PORT" (0 when it did not within a minute).
  static int port_of(const std::filesystem::path& log) {
    const std::regex listening("serving .* on http://127\\.0\\.0\\.1:([0-9]+)");
    for (int i = 0; i < 600; ++i) {
      std::smatch m;
      const auto text = read_text(log);
      if (std::regex_search(text, m, listening)) return std::stoi(m[1]);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return 0;
  }

  static void TearDownTestSuite() {
    if (server_) ::kill(server_->pid, SIGKILL), wait_process(*server_);
    delete server_;
    server_ = nullptr;
    delete dir_;
    dir_ = nullptr;
    port_ = 0;
  }

  static httplib::Client client() {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(60, 0);
    return c;
  }
  static nlohmann::json post(const std::string& path, const std::string& body, int expected_status,
                             const httplib::Headers& headers = {}) {
    auto res = client().Post(path.c_str(), headers, body, "application/json");
    EXPECT_TRUE(res) << path << " " << body.substr(0, 200);
    if (!res) return {};
    EXPECT_EQ(res->status, expected_status) << path << " " << body.substr(0, 200) << "\n" << res->body;
    return nlohmann::json::parse(res->body, nullptr, false);
  }
  // /metrics once it holds `line`, or after 5 s as it is. The server counts a request in cpp-httplib's logger,
  // which runs after the response went out: a client can ask for /metrics before its last request is counted.
  static std::string metrics_with(const std::string& line) {
    std::string body;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    do {
      if (auto res = client().Get("/metrics")) body = res->body;
      if (body.find(line) != std::string::npos) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    } while (std::chrono::steady_clock::now() < deadline);
    return body;
  }
  static std::filesystem::path checkpoint() { return *dir_ / "run" / "llm4sbr-sr-gnn-titles" / "best.pt"; }

  inline static TempDir* dir_ = nullptr;
  inline static Started* server_ = nullptr;
  inline static int port_ = 0;
};

}  // namespace llm4sbr::testing
