#include "llm4sbr/serve/http_server.hpp"

// A backlog for bursts of connections (cpp-httplib's default is 5).
#define CPPHTTPLIB_LISTEN_BACKLOG 128
#include <httplib.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <csignal>
#include <cstring>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "llm4sbr/core/progress.hpp"
#include "llm4sbr/core/error.hpp"
#include "llm4sbr/serve/request_deadline.hpp"
#include "llm4sbr/serve/micro_batcher.hpp"
#include "llm4sbr/serve/web_page.hpp"

namespace llm4sbr::serve {

namespace {

// What /metrics reports, in Prometheus' text format.
class Metrics {
 public:
  static constexpr std::array<double, 12> kLatencyBounds{0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 5000};  // ms

  void request(const std::string& route, int status, double ms) {
    std::lock_guard<std::mutex> lock(mutex_);
    ++requests_[{route, status}];
    for (std::size_t b = 0; b < kLatencyBounds.size(); ++b)
      if (ms <= kLatencyBounds[b]) ++latency_buckets_[b];
    ++latency_count_;
    latency_sum_ms_ += ms;
  }
  void answered(const std::vector<nlohmann::json>& answers) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& a : answers) ++intent_sources_[a["intent"]["source"].get<std::string>()];
  }
  // Sessions a pass as a histogram (bounded labels, unlike one series per batch size).
  static constexpr std::array<std::size_t, 8> kPassBounds{1, 2, 4, 8, 16, 32, 64, 256};
  void forward_pass(std::size_t sessions) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (std::size_t b = 0; b < kPassBounds.size(); ++b)
      if (sessions <= kPassBounds[b]) ++pass_buckets_[b];
    ++pass_count_;
    pass_sessions_ += static_cast<std::int64_t>(sessions);
  }
  std::string text(const Service& service, std::int64_t version, std::size_t sessions_held) const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::string out = "# TYPE llm4sbr_requests_total counter\n";
    for (const auto& [key, n] : requests_)
      out += fmt::format("llm4sbr_requests_total{{route=\"{}\",code=\"{}\"}} {}\n", key.first, key.second, n);
    out += "# TYPE llm4sbr_request_duration_ms histogram\n";
    for (std::size_t b = 0; b < kLatencyBounds.size(); ++b)
      out += fmt::format("llm4sbr_request_duration_ms_bucket{{le=\"{}\"}} {}\n", kLatencyBounds[b], latency_buckets_[b]);
    out += fmt::format("llm4sbr_request_duration_ms_bucket{{le=\"+Inf\"}} {}\n", latency_count_);
    out += fmt::format("llm4sbr_request_duration_ms_sum {}\nllm4sbr_request_duration_ms_count {}\n", latency_sum_ms_,
                       latency_count_);
    out += "# TYPE llm4sbr_forward_pass_sessions histogram\n";  // micro-batching: sessions a forward pass
    for (std::size_t b = 0; b < kPassBounds.size(); ++b)
      out += fmt::format("llm4sbr_forward_pass_sessions_bucket{{le=\"{}\"}} {}\n", kPassBounds[b], pass_buckets_[b]);
    out += fmt::format("llm4sbr_forward_pass_sessions_bucket{{le=\"+Inf\"}} {}\n", pass_count_);
    out += fmt::format("llm4sbr_forward_pass_sessions_sum {}\nllm4sbr_forward_pass_sessions_count {}\n", pass_sessions_,
                       pass_count_);
    out += "# TYPE llm4sbr_intent_source_total counter\n";
    for (const auto& [source, n] : intent_sources_)
      out += fmt::format("llm4sbr_intent_source_total{{source=\"{}\"}} {}\n", source, n);
    out += fmt::format("# TYPE llm4sbr_sessions_held gauge\nllm4sbr_sessions_held {}\n", sessions_held);
    if (const auto* llm = service.llm())  // --llm: prompts waiting for the LLM, and its answers kept
      out += fmt::format("# TYPE llm4sbr_llm_queued gauge\nllm4sbr_llm_queued {}\n# TYPE llm4sbr_llm_answers_held gauge\n"
                         "llm4sbr_llm_answers_held {}\n",
                         llm->queued(), llm->answers());
    out += fmt::format("# TYPE llm4sbr_model_info gauge\nllm4sbr_model_info{{model=\"{}\",version=\"{}\"}} 1\n",
                       service.model_label(), version);
    return out;
  }

 private:
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, int>, std::int64_t> requests_;
  std::array<std::int64_t, kLatencyBounds.size()> latency_buckets_{};
  std::int64_t latency_count_ = 0;
  double latency_sum_ms_ = 0;
  std::array<std::int64_t, kPassBounds.size()> pass_buckets_{};
  std::int64_t pass_count_ = 0, pass_sessions_ = 0;
  std::map<std::string, std::int64_t> intent_sources_;
};

// Why the Content-Length headers of `req` do not give one length, or "" when they do (or there is none).
// cpp-httplib reads the first one with strtoull: "-5" would be a huge length and "5, 7" or a second,
// different header would be read as 5, where a proxy in front may have read another length (request
// smuggling, RFC 9112 §6.3).
std::string content_length_problem(const httplib::Request& req) {
  const auto n = req.get_header_value_count("Content-Length");
  if (n == 0) return "";
  const auto first = req.get_header_value("Content-Length", 0);
  for (std::size_t i = 0; i < n; ++i) {
    const auto value = req.get_header_value("Content-Length", i);
    if (value.empty() || value.size() > 18 || value.find_first_not_of("0123456789") != std::string::npos)
      return fmt::format("Content-Length: '{}' is not a length in bytes", value.substr(0, 40));
    if (value != first) return fmt::format("Content-Length: {} headers disagree ('{}', '{}')", n, first, value);
  }
  return "";
}

void reply_json(httplib::Response& res, int status, const nlohmann::json& body) {
  res.status = status;
  // Request strings echoed back (unknown ids) may hold invalid UTF-8: replaced, never an exception.
  res.set_content(body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), "application/json");
}

double ms_since(std::chrono::steady_clock::time_point t0) { return 1e3 * seconds_since(t0); }

// No request needs more than a few levels; a deeper one is refused while it is parsed (nlohmann's dump and
// other recursive walks of a 100,000-level array overflowed the stack: a crash).
constexpr int kMaxJsonDepth = 16;

// A key given twice in one object is refused: nlohmann keeps the last, so `{"k": 5, "k": 500}` would be
// answered for a k the client may not have meant.
nlohmann::json parse_body(const httplib::Request& req) {
  std::vector<std::vector<std::string>> keys;  // per open object, its keys so far
  try {
    return nlohmann::json::parse(req.body, [&keys](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
      if (depth > kMaxJsonDepth)
        throw RequestError(400, fmt::format("the body is nested deeper than {} levels", kMaxJsonDepth));
      using Event = nlohmann::json::parse_event_t;
      if (event == Event::object_start) keys.emplace_back();
      if (event == Event::object_end) keys.pop_back();
      if (event == Event::key) {
        auto& seen = keys.back();
        const auto& key = parsed.get_ref<const std::string&>();
        if (std::find(seen.begin(), seen.end(), key) != seen.end())
          throw RequestError(400, fmt::format("field '{}' is given twice", key.size() > 100 ? key.substr(0, 100) + "..." : key));
        seen.push_back(key);
      }
      return true;
    });
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range: a number beyond double
    throw RequestError(400, fmt::format("the body is not valid JSON: {}", e.what()));
  }
}

// Runs a JSON route: its answer, or the RequestError's status and message.
void json_route(httplib::Response& res, const std::function<nlohmann::json()>& route) {
  try {
    reply_json(res, 200, route());
  } catch (const RequestError& e) {
    reply_json(res, e.status(), {{"error", e.what()}});
  }
}

// A parsed request as the model reads it: its own items, or the clicks the server keeps for its session_id, the
// new click appended. Called only once every request of a call has parsed, so a refused call changes no session.
RecommendRequest with_session(RecommendRequest request, const Service& service, SessionStore& sessions) {
  if (!request.session_id.empty()) {
    // An unknown click is not kept (it would take a place in the session's window) but is listed in this answer.
    const bool unknown = request.click && !service.knows(*request.click);
    auto kept = sessions.click(request.session_id, unknown ? std::nullopt : request.click);
    request.items = std::move(kept.clicks);
    if (unknown) request.items.push_back(*request.click);
    request.truncated = kept.truncated;
  }
  service.ask_llm(request);  // with --llm: waits for its answers at most --intent-wait-ms
  return request;
}

void name_sessions(const std::vector<RecommendRequest>& requests, std::vector<nlohmann::json>& answers) {
  for (std::size_t i = 0; i < requests.size(); ++i)
    if (!requests[i].session_id.empty()) answers[i]["session_id"] = requests[i].session_id;
}

// POST /admin/reload: only with the server's token; the answer says which version serves after it.
nlohmann::json reload_route(const httplib::Request& req, ServiceSlot& slot, const HttpOptions& options) {
  if (options.admin_token.empty())
    throw RequestError(403, "reload is disabled: start the server with LLM4SBR_ADMIN_TOKEN set (or send it SIGHUP)");
  if (req.get_header_value("Authorization") != "Bearer " + options.admin_token)
    throw RequestError(401, "header 'Authorization' must be 'Bearer <the server's LLM4SBR_ADMIN_TOKEN>'");
  std::string checkpoint;
  if (!req.body.empty()) {
    const auto body = parse_body(req);
    if (!body.is_object()) throw RequestError(400, "the request body must be a JSON object");
    for (const auto& [key, value] : body.items())
      if (key != "checkpoint") throw RequestError(400, fmt::format("unknown field '{}' (checkpoint)", key));
    if (body.contains("checkpoint")) {
      if (!body["checkpoint"].is_string()) throw RequestError(400, "field 'checkpoint' must be a path (a string)");
      checkpoint = body["checkpoint"].get<std::string>();
    }
  }
  const auto reloaded = slot.reload(checkpoint);
  if (!reloaded.ok)
    throw RequestError(422, fmt::format("the new checkpoint was not loaded, version {} still serves: {}", reloaded.version,
                                        reloaded.error));
  return {{"status", "reloaded"}, {"version", reloaded.version}, {"model", slot.current()->model_label()}};
}

// `request_read(req)` starts each POST handler: cpp-httplib has read the body by then (request_deadline.hpp).
void add_routes(httplib::Server& server, ServiceSlot& slot, SessionStore& sessions, MicroBatcher& batcher,
                const HttpOptions& options, Metrics& metrics,
                const std::function<void(const httplib::Request&)>& request_read) {
  server.Post("/v1/recommend", [&](const httplib::Request& req, httplib::Response& res) {
    request_read(req);
    json_route(res, [&] {
      const auto t0 = std::chrono::steady_clock::now();
      const auto service = slot.current();
      const std::vector<RecommendRequest> requests{
          with_session(parse_recommend_request(parse_body(req), service->n_items()), *service, sessions)};
      auto answers = batcher.recommend(requests);
      metrics.answered(answers);
      name_sessions(requests, answers);
      answers.front()["took_ms"] = ms_since(t0);
      return std::move(answers.front());  // a copy of the answer's ~60 objects was 3 % of the server's CPU
    });
  });
  server.Post("/v1/recommend:batch", [&](const httplib::Request& req, httplib::Response& res) {
    request_read(req);
    json_route(res, [&] {
      const auto t0 = std::chrono::steady_clock::now();
      const auto body = parse_body(req);
      if (!body.is_object() || !body.contains("sessions") || !body["sessions"].is_array())
        throw RequestError(400, "field 'sessions' must be an array of recommend requests");
      for (const auto& [key, value] : body.items())
        if (key != "sessions") throw RequestError(400, fmt::format("unknown field '{}' (sessions)", key));
      if (body["sessions"].size() > options.max_batch_sessions)
        throw RequestError(413, fmt::format("field 'sessions': {} sessions, at most {} in one call", body["sessions"].size(),
                                            options.max_batch_sessions));
      const auto service = slot.current();
      std::vector<RecommendRequest> requests;
      for (std::size_t i = 0; i < body["sessions"].size(); ++i) {
        try {
          requests.push_back(parse_recommend_request(body["sessions"][i], service->n_items()));
        } catch (const RequestError& e) {
          throw RequestError(e.status(), fmt::format("sessions[{}]: {}", i, e.what()));
        }
      }
      for (auto& request : requests) request = with_session(std::move(request), *service, sessions);
      auto answers = batcher.recommend(requests);
      metrics.answered(answers);
      name_sessions(requests, answers);
      return nlohmann::json{{"results", std::move(answers)}, {"took_ms", ms_since(t0)}};
    });
  });
  server.Get("/v1/items", [&](const httplib::Request& req, httplib::Response& res) {
    json_route(res, [&] {
      std::int64_t limit = 20;
      if (req.has_param("limit")) {
        const auto text = req.get_param_value("limit");
        char* end = nullptr;
        limit = std::strtoll(text.c_str(), &end, 10);
        if (text.empty() || *end != '\0' || limit < 1 || limit > 1000)
          throw RequestError(400, fmt::format("parameter 'limit' = '{}' must be an integer in [1, 1000]", text));
      }
      return nlohmann::json{{"items", slot.current()->search_items(req.get_param_value("query"), limit)}};
    });
  });
  server.Get("/", [](const httplib::Request&, httplib::Response& res) {
    const auto page = web_page();
    res.set_content(page.data(), page.size(), "text/html; charset=utf-8");
  });
  server.Get("/healthz", [](const httplib::Request&, httplib::Response& res) { reply_json(res, 200, {{"status", "ok"}}); });
  server.Get("/readyz", [&](const httplib::Request&, httplib::Response& res) {
    reply_json(res, 200, {{"status", "ready"}, {"model", slot.current()->model_label()}, {"version", slot.version()}});
  });
  server.Get("/metrics", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics.text(*slot.current(), slot.version(), sessions.size()),
                    "text/plain; version=0.0.4");
  });
  server.Post("/admin/reload", [&](const httplib::Request& req, httplib::Response& res) {
    request_read(req);
    json_route(res, [&] { return reload_route(req, slot, options); });
  });
}

volatile std::sig_atomic_t stop_signal = 0;
volatile std::sig_atomic_t reload_signal = 0;
extern "C" void remember_stop_signal(int sig) { stop_signal = sig; }
extern "C" void remember_reload_signal(int) { reload_signal = 1; }

// The route a request is counted under: the known paths, else "other" (no unbounded label values).
std::string route_of(const httplib::Request& req) {
  for (const char* known :
       {"/", "/v1/recommend", "/v1/recommend:batch", "/v1/items", "/healthz", "/readyz", "/metrics", "/admin/reload"})
    if (req.path == known) return known;
  return "other";
}

}  // namespace

void serve_http(ServiceSlot& slot, const HttpOptions& options) {
  httplib::Server server;
  Metrics metrics;
  SessionStore sessions(options.sessions);
  // Only SO_REUSEADDR: cpp-httplib's default SO_REUSEPORT let a second server share a port in use, and the
  // kernel split the traffic between the two.
  server.set_socket_options([](int sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  // A worker per connection while it is kept alive: idle client connections (pools, slow clients) must not
  // hold every worker (cpp-httplib's default is 8 on this machine). The workers are the connection limit.
  server.new_task_queue = [n = options.max_connections] { return new httplib::ThreadPool(n); };
  // cpp-httplib closes a connection after 5 requests by default: a client pool would reconnect every 5 calls,
  // and a POST sent as the server closes fails (seen under load as lost requests).
  server.set_keep_alive_max_count(100000);
  server.set_tcp_nodelay(true);  // without it, Nagle and delayed ACKs add ~40 ms to a small answer
  server.set_payload_max_length(options.max_body_bytes);
  server.set_read_timeout(options.timeout_s, 0);
  server.set_write_timeout(options.timeout_s, 0);
  MicroBatcher batcher(slot, options.max_batch, std::chrono::microseconds(options.max_wait_us), options.workers,
                       [&](std::size_t sessions) { metrics.forward_pass(sessions); });
  std::unique_ptr<RequestDeadline> request_deadline;  // watches the port once it is bound, before any request
  // A std::function that outlives the routes: they keep a reference to it.
  const std::function<void(const httplib::Request&)> request_read = [&](const httplib::Request& req) {
    request_deadline->request_read(req.remote_addr, req.remote_port);
  };
  add_routes(server, slot, sessions, batcher, options, metrics, request_read);
  std::mutex start_mutex;
  std::map<const httplib::Request*, std::chrono::steady_clock::time_point> started;
  server.set_pre_routing_handler([&](const httplib::Request& req, httplib::Response& res) {
    if (req.method != "POST") request_read(req);  // a POST's body is still to come
    {
      std::lock_guard<std::mutex> lock(start_mutex);
      started[&req] = std::chrono::steady_clock::now();
    }
    // cpp-httplib does not apply the body limit to chunked bodies: they must come with a Content-Length.
    if (req.get_header_value("Transfer-Encoding").find("chunked") != std::string::npos) {
      reply_json(res, 411, {{"error", "send the body with a Content-Length, not chunked"}});
      return httplib::Server::HandlerResponse::Handled;
    }
    if (const auto why = content_length_problem(req); !why.empty()) {
      reply_json(res, 400, {{"error", why}});
      res.set_header("Connection", "close");  // where this body ends is unknown: nothing after it can be read
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  server.set_logger([&](const httplib::Request& req, const httplib::Response& res) {
    double ms = 0;
    {
      std::lock_guard<std::mutex> lock(start_mutex);
      if (auto it = started.find(&req); it != started.end()) ms = ms_since(it->second), started.erase(it);
    }
    request_deadline->answered(req.remote_addr, req.remote_port);
    metrics.request(route_of(req), res.status, ms);
    spdlog::info("{} {} {} {} {:.2f} ms", req.remote_addr, req.method, req.path, res.status, ms);
  });
  server.set_error_handler([&](const httplib::Request& req, httplib::Response& res) {
    // A known route with another method: 405 and the method it takes.
    if (res.status == 404 && route_of(req) != "other") {
      const bool post = req.path.rfind("/v1/recommend", 0) == 0 || req.path == "/admin/reload";
      res.status = 405;
      res.set_header("Allow", post ? "POST" : "GET");
      reply_json(res, 405, {{"error", fmt::format("{} {}: use {}", req.method, req.path, post ? "POST" : "GET")}});
      return;
    }
    if (res.body.empty())
      reply_json(res, res.status, {{"error", res.status == 404 ? fmt::format("no route {} {}", req.method, req.path)
                                              : res.status == 413 ? fmt::format("the body is larger than the {} bytes the server accepts (send JSON with Content-Type: application/json: form bodies stop at 8,192)", options.max_body_bytes)
                                                                  : fmt::format("HTTP {}", res.status)}});
  });
  server.set_exception_handler([](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    spdlog::error("{} {}: {}", req.method, req.path, what);
    reply_json(res, 500, {{"error", what}});
  });

  int port = options.port;
  if (port == 0 ? (port = server.bind_to_any_port(options.host)) < 0 : !server.bind_to_port(options.host, port))
    throw Error(fmt::format("serve: cannot listen on {}:{} (in use, or not an address of this machine)", options.host,
                            options.port));
  request_deadline = std::make_unique<RequestDeadline>(port, std::chrono::seconds(options.request_timeout_s));
  // Signals only set a flag (any thread may take them: OpenBLAS's start before main); a watcher acts on them:
  // SIGTERM and SIGINT stop the server, which finishes the requests in flight; SIGHUP reloads the model on a
  // thread of its own, so that a stop is not held up by a load.
  stop_signal = 0;
  reload_signal = 0;
  std::signal(SIGTERM, remember_stop_signal);
  std::signal(SIGINT, remember_stop_signal);
  std::signal(SIGHUP, remember_reload_signal);
  std::atomic<bool> done{false};
  std::thread watcher([&] {
    std::thread reloader;
    while (!done && stop_signal == 0) {
      if (reload_signal != 0) {
        reload_signal = 0;
        if (reloader.joinable()) reloader.join();  // a second SIGHUP during a load waits for it
        reloader = std::thread([&] {
          try {
            slot.reload();
          } catch (const RequestError& e) {
            spdlog::warn("serve: SIGHUP: {}", e.what());
          }
        });
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (!done) {
      spdlog::info("serve: {} received: finishing the requests in flight, then stopping", strsignal(stop_signal));
      server.stop();
    }
    if (reloader.joinable()) reloader.join();
  });
  const bool ipv6 = options.host.find(':') != std::string::npos;  // a URL writes an IPv6 address in brackets
  std::printf("serving %s on http://%s%s%s:%d\n", slot.current()->model_label().c_str(), ipv6 ? "[" : "", options.host.c_str(),
              ipv6 ? "]" : "", port);
  std::fflush(stdout);
  server.listen_after_bind();
  done = true;
  watcher.join();
  std::signal(SIGTERM, SIG_DFL);
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGHUP, SIG_DFL);
  spdlog::info("serve: stopped");
}

}  // namespace llm4sbr::serve
