#include "llm4sbr/core/http_pool.hpp"

#include <curl/curl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <map>
#include <random>
#include <thread>

#include "llm4sbr/core/error.hpp"

namespace llm4sbr::http {

namespace {

using Clock = std::chrono::steady_clock;

constexpr double kMaxCooldownSeconds = 300;

Clock::duration seconds_to_duration(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

// The first characters of a server's answer, on one line, for error messages.
std::string excerpt(const std::string& text, std::size_t max_chars = 300) {
  std::string out = text.substr(0, max_chars);
  std::replace(out.begin(), out.end(), '\n', ' ');
  std::replace(out.begin(), out.end(), '\r', ' ');
  return text.size() > max_chars ? out + "..." : out;
}

std::string normalize_url(const std::string& raw) {
  std::string url = raw;
  if (!url.starts_with("http://") && !url.starts_with("https://"))
    throw ConfigError(fmt::format("endpoint '{}' is not an http:// or https:// URL", raw));
  while (url.ends_with("/")) url.pop_back();
  // Users copy either the server address or the OpenAI base URL; both mean the same endpoint.
  if (!url.ends_with("/v1")) url += "/v1";
  return url;
}

// libcurl must be initialised once, before any thread uses it.
void init_curl_once() {
  static const bool done = [] {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) throw Error("libcurl could not be initialised");
    return true;
  }();
  (void)done;
}

struct Outcome {
  enum Kind { kOk, kRetry, kFatal } kind = kRetry;
  bool answered = false;  // the server sent an HTTP status (it is reachable, whatever it said)
  std::string error;
  nlohmann::json body;
  double seconds = 0;
};

class CurlHandle {
 public:
  CurlHandle() : h_(curl_easy_init()) {
    if (!h_) throw Error("libcurl could not create a handle");
  }
  ~CurlHandle() { curl_easy_cleanup(h_); }
  CurlHandle(const CurlHandle&) = delete;
  CurlHandle& operator=(const CurlHandle&) = delete;
  CURL* get() const { return h_; }

 private:
  CURL* h_;
};

std::size_t append_to_string(char* data, std::size_t size, std::size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

// A transfer in progress is abandoned as soon as the pool stops (a fatal error elsewhere, or the caller
// threw), instead of running to its timeout.
int abort_when_stopped(void* stop, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  return static_cast<std::atomic<bool>*>(stop)->load() ? 1 : 0;
}

Outcome classify(long status, const std::string& text, const std::string& url, const std::string& key_env) {
  Outcome o;
  o.answered = true;
  if (status >= 200 && status < 300) {
    try {
      o.body = nlohmann::json::parse(text);
      o.kind = Outcome::kOk;
    } catch (const nlohmann::json::exception&) {  // parse_error, or out_of_range: a number beyond double
      o.error = fmt::format("HTTP {} but the answer is not JSON: {}", status, excerpt(text));
    }
    return o;
  }
  if (status == 401 || status == 403) {
    const char* key = std::getenv(key_env.c_str());
    o.kind = Outcome::kFatal;
    o.error = fmt::format("{}: HTTP {}: the server refused the API key (taken from the environment variable {}, which "
                          "is {}); answer: {}",
                          url, status, key_env, key && *key ? "set" : "not set", excerpt(text));
    return o;
  }
  if (status == 408 || status == 429 || status >= 500) {
    o.error = fmt::format("HTTP {}: {}", status, excerpt(text));
    return o;
  }
  o.kind = Outcome::kFatal;
  o.error = fmt::format("{}: HTTP {} (a request the server will never accept): {}", url, status, excerpt(text));
  return o;
}

Outcome post_json(CURL* h, const std::string& url, const std::string& body, const std::string& auth_header,
                  const PoolOptions& opt, std::atomic<bool>& stop) {
  curl_easy_reset(h);  // keeps the open connection to the server
  std::string text;
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
  if (!auth_header.empty()) headers = curl_slist_append(headers, auth_header.c_str());
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_POST, 1L);
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, append_to_string);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &text);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(opt.timeout_seconds * 1000));
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(opt.connect_timeout_seconds * 1000));
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);  // signals and threads do not mix (timeouts use no alarm)
  curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, abort_when_stopped);
  curl_easy_setopt(h, CURLOPT_XFERINFODATA, &stop);
  const auto start = Clock::now();
  const CURLcode rc = curl_easy_perform(h);
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  curl_slist_free_all(headers);
  Outcome o;
  if (rc != CURLE_OK) {
    o.error = errbuf[0] ? std::string(errbuf) : std::string(curl_easy_strerror(rc));
  } else {
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    o = classify(status, text, url, opt.api_key_env);
  }
  o.seconds = seconds;
  return o;
}

// Exponential backoff with "equal jitter": half the delay is fixed, half random, so that retries spread
// out without ever coming back at once.
double backoff_seconds(const PoolOptions& opt, std::int64_t attempt) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  const double full = std::min(opt.backoff_max_seconds, opt.backoff_seconds * std::pow(2.0, static_cast<double>(attempt - 1)));
  return full / 2 + std::uniform_real_distribution<double>(0, full / 2)(rng);
}

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  const auto k = static_cast<std::size_t>(std::min<double>(static_cast<double>(v.size() - 1), std::floor(q * static_cast<double>(v.size()))));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

}  // namespace

// --- options --------------------------------------------------------------------------------------------------

SettingsSchema PoolOptions::settings(const std::string& section) {
  using enum SettingType;
  return {section,
          {{"concurrency", kInteger}, {"timeout_seconds", kNumber}, {"connect_timeout_seconds", kNumber},
           {"max_attempts", kInteger}, {"backoff_seconds", kNumber}, {"backoff_max_seconds", kNumber},
           {"eject_after", kInteger}, {"cooldown_seconds", kNumber}, {"give_up_seconds", kNumber},
           {"api_key_env", kString}}};
}

PoolOptions PoolOptions::from_config(const Config& cfg, const std::string& section) {
  settings(section).check(cfg);
  const Config s = cfg.sub(section);
  PoolOptions o;
  o.concurrency = s.get<std::int64_t>("concurrency", o.concurrency);
  o.timeout_seconds = s.get<double>("timeout_seconds", o.timeout_seconds);
  o.connect_timeout_seconds = s.get<double>("connect_timeout_seconds", o.connect_timeout_seconds);
  o.max_attempts = s.get<std::int64_t>("max_attempts", o.max_attempts);
  o.backoff_seconds = s.get<double>("backoff_seconds", o.backoff_seconds);
  o.backoff_max_seconds = s.get<double>("backoff_max_seconds", o.backoff_max_seconds);
  o.eject_after = s.get<std::int64_t>("eject_after", o.eject_after);
  o.cooldown_seconds = s.get<double>("cooldown_seconds", o.cooldown_seconds);
  o.give_up_seconds = s.get<double>("give_up_seconds", o.give_up_seconds);
  o.api_key_env = s.get<std::string>("api_key_env", o.api_key_env);
  auto check = [&](bool ok, const char* key, const char* rule) {
    if (!ok) throw ConfigError(fmt::format("config key '{}.{}' must be {}", section, key, rule));
  };
  check(o.concurrency >= 1, "concurrency", ">= 1");
  check(o.timeout_seconds > 0, "timeout_seconds", "> 0");
  check(o.connect_timeout_seconds > 0, "connect_timeout_seconds", "> 0");
  check(o.max_attempts >= 1, "max_attempts", ">= 1");
  check(o.backoff_seconds >= 0, "backoff_seconds", ">= 0");
  check(o.backoff_max_seconds >= o.backoff_seconds, "backoff_max_seconds", ">= backoff_seconds");
  check(o.eject_after >= 1, "eject_after", ">= 1");
  check(o.cooldown_seconds >= 0, "cooldown_seconds", ">= 0");
  check(o.give_up_seconds > 0, "give_up_seconds", "> 0");
  check(!o.api_key_env.empty(), "api_key_env", "the name of an environment variable");
  return o;
}

std::vector<std::string> split_urls(const std::string& list) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= list.size()) {
    const std::size_t comma = std::min(list.find(',', start), list.size());
    std::string item = list.substr(start, comma - start);
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (item.empty()) throw ConfigError(fmt::format("empty URL in the list '{}'", list));
    out.push_back(std::move(item));
    start = comma + 1;
  }
  return out;
}

// --- the pool -------------------------------------------------------------------------------------------------

// Guarded by EndpointPool::mutex_.
struct EndpointPool::Endpoint {
  std::string url;
  std::int64_t consecutive_failures = 0;
  int ejections = 0;              // in a row, without a success between them
  bool out = false;               // out of rotation (cooling down, or probing one request at a time)
  Clock::time_point down_until{};
  int in_flight = 0;
  bool ever_answered = false;     // some HTTP status came back: the address is right
  std::int64_t requests = 0;
  std::int64_t failures = 0;
  std::vector<double> latencies;  // seconds, successful requests
  std::string last_error;

  bool takes_work(Clock::time_point now) const { return !out || (now >= down_until && in_flight == 0); }
};

// One post_all call: the queue of requests, the answers for the caller, and the stop signal. Guarded by
// EndpointPool::mutex_ except `stop`, which curl's progress callback reads without it.
struct EndpointPool::Run {
  std::string path;
  const std::vector<std::string>* bodies = nullptr;
  std::deque<std::size_t> ready;
  std::multimap<Clock::time_point, std::size_t> delayed;  // retries waiting for their backoff
  std::vector<std::int64_t> attempts;
  std::deque<std::pair<std::size_t, Response>> answers;
  std::string fatal;
  std::atomic<bool> stop{false};
  Clock::time_point last_success = Clock::now();
  std::condition_variable work_cv;
  std::condition_variable answer_cv;

  void promote_due(Clock::time_point now) {
    while (!delayed.empty() && delayed.begin()->first <= now) {
      ready.push_back(delayed.begin()->second);
      delayed.erase(delayed.begin());
    }
  }
};

EndpointPool::EndpointPool(const std::vector<std::string>& base_urls, PoolOptions options) : options_(std::move(options)) {
  if (base_urls.empty()) throw ConfigError("no endpoint URL given");
  init_curl_once();
  for (const auto& u : base_urls) {
    auto e = std::make_unique<Endpoint>();
    e->url = normalize_url(u);
    endpoints_.push_back(std::move(e));
  }
  if (const char* key = std::getenv(options_.api_key_env.c_str()); key && *key)
    auth_header_ = std::string("Authorization: Bearer ") + key;
}

EndpointPool::~EndpointPool() = default;

std::vector<std::string> EndpointPool::urls() const {
  std::vector<std::string> out;
  for (const auto& e : endpoints_) out.push_back(e->url);
  return out;
}

void EndpointPool::worker(Run& run, Endpoint& e) {
  CurlHandle handle;
  std::unique_lock lock(mutex_);
  while (!run.stop) {
    auto now = Clock::now();
    run.promote_due(now);
    if (run.ready.empty() || !e.takes_work(now)) {
      // Sleep until a retry is due or the cooldown ends; a settled request wakes everyone earlier.
      auto wake = now + std::chrono::seconds(1);
      if (!run.delayed.empty()) wake = std::min(wake, run.delayed.begin()->first);
      if (e.out && e.down_until > now) wake = std::min(wake, e.down_until);
      run.work_cv.wait_until(lock, wake);
      continue;
    }
    const std::size_t i = run.ready.front();
    run.ready.pop_front();
    ++e.in_flight;
    ++e.requests;
    lock.unlock();
    Outcome o = post_json(handle.get(), e.url + "/" + run.path, (*run.bodies)[i], auth_header_, options_, run.stop);
    lock.lock();
    --e.in_flight;
    if (run.stop) return;  // the run is over (a fatal error, or the caller threw): this outcome counts for nothing
    now = Clock::now();
    e.ever_answered = e.ever_answered || o.answered;
    if (o.kind == Outcome::kOk) {
      if (e.out) spdlog::info("{}: answers again, back in rotation", e.url);
      e.consecutive_failures = 0;
      e.ejections = 0;
      e.out = false;
      e.latencies.push_back(o.seconds);
      run.last_success = now;
      run.answers.emplace_back(i, Response{std::move(o.body), e.url, o.seconds});
      run.answer_cv.notify_one();
      continue;  // nothing changed for the other workers
    }
    ++e.failures;
    e.last_error = o.error;
    if (o.kind == Outcome::kFatal) {
      run.fatal = o.error;
      run.stop = true;
    } else {
      ++e.consecutive_failures;
      // A failed probe (the endpoint was out and its cooldown over) sends it out again, for longer.
      if (e.consecutive_failures >= options_.eject_after && (!e.out || now >= e.down_until)) {
        const double cooldown = std::min(kMaxCooldownSeconds, options_.cooldown_seconds * std::pow(2.0, e.ejections));
        e.out = true;
        e.down_until = now + seconds_to_duration(cooldown);
        ++e.ejections;
        spdlog::warn("{}: out of rotation for {:.3g} s after {} failures in a row (last: {})", e.url, cooldown,
                     e.consecutive_failures, o.error);
      }
      spdlog::debug("{}: request {} failed (attempt {}): {}", e.url, i, run.attempts[i] + 1, o.error);
      if (++run.attempts[i] >= options_.max_attempts) {
        run.fatal = fmt::format("a request failed {} times (the max_attempts setting); last error from {}: {}",
                                run.attempts[i], e.url, o.error);
        run.stop = true;
      } else {
        run.delayed.emplace(now + seconds_to_duration(backoff_seconds(options_, run.attempts[i])), i);
      }
    }
    run.work_cv.notify_all();
    run.answer_cv.notify_one();
  }
}

namespace {

// Starts the workers of a run and, however the run ends, stops and joins them.
class WorkerGroup {
 public:
  WorkerGroup(std::mutex& mutex, std::atomic<bool>& stop, std::condition_variable& cv)
      : mutex_(mutex), stop_(stop), cv_(cv) {}
  ~WorkerGroup() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  template <typename F>
  void start(F&& f) {
    threads_.emplace_back(std::forward<F>(f));
  }

 private:
  std::mutex& mutex_;
  std::atomic<bool>& stop_;
  std::condition_variable& cv_;
  std::vector<std::thread> threads_;
};

}  // namespace

std::string EndpointPool::give_up_reason(const Run& run) const {
  const bool all_out = std::all_of(endpoints_.begin(), endpoints_.end(), [](const auto& e) { return e->out; });
  if (!all_out) return "";
  std::vector<std::string> why;
  for (const auto& e : endpoints_) why.push_back(fmt::format("{} ({})", e->url, e->last_error));
  if (std::none_of(endpoints_.begin(), endpoints_.end(), [](const auto& e) { return e->ever_answered; }))
    return fmt::format("no endpoint could be reached: {}", fmt::join(why, "; "));
  if (Clock::now() - run.last_success > seconds_to_duration(options_.give_up_seconds))
    return fmt::format("no endpoint answered for {:g} s (give_up_seconds): {}", options_.give_up_seconds, fmt::join(why, "; "));
  return "";
}

void EndpointPool::post_all(const std::string& path, const std::vector<std::string>& bodies,
                            const std::function<void(std::size_t, const Response&)>& on_response) {
  if (bodies.empty()) return;
  Run run;
  run.path = path;
  run.bodies = &bodies;
  run.attempts.assign(bodies.size(), 0);
  for (std::size_t i = 0; i < bodies.size(); ++i) run.ready.push_back(i);
  WorkerGroup workers(mutex_, run.stop, run.work_cv);
  for (auto& e : endpoints_)
    for (std::int64_t k = 0; k < options_.concurrency; ++k)
      workers.start([this, &run, ep = e.get()] {
        try {
          worker(run, *ep);
        } catch (const std::exception& ex) {  // an exception must not escape a thread: it would end the process
          std::lock_guard lock(mutex_);
          run.fatal = fmt::format("{}: {}", ep->url, ex.what());
          run.stop = true;
          run.answer_cv.notify_one();
        }
      });

  std::size_t delivered = 0;
  std::unique_lock lock(mutex_);
  while (delivered < bodies.size()) {
    if (!run.answers.empty()) {
      auto batch = std::move(run.answers);
      run.answers.clear();
      lock.unlock();
      for (const auto& [i, response] : batch) {
        on_response(i, response);
        ++delivered;
      }
      lock.lock();
      continue;
    }
    if (run.fatal.empty()) run.fatal = give_up_reason(run);
    if (!run.fatal.empty()) throw Error(run.fatal);
    run.answer_cv.wait_for(lock, std::chrono::milliseconds(200));
  }
}

std::vector<EndpointSummary> EndpointPool::summary() const {
  std::lock_guard lock(mutex_);
  std::vector<EndpointSummary> out;
  for (const auto& e : endpoints_) {
    EndpointSummary s;
    s.url = e->url;
    s.requests = e->requests;
    s.failures = e->failures;
    s.p50 = percentile(e->latencies, 0.50);
    s.p90 = percentile(e->latencies, 0.90);
    s.p99 = percentile(e->latencies, 0.99);
    s.in_rotation = !e->out;
    s.last_error = e->last_error;
    out.push_back(std::move(s));
  }
  return out;
}

std::string EndpointPool::summary_table() const {
  std::string table = fmt::format("{:<40} {:>9} {:>9} {:>8} {:>8} {:>8}  {}\n", "endpoint", "requests", "failures",
                                  "p50 s", "p90 s", "p99 s", "state");
  for (const auto& s : summary())
    table += fmt::format("{:<40} {:>9} {:>9} {:>8.3f} {:>8.3f} {:>8.3f}  {}\n", s.url, s.requests, s.failures, s.p50,
                         s.p90, s.p99, s.in_rotation ? "in rotation" : "out (" + s.last_error + ")");
  return table;
}

}  // namespace llm4sbr::http
