// A whole-request deadline (issue 12, "Bad input": a client that sends its headers, or its body, one byte a
// second). cpp-httplib's read timeout restarts with every byte, so such a client would hold a worker forever.
// A watcher looks at the server's connections a few times a second (the sockets of this process whose local
// port is the server's, from /proc/self/fd) and shuts down any that has not delivered a whole request within
// the deadline since it opened or since its last answer. The server reports both events by the peer's
// address: a route starting (the request read: for GET at pre-routing, for a POST when its handler runs, after
// cpp-httplib read the body) and the logger (answered).
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

namespace llm4sbr::serve {

class RequestDeadline {
 public:
  /// Watches the connections to local `port`; `deadline` ≥ 1 ms.
  RequestDeadline(int port, std::chrono::milliseconds deadline);
  ~RequestDeadline();
  RequestDeadline(const RequestDeadline&) = delete;
  RequestDeadline& operator=(const RequestDeadline&) = delete;

  /// A whole request arrived on the connection from this peer: no deadline until it is answered.
  void request_read(const std::string& peer_address, int peer_port);
  /// The request was answered: the connection has `deadline` again for its next request.
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
