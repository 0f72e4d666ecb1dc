// `llm4sbr serve`'s HTTP/1.1 JSON front (cpp-httplib) over a Service:
//
//   POST /v1/recommend         {"items": [ids] | "session_id" [+ "click"], "k", "explain", "exclude_seen"}
//                              -> Service::recommend + "took_ms" (session_id: the clicks the server keeps)
//   POST /v1/recommend:batch   {"sessions": [request, ...]} -> {"results": [...], "took_ms"}
//   (concurrent requests are merged into one forward pass: micro_batcher.hpp)
//   GET  /v1/items?query=&limit=   title search of the catalogue
//   GET  /                     a page for a person: search, click items into a session, see its
//                              recommendations and intents (web_page.hpp; self-contained HTML)
//   GET  /healthz, /readyz     liveness; readiness (the model is loaded before the port opens)
//   GET  /metrics              Prometheus text: requests by route and code, latency histogram, sessions a
//                              pass, intent sources, sessions held, the model and its version
//   POST /admin/reload         {"checkpoint"?} with "Authorization: Bearer $LLM4SBR_ADMIN_TOKEN": a new model
//                              swapped in without failing a request (service_slot.hpp); SIGHUP does the same
//
// Bad input is a 4xx whose JSON body {"error": ...} names the field; a body over the limit is a 413. One
// access-log line per request. SIGTERM or SIGINT stops accepting, lets the requests in flight finish, and
// serve_http returns.
#pragma once

#include <cstddef>
#include <string>

#include "llm4sbr/serve/service_slot.hpp"
#include "llm4sbr/serve/session_store.hpp"

namespace llm4sbr::serve {

struct HttpOptions {
  std::string host = "127.0.0.1";         ///< only this machine unless told otherwise
  int port = 8080;                        ///< 0 = a free port the kernel picks (printed)
  std::size_t max_body_bytes = 1 << 20;   ///< larger bodies get 413
  int timeout_s = 5;                      ///< read and write timeout of a connection (restarts with each byte)
  int request_timeout_s = 10;             ///< a whole request must arrive within this (request_deadline.hpp)
  std::size_t max_batch_sessions = 1000;  ///< sessions in one :batch call
  std::size_t max_batch = 64;             ///< sessions in one forward pass (micro-batching, micro_batcher.hpp)
  int max_wait_us = 0;                    ///< how long a pass waits for more sessions (0: batch only under load)
  std::size_t workers = 0;                ///< forward passes run at once (one core each); 0: one per core
  std::size_t max_connections = 64;       ///< connections served at once (a worker each); more wait in the backlog
  SessionStoreOptions sessions;           ///< the sessions the server keeps for session_id requests
  std::string admin_token;                ///< POST /admin/reload needs it as a bearer token; empty: disabled
};

/// Serves the slot's model until SIGTERM or SIGINT, then drains and returns; SIGHUP reloads it. Prints "serving
/// MODEL on http://HOST:PORT" on stdout once the port is open. Throws Error when the address cannot be bound.
void serve_http(ServiceSlot& slot, const HttpOptions& options);

}  // namespace llm4sbr::serve
