// Many JSON POST requests spread over several OpenAI-compatible servers at once (vLLM, llama-server,
// Ollama, TGI): the transport that the HTTP LLM backend and the HTTP text encoder share, so that both
// follow one retry policy.
//
// Design: a worker thread per (endpoint, concurrency slot), each with its own libcurl easy handle,
// pulls requests from one shared queue. Work pulling is the load balancing (a faster server takes more)
// and the fail-over (a request that fails goes back into the queue, where any endpoint's worker can take
// it after its backoff delay). Answers are handed to the caller on the calling thread.
//
// Policy:
//   - retried: connection errors, timeouts, HTTP 408, 429 and 5xx, a 200 whose body is not JSON; each
//     retry waits backoff_seconds * 2^(attempt-1) (capped at backoff_max_seconds), half of it random
//     (jitter), so that many clients do not retry in lock step;
//   - an endpoint with eject_after consecutive failures leaves the rotation for cooldown_seconds
//     (doubled after each further ejection, at most 5 minutes), then takes one probing request at a time
//     until a request succeeds;
//   - fatal at once: HTTP 401/403 (the API key), any other 4xx (a bad request: model name, parameters);
//   - fatal after waiting: a request that failed max_attempts times; every endpoint out of rotation and
//     never reached (no HTTP answer at all: a wrong host or port); every endpoint out of rotation and no
//     request answered for give_up_seconds.
// The API key is read from the environment variable api_key_env, sent as "Authorization: Bearer", and
// never logged nor put in an error message.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/core/settings.hpp"

namespace llm4sbr::http {

struct PoolOptions {
  std::int64_t concurrency = 8;         ///< requests in flight per endpoint
  double timeout_seconds = 600;         ///< per request, from connecting to the last byte
  double connect_timeout_seconds = 10;  ///< per connection attempt
  std::int64_t max_attempts = 8;        ///< tries of one request, over all endpoints
  double backoff_seconds = 0.5;         ///< delay before the first retry of a request
  double backoff_max_seconds = 30;      ///< cap of the exponential backoff
  std::int64_t eject_after = 3;         ///< consecutive failures that take an endpoint out of rotation
  double cooldown_seconds = 10;         ///< time out of rotation after the first ejection
  double give_up_seconds = 120;         ///< every endpoint out and nothing answered this long: fail
  std::string api_key_env = "OPENAI_API_KEY";  ///< environment variable holding the API key (may be unset)

  /// Reads the keys above (same names) from the section `section` of `cfg` (e.g. "llm.http"). Throws
  /// ConfigError naming the key for an unknown key, a value of the wrong type or one out of range.
  static PoolOptions from_config(const Config& cfg, const std::string& section);
  /// The keys above as the settings schema of `section` (e.g. "llm.http").
  static SettingsSchema settings(const std::string& section);
};

// JSON with the same keys (encoder metadata). The API key itself is never part of the options.
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(PoolOptions, concurrency, timeout_seconds, connect_timeout_seconds, max_attempts,
                                   backoff_seconds, backoff_max_seconds, eject_after, cooldown_seconds,
                                   give_up_seconds, api_key_env)

/// One answer: the parsed JSON body, which endpoint gave it and how long the request took.
struct Response {
  nlohmann::json body;
  std::string endpoint;  ///< the endpoint's base URL (".../v1")
  double seconds = 0;    ///< wall time of the successful request
};

/// Counters of one endpoint since the pool was made. Latency percentiles are over successful requests.
struct EndpointSummary {
  std::string url;
  std::int64_t requests = 0;  ///< attempts sent, failed ones included
  std::int64_t failures = 0;
  double p50 = 0, p90 = 0, p99 = 0;  ///< seconds
  bool in_rotation = true;
  std::string last_error;
};

class EndpointPool {
 public:
  /// `base_urls`: "http://host:port" or "http://host:port/v1" (a missing "/v1" is appended).
  /// Throws ConfigError for an empty list or a URL that is not http:// or https://.
  EndpointPool(const std::vector<std::string>& base_urls, PoolOptions options);
  ~EndpointPool();
  EndpointPool(const EndpointPool&) = delete;
  EndpointPool& operator=(const EndpointPool&) = delete;

  /// POSTs every body (a JSON text) to `<endpoint>/<path>` ("chat/completions") under the policy of the
  /// file comment, and calls on_response(i, answer) for bodies[i] once it is answered, in any order, on
  /// the calling thread. Throws Error with the endpoint URL and the reason when the policy gives up;
  /// answers delivered before stay delivered. An exception from on_response stops the workers and
  /// propagates.
  void post_all(const std::string& path, const std::vector<std::string>& bodies,
                const std::function<void(std::size_t, const Response&)>& on_response);

  /// Per-endpoint counters, in the order of the URLs given.
  std::vector<EndpointSummary> summary() const;
  /// The summary as an aligned text table, one line per endpoint.
  std::string summary_table() const;
  /// The normalised base URLs (".../v1").
  std::vector<std::string> urls() const;
  const PoolOptions& options() const { return options_; }

 private:
  struct Endpoint;
  struct Run;
  void worker(Run& run, Endpoint& endpoint);
  // Why the run must stop although no request failed for good ("" = it need not): every endpoint out of
  // rotation and none ever reached, or none answered for give_up_seconds. Called with mutex_ held.
  std::string give_up_reason(const Run& run) const;

  PoolOptions options_;
  std::string auth_header_;  // "Authorization: Bearer ..." or empty; never logged
  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<Endpoint>> endpoints_;
};

/// Splits "URL[,URL...]" into its URLs (white space around a comma is dropped). Throws ConfigError for an
/// empty item.
std::vector<std::string> split_urls(const std::string& list);

}  // namespace llm4sbr::http
