#include "llm4sbr/llm/openai_backend.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "llm4sbr/core/error.hpp"
#include "llm4sbr/core/json_number.hpp"

namespace llm4sbr::llm {

namespace {

Generation parse_completion(const http::Response& r) {
  try {
    const auto& message = r.body.at("choices").at(0).at("message");
    Generation g;
    g.text = trim_answer(message.at("content").get<std::string>());
    // `usage` is optional in the protocol; a server without it leaves the counts at 0.
    if (const auto usage = r.body.find("usage"); usage != r.body.end() && usage->is_object()) {
      // A count that is not an integer (a float, a string) is left at 0 too: it only feeds the progress line.
      if (const auto n = usage->find("prompt_tokens"); n != usage->end()) g.prompt_tokens = as_int64(*n).value_or(0);
      if (const auto n = usage->find("completion_tokens"); n != usage->end()) g.completion_tokens = as_int64(*n).value_or(0);
    }
    g.seconds = r.seconds;
    return g;
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("{}/chat/completions: an answer without choices[0].message.content ({}): {}", r.endpoint,
                            e.what(), r.body.dump().substr(0, 300)));
  }
}

}  // namespace

OpenAiBackend::OpenAiBackend(OpenAiOptions options)
    : options_(std::move(options)), pool_(std::make_unique<http::EndpointPool>(options_.urls, options_.http)) {}

std::string OpenAiBackend::model_name() const {
  return "openai:" + (options_.model.empty() ? std::string("server-default") : options_.model);
}

std::string OpenAiBackend::request_body(const std::string& prompt) const {
  nlohmann::json messages = nlohmann::json::array();
  if (!options_.system_prompt.empty()) messages.push_back({{"role", "system"}, {"content", options_.system_prompt}});
  messages.push_back({{"role", "user"}, {"content", prompt}});
  const auto& g = options_.generation;
  nlohmann::json body = {{"messages", std::move(messages)},
                         {"max_tokens", g.max_tokens},
                         {"temperature", g.temperature},
                         {"seed", prompt_seed(g.seed, prompt)},
                         {"stream", false}};
  if (!options_.model.empty()) body["model"] = options_.model;
  if (!g.stop.empty()) body["stop"] = g.stop;
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void OpenAiBackend::generate(const std::vector<std::string>& prompts,
                             const std::function<void(std::size_t, const Generation&)>& on_done) {
  std::vector<std::string> bodies;
  bodies.reserve(prompts.size());
  for (const auto& p : prompts) bodies.push_back(request_body(p));
  pool_->post_all("chat/completions", bodies, [&](std::size_t i, const http::Response& r) { on_done(i, parse_completion(r)); });
}

void OpenAiBackend::log_summary() const { spdlog::info("{} endpoints:\n{}", model_name(), pool_->summary_table()); }

}  // namespace llm4sbr::llm
