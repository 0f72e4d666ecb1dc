// A whole-request deadline for the headers (issue 12, "Bad input": a client that sends its headers one byte a
// second). cpp-httplib's read timeout restarts with every byte, so such a client would hold a worker forever.
// A watcher looks at the server's connections a few times a second (the sockets of this process whose local
// port is the server's, from /proc/self/fd) and shuts down any that has not delivered a request's headers
// within the deadline since it opened or since its last answer. The server reports both events by the peer's
// address: the pre-routing handler (headers read) and the logger (answered).
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

namespace llm4sbr::serve {

class HeaderDeadline {
 public:
  /// Watches the connections to local `port`; `deadline` ≥ 1 ms.
  HeaderDeadline(int port, std::chrono::milliseconds deadline);
  ~HeaderDeadline();
  HeaderDeadline(const HeaderDeadline&) = delete;
  HeaderDeadline& operator=(const HeaderDeadline&) = delete;

  /// A request's headers arrived on the connection from this peer: no deadline until it is answered.
  void headers_read(const std::string& peer_address, int peer_port);
  /// The request was answered: the connection has `deadline` again for its next request's headers.
  void answered(const std::string& peer_address, int peer_port);

 private:
  using Clock = std::chrono::steady_clock;
  using Peer = std::pair<std::string, int>;
  struct Connection {
    Clock::time_point since;  ///< opened, or last answered
    bool in_request = false;
  };
  void watch();
  void scan();

  int port_;
  std::chrono::milliseconds deadline_;
  std::mutex mutex_;
  std::map<Peer, Connection> connections_;
  std::atomic<bool> stop_{false};
  std::thread watcher_;
};

}  // namespace llm4sbr::serve
