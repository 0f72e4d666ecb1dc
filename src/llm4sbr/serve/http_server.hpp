// `llm4sbr serve`'s HTTP/1.1 JSON front (cpp-httplib) over a Service:
//
//   POST /v1/recommend         {"items": [ids], "k", "explain", "exclude_seen"} -> Service::recommend + "took_ms"
//   POST /v1/recommend:batch   {"sessions": [request, ...]} -> {"results": [...], "took_ms"}
//   (concurrent requests are merged into one forward pass: micro_batcher.hpp)
//   GET  /v1/items?query=&limit=   title search of the catalogue
//   GET  /                     a page for a person: search, click items into a session, see its
//                              recommendations and intents (web_page.hpp; self-contained HTML)
//   GET  /healthz, /readyz     liveness; readiness (the model is loaded before the port opens)
//   GET  /metrics              Prometheus text: requests by route and code, latency histogram, sessions a
//                              call, intent sources, the model
//
// Bad input is a 4xx whose JSON body {"error": ...} names the field; a body over the limit is a 413. One
// access-log line per request. SIGTERM or SIGINT stops accepting, lets the requests in flight finish, and
// serve_http returns.
#pragma once

#include <cstddef>
#include <string>

#include "llm4sbr/serve/service.hpp"

namespace llm4sbr::serve {

struct HttpOptions {
  std::string host = "127.0.0.1";         ///< only this machine unless told otherwise
  int port = 8080;                        ///< 0 = a free port the kernel picks (printed)
  std::size_t max_body_bytes = 1 << 20;   ///< larger bodies get 413
  int timeout_s = 5;                      ///< read and write timeout of a connection
  std::size_t max_batch_sessions = 1000;  ///< sessions in one :batch call
  std::size_t max_batch = 64;             ///< sessions in one forward pass (micro-batching, micro_batcher.hpp)
  int max_wait_us = 0;                    ///< how long a pass waits for more sessions (0: batch only under load)
};

/// Serves until SIGTERM or SIGINT, then drains and returns. Prints "serving MODEL on http://HOST:PORT" on
/// stdout once the port is open. Throws Error when the address cannot be bound.
void serve_http(const Service& service, const HttpOptions& options);

}  // namespace llm4sbr::serve
