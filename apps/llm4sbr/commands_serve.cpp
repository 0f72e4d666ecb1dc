// `llm4sbr serve`: a trained model answering live sessions over HTTP (serve/http_server.hpp).
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>

#include "cli.hpp"
#include "llm4sbr/core/error.hpp"
#include "llm4sbr/core/progress.hpp"
#include "llm4sbr/core/runtime.hpp"
#include "llm4sbr/serve/http_server.hpp"
#include "llm4sbr/llm/llm_backend.hpp"
#include "llm4sbr/serve/intent_generator.hpp"
#include "llm4sbr/serve/service_slot.hpp"
#include "llm4sbr/train/checkpoint.hpp"
#include "llm4sbr/train/device.hpp"

namespace llm4sbr::cli {

namespace fs = std::filesystem;

namespace {

struct ServeArgs {
  Options o;
  std::string run, model, checkpoint;
  serve::HttpOptions http;
  serve::ServeOptions service;
  int session_ttl_s = 1800;
  std::string llm, llm_store;
  int intent_wait_ms = 0;
};

// The checkpoint of a run folder's row: `model` names its folder (sr-gnn, llm4sbr-sr-gnn-titles, or a
// prefix of one); without it, the LLM4SBR row, else the only row.
fs::path checkpoint_of_run(const fs::path& run, const std::string& model) {
  std::vector<std::string> rows;
  if (fs::is_directory(run))
    for (const auto& e : fs::directory_iterator(run))
      if (fs::exists(e.path() / "best.pt") && fs::exists(e.path() / "checkpoint.yaml")) rows.push_back(e.path().filename());
  std::sort(rows.begin(), rows.end());
  if (rows.empty())
    throw ConfigError(fmt::format("--run {}: no trained model there (a folder with best.pt and checkpoint.yaml, as "
                                  "`llm4sbr run` writes)",
                                  run.string()));
  std::vector<std::string> picked;
  for (const auto& r : rows)
    if (model.empty() ? r.rfind("llm4sbr-", 0) == 0 : r == model || r.rfind(model, 0) == 0) picked.push_back(r);
  if (model.empty() && picked.empty() && rows.size() == 1) picked = rows;
  if (picked.size() > 1)
    if (auto exact = std::find(picked.begin(), picked.end(), model); exact != picked.end()) picked = {*exact};
  if (picked.size() != 1)
    throw ConfigError(fmt::format("--run {}: {} model{}; choose one with --model ({})", run.string(),
                                  picked.empty() ? "no matching" : "more than one matching", model.empty() ? "" : " '" + model + "'",
                                  fmt::join(rows, ", ")));
  return run / picked.front() / "best.pt";
}

// The settings of --llm: the run's own (checkpoint.yaml: llm.max_tokens, prompt.system ... as its Stage-1
// answers were made), the user's --set on top, and HTTP limits shorter than a batch job's (a live request
// cannot wait minutes for a server that stopped answering).
Config llm_config(const fs::path& checkpoint, const Options& o) {
  Config c;
  if (auto record = train::read_checkpoint_record(checkpoint)) c = record->config;
  if (!c.has("llm.http.timeout_seconds")) c.set("llm.http.timeout_seconds", "30");
  if (!c.has("llm.http.give_up_seconds")) c.set("llm.http.give_up_seconds", "30");
  c.apply_overrides(o.overrides);
  return c;
}

// The checkpoint the server was started with: --checkpoint, or the row of --run (looked up again each call, so
// that a rerun's new best.pt is found).
fs::path started_checkpoint(const ServeArgs& a) {
  return a.checkpoint.empty() ? checkpoint_of_run(a.run, a.model) : fs::path(a.checkpoint);
}

void run_serve(ServeArgs a) {
  Config cfg = load_config(a.o);
  set_blas_threads(1);  // many small batches: requests run side by side instead
  configure_runtime(cfg.get<int>("threads", 0));
  ProgressBar::set_quiet(true);  // per-request encoding and localization would print a bar each
  if (const char* token = std::getenv("LLM4SBR_ADMIN_TOKEN")) a.http.admin_token = token;
  a.http.sessions.max_clicks = static_cast<std::size_t>(a.service.max_session_length);
  a.http.sessions.ttl = std::chrono::seconds(a.session_ttl_s);
  // --llm: one generator for every model a reload brings (its store is locked while open).
  if (!a.llm.empty()) {
    const fs::path first = started_checkpoint(a);
    const fs::path store = a.llm_store.empty() ? first.parent_path() / "serve-responses.jsonl" : fs::path(a.llm_store);
    a.service.llm = std::make_shared<serve::IntentGenerator>(llm::make_llm_backend(a.llm, llm_config(first, a.o)), store);
    a.service.intent_wait = std::chrono::milliseconds(a.intent_wait_ms);
  }
  // The first load and every reload: a reload without a path re-reads the same source (for --run, the row
  // is looked up again, so that a rerun's new best.pt is found).
  serve::ServiceSlot slot([&](const std::string& path) {
    const fs::path checkpoint = path.empty() ? started_checkpoint(a) : fs::path(path);
    if (!fs::is_regular_file(checkpoint)) throw ConfigError(fmt::format("checkpoint {}: no such file", checkpoint.string()));
    spdlog::info("serve: loading {}", checkpoint.string());
    train::LoadOptions load;
    load.config = cfg;
    load.text = true;
    return std::make_shared<const serve::Service>(
        train::load_trained(checkpoint, train::device_from_config(cfg), std::move(load)), a.service);
  });
  serve::serve_http(slot, a.http);
}

}  // namespace

std::vector<Command> add_serve_commands(CLI::App& app) {
  auto args = std::make_shared<ServeArgs>();
  auto* s = app.add_subcommand("serve", "serve a trained model's live recommendations, with the intents behind them, over HTTP");
  auto* run = s->add_option("--run", args->run, "a run folder (from `llm4sbr run`): serves its LLM4SBR row, or --model")
                  ->check(CLI::ExistingDirectory);
  s->add_option("--model", args->model, "the row of --run to serve: its folder name (sr-gnn, llm4sbr-sr-gnn-titles) or a prefix")
      ->needs(run);
  auto* checkpoint = s->add_option("--checkpoint", args->checkpoint, "a best.pt with checkpoint.yaml beside it")
                         ->check(CLI::ExistingFile)
                         ->excludes(run);
  run->excludes(checkpoint);
  s->add_option("--host", args->http.host, "address to listen on")->capture_default_str();
  s->add_option("--port", args->http.port, "port to listen on (0: a free one, printed)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  s->add_option("--max-session-length", args->service.max_session_length,
                "clicks of a session the model reads (the last ones; longer sessions are cut and flagged)")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  s->add_option("--max-batch", args->http.max_batch, "sessions in one forward pass (concurrent requests are merged)")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  s->add_option("--max-wait-us", args->http.max_wait_us,
                "microseconds a forward pass waits for more sessions (0: merge only what queued while busy)")
      ->check(CLI::Range(0, 1000000))
      ->capture_default_str();
  s->add_option("--intent-source", args->service.intent_source,
                "intents of an LLM4SBR model: auto (the run's cached LLM answer, else titles), titles, or none (zero "
                "intents: fastest, least accurate)")
      ->check(CLI::IsMember({"auto", "titles", "none"}))
      ->capture_default_str();
  auto* llm_option = s->add_option("--llm", args->llm,
                "ask this LLM (llama:PATH.gguf, or openai:URL[,URL]) the prompts of sessions with no cached answer, in "
                "the background (settings llm.*)");
  s->add_option("--intent-wait-ms", args->intent_wait_ms,
                "with --llm: milliseconds a request waits for its LLM answers (0: answer with titles, the next request "
                "finds them)")
      ->check(CLI::Range(0, 600000))
      ->capture_default_str()
      ->needs(llm_option);
  s->add_option("--llm-store", args->llm_store,
                "with --llm: the responses.jsonl the answers are kept in (default: serve-responses.jsonl beside the "
                "checkpoint)")
      ->needs(llm_option);
  s->add_option("--workers", args->http.workers, "forward passes run at once (one core each; 0: one per core)")
      ->check(CLI::Range(0, 256))
      ->capture_default_str();
  s->add_option("--max-connections", args->http.max_connections,
                "connections served at once (a worker each; more wait in the listen backlog)")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  s->add_option("--request-timeout", args->http.request_timeout_s,
                "seconds a connection has to send a whole request, headers and body (slow clients are cut off)")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  s->add_option("--max-sessions", args->http.sessions.max_sessions,
                "sessions kept for session_id requests (the least recently used is forgotten first)")
      ->check(CLI::Range(1, 100000000))
      ->capture_default_str();
  s->add_option("--session-ttl", args->session_ttl_s, "seconds a kept session lives after its last request")
      ->check(CLI::Range(1, 30 * 24 * 3600))
      ->capture_default_str();
  add_config(s, args->o, false);
  return {{s, [args] {
             if (args->run.empty() && args->checkpoint.empty()) throw ConfigError("serve: give --run DIR or --checkpoint FILE");
             run_serve(*args);  // a copy, completed with the environment's token
           }}};
}

}  // namespace llm4sbr::cli
