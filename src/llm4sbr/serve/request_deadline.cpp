#include "llm4sbr/serve/request_deadline.hpp"

#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <spdlog/spdlog.h>

#include <cstdlib>
#include <filesystem>
#include <set>

namespace llm4sbr::serve {

namespace {

int port_of(const sockaddr_storage& a) {
  if (a.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in&>(a).sin_port);
  if (a.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6&>(a).sin6_port);
  return -1;
}

// The peer of an accepted connection to `port`, written as cpp-httplib writes Request::remote_addr.
bool peer_of(int fd, int port, std::pair<std::string, int>& peer) {
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) return false;
  sockaddr_storage local{}, remote{};
  socklen_t n = sizeof local, m = sizeof remote;
  int listening = 0;
  socklen_t l = sizeof listening;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &n) != 0 || port_of(local) != port) return false;
  if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &l) != 0 || listening) return false;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&remote), &m) != 0) return false;
  char host[NI_MAXHOST];
  if (::getnameinfo(reinterpret_cast<sockaddr*>(&remote), m, host, sizeof host, nullptr, 0, NI_NUMERICHOST) != 0)
    return false;
  peer = {host, port_of(remote)};
  return true;
}

}  // namespace

RequestDeadline::RequestDeadline(int port, std::chrono::milliseconds deadline)
    : port_(port), deadline_(deadline), watcher_([this] { watch(); }) {}

RequestDeadline::~RequestDeadline() {
  stop_ = true;
  watcher_.join();
}

void RequestDeadline::request_read(const std::string& peer_address, int peer_port) {
  std::lock_guard<std::mutex> lock(mutex_);
  connections_[{peer_address, peer_port}] = {Clock::now(), true};
}

void RequestDeadline::answered(const std::string& peer_address, int peer_port) {
  std::lock_guard<std::mutex> lock(mutex_);
  connections_[{peer_address, peer_port}] = {Clock::now(), false};
}

void RequestDeadline::watch() {
  const auto period = std::min<std::chrono::milliseconds>(deadline_ / 4 + std::chrono::milliseconds(1),
                                                           std::chrono::milliseconds(250));
  while (!stop_) {
    scan();
    std::this_thread::sleep_for(period);
  }
}

void RequestDeadline::scan() {
  const auto now = Clock::now();
  std::set<Peer> open;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd", ec)) {
    const int fd = std::atoi(entry.path().filename().c_str());
    Peer peer;
    if (!peer_of(fd, port_, peer)) continue;
    open.insert(peer);
    std::lock_guard<std::mutex> lock(mutex_);
    auto [it, opened] = connections_.try_emplace(peer, Connection{now, false});
    if (opened || it->second.in_request || now - it->second.since <= deadline_) continue;
    // Checked again just before: the descriptor may have been closed and reused since the listing.
    Peer again;
    if (!peer_of(fd, port_, again) || again != peer) continue;
    spdlog::warn("serve: closing the connection from {}:{}: no complete request within {} ms", peer.first,
                 peer.second, deadline_.count());
    ::shutdown(fd, SHUT_RDWR);  // the worker's read returns, and cpp-httplib closes the socket
    connections_.erase(it);
  }
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto it = connections_.begin(); it != connections_.end();)
    it = open.count(it->first) ? std::next(it) : connections_.erase(it);
}

}  // namespace llm4sbr::serve
