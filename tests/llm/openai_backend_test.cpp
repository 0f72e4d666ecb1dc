// The OpenAI-compatible LLM backend and its transport (http::EndpointPool) against real llama-server
// processes with the tiny chat model, plus small cpp-httplib servers that misbehave on purpose (HTTP 500,
// intermittent 503 in front of a real server) for the retry and rotation policy.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>

#include "llm/llama_server.hpp"
#include "llm4sbr/core/error.hpp"
#include "llm4sbr/llm/openai_backend.hpp"
#include "llm_answers.hpp"
#include "test_support.hpp"

using namespace llm4sbr;
using llm4sbr::testing::LlamaServer;
using llm4sbr::testing::TempDir;

namespace {

// A cpp-httplib server on a port of 127.0.0.1 the kernel picks, serving POST /v1/chat/completions with
// `handler` from a thread of its own.
class SmallServer {
 public:
  explicit SmallServer(httplib::Server::Handler handler) {
    server_.Post("/v1/chat/completions", std::move(handler));
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ~SmallServer() {
    server_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
};

// Passes a chat request on to a real server and its answer back.
void forward(const LlamaServer& to, const httplib::Request& req, httplib::Response& res) {
  httplib::Client client("127.0.0.1", to.port());
  client.set_read_timeout(60);
  auto r = client.Post("/v1/chat/completions", req.body, "application/json");
  res.status = r ? r->status : 502;
  if (r) res.set_content(r->body, "application/json");
}

llm::OpenAiOptions tiny_options(std::vector<std::string> urls) {
  llm::OpenAiOptions o;
  o.urls = std::move(urls);
  o.generation.max_tokens = 8;
  o.http.concurrency = 2;
  o.http.backoff_seconds = 0.05;
  o.http.backoff_max_seconds = 0.2;
  o.http.cooldown_seconds = 60;  // an ejected endpoint stays out for the rest of a test
  return o;
}

std::vector<std::string> numbered_prompts(int n) {
  std::vector<std::string> p;
  for (int i = 0; i < n; ++i) p.push_back(fmt::format("Prompt {}: which beauty products come next after item {}?", i, 3 * i));
  return p;
}

// Answers every prompt and checks each came exactly once; returns the answers by index.
std::vector<llm::Generation> generate_all(llm::LlmBackend& backend, const std::vector<std::string>& prompts) {
  std::vector<llm::Generation> out(prompts.size());
  std::vector<int> seen(prompts.size(), 0);
  backend.generate(prompts, [&](std::size_t i, const llm::Generation& g) {
    ++seen[i];
    out[i] = g;
  });
  for (std::size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(seen[i], 1) << "prompt " << i;
  return out;
}

const http::EndpointSummary& summary_of(const std::vector<http::EndpointSummary>& all, const std::string& url) {
  for (const auto& s : all)
    if (s.url == url + "/v1") return s;
  throw std::runtime_error("no summary for " + url);
}

}  // namespace

TEST(OpenAiBackend, AnswersEveryPromptOverTwoServers) {
  LLM4SBR_REQUIRE_LLAMA_SERVER();
  TempDir tmp;
  const auto model = llm4sbr::testing::tiny_model("tiny-qwen2-chat.gguf");
  LlamaServer a(model, llm4sbr::testing::tiny_chat_server_args(), tmp / "a.log");
  LlamaServer b(model, llm4sbr::testing::tiny_chat_server_args(), tmp / "b.log");
  llm::OpenAiBackend backend(tiny_options({a.url(), b.url()}));
  EXPECT_EQ(backend.model_name(), "openai:server-default");
  const auto prompts = numbered_prompts(24);
  const auto gens = generate_all(backend, prompts);
  std::vector<std::string> texts;
  for (const auto& g : gens) texts.push_back(g.text);
  llm4sbr::testing::expect_real_answers(texts);
  for (const auto& g : gens) {
    EXPECT_GT(g.prompt_tokens, 10);
    EXPECT_GE(g.completion_tokens, 1);
    EXPECT_LE(g.completion_tokens, 8);
    EXPECT_GT(g.seconds, 0);
  }
  const auto stats = backend.pool().summary();
  EXPECT_GT(summary_of(stats, a.url()).requests, 0);  // the work is spread over both
  EXPECT_GT(summary_of(stats, b.url()).requests, 0);
  EXPECT_EQ(summary_of(stats, a.url()).requests + summary_of(stats, b.url()).requests, 24);
  EXPECT_GT(summary_of(stats, a.url()).p99, 0);
  EXPECT_NE(backend.pool().summary_table().find(a.url()), std::string::npos);

  // Greedy decoding: prompts sent again one at a time get the same answers but for near-ties. Not every one:
  // llama-server decodes a prompt alone in other batch shapes than beside others, which changes the last bits
  // of its logits (llama.cpp is not batch-invariant), and the random-weight model's logits are nearly flat,
  // so such bits flip a greedy choice now and then (about one token in a thousand here).
  std::size_t same = 0;
  for (std::size_t i = 0; i < 8; ++i) same += generate_all(backend, {prompts[i]})[0].text == gens[i].text;
  EXPECT_GE(same, 6u) << "answers alone differ from the same prompts' answers in a batch beyond near-ties";
}

TEST(OpenAiBackend, FailingEndpointIsRetriedElsewhereAndLeavesRotation) {
  LLM4SBR_REQUIRE_LLAMA_SERVER();
  TempDir tmp;
  LlamaServer good(llm4sbr::testing::tiny_model("tiny-qwen2-chat.gguf"), llm4sbr::testing::tiny_chat_server_args(), tmp / "good.log");
  std::atomic<int> hits{0};
  SmallServer bad([&](const httplib::Request&, httplib::Response& res) {
    ++hits;
    res.status = 500;
    res.set_content(R"({"error": "internal"})", "application/json");
  });
  auto opt = tiny_options({good.url(), bad.url()});
  llm::OpenAiBackend backend(opt);
  generate_all(backend, numbered_prompts(20));  // every prompt answered, by the good server
  const auto stats = backend.pool().summary();
  const auto& b = summary_of(stats, bad.url());
  EXPECT_EQ(b.requests, hits.load());
  EXPECT_EQ(b.failures, b.requests);
  EXPECT_GE(b.requests, opt.http.eject_after);  // retried ...
  EXPECT_LE(b.requests, opt.http.eject_after + opt.http.concurrency - 1);  // ... then dropped
  EXPECT_FALSE(b.in_rotation);
  EXPECT_NE(b.last_error.find("HTTP 500"), std::string::npos);
  const auto& g = summary_of(stats, good.url());
  EXPECT_EQ(g.failures, 0);
  EXPECT_EQ(g.requests, 20);
}

TEST(OpenAiBackend, IntermittentErrorsAreRetriedWithBackoff) {
  LLM4SBR_REQUIRE_LLAMA_SERVER();
  TempDir tmp;
  LlamaServer real(llm4sbr::testing::tiny_model("tiny-qwen2-chat.gguf"), llm4sbr::testing::tiny_chat_server_args(), tmp / "real.log");
  // In front of the real server: every other request gets 503 (overloaded) or 429 (rate limited), the rest
  // is passed through.
  std::atomic<int> n{0};
  SmallServer flaky([&](const httplib::Request& req, httplib::Response& res) {
    const int k = n++;
    if (k % 2 == 0) {
      res.status = k % 4 == 0 ? 503 : 429;
      return;
    }
    forward(real, req, res);
  });
  auto opt = tiny_options({flaky.url()});
  opt.http.eject_after = 1000;  // one endpoint: it must stay in rotation and be retried
  llm::OpenAiBackend backend(opt);
  generate_all(backend, numbered_prompts(10));
  const auto s = backend.pool().summary().front();
  EXPECT_EQ(s.requests - s.failures, 10);
  EXPECT_GE(s.failures, 5);
}

TEST(OpenAiBackend, AnEjectedEndpointIsProbedAgainAndReturnsToRotation) {
  LLM4SBR_REQUIRE_LLAMA_SERVER();
  TempDir tmp;
  LlamaServer real(llm4sbr::testing::tiny_model("tiny-qwen2-chat.gguf"), llm4sbr::testing::tiny_chat_server_args(),
                   tmp / "real.log");
  // A server that is down for its first 3 requests (a restart), then well.
  std::atomic<int> n{0};
  SmallServer restarting([&](const httplib::Request& req, httplib::Response& res) {
    if (n++ < 3) {
      res.status = 502;
      return;
    }
    forward(real, req, res);
  });
  auto opt = tiny_options({restarting.url()});
  opt.http.concurrency = 1;
  opt.http.cooldown_seconds = 0.3;
  llm::OpenAiBackend backend(opt);
  generate_all(backend, numbered_prompts(6));
  const auto s = backend.pool().summary().front();
  EXPECT_EQ(s.failures, 3);
  EXPECT_EQ(s.requests, 9);
  EXPECT_TRUE(s.in_rotation);
}

TEST(OpenAiBackend, EndpointsThatNeverRecoverAreGivenUp) {
  SmallServer down([](const httplib::Request&, httplib::Response& res) { res.status = 503; });
  auto opt = tiny_options({down.url()});
  opt.http.give_up_seconds = 0.5;
  llm::OpenAiBackend backend(opt);
  try {
    generate_all(backend, numbered_prompts(3));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no endpoint answered for 0.5 s (give_up_seconds): " + down.url() + "/v1 (HTTP 503"),
              std::string::npos)
        << e.what();
  }
}

TEST(OpenAiBackend, UnreachableEndpointsFailFastAndClearly) {
  // Port 1 on the loopback: nothing listens there, the connection is refused at once.
  auto opt = tiny_options({"http://127.0.0.1:1", "http://127.0.0.1:2/v1"});
  llm::OpenAiBackend backend(opt);
  const auto start = std::chrono::steady_clock::now();
  try {
    generate_all(backend, numbered_prompts(4));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no endpoint could be reached"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("127.0.0.1:1/v1"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("127.0.0.1:2/v1"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

TEST(OpenAiBackend, RequestBodyAndBadSettings) {
  auto opt = tiny_options({"http://127.0.0.1:1"});
  opt.model = "qwen2.5-7b-instruct";
  opt.system_prompt = "Be brief.";
  opt.generation.stop = {"\n\n"};
  llm::OpenAiBackend backend(opt);
  EXPECT_EQ(backend.model_name(), "openai:qwen2.5-7b-instruct");
  const auto body = nlohmann::json::parse(backend.request_body("Hello"));
  EXPECT_EQ(body["model"], "qwen2.5-7b-instruct");
  EXPECT_EQ(body["messages"][0]["role"], "system");
  EXPECT_EQ(body["messages"][1]["content"], "Hello");
  EXPECT_EQ(body["max_tokens"], 8);
  EXPECT_EQ(body["temperature"], 0.0);
  EXPECT_EQ(body["stop"][0], "\n\n");
  // The seed of a request is llm.seed mixed with its prompt: a sampled answer depends on its prompt alone.
  EXPECT_EQ(body["seed"], llm::prompt_seed(opt.generation.seed, "Hello"));
  EXPECT_NE(nlohmann::json::parse(backend.request_body("Hello!"))["seed"], body["seed"]);

  EXPECT_THROW(llm::make_llm_backend("openai:", Config()), ConfigError);
  EXPECT_THROW(llm::make_llm_backend("openai:ftp://x", Config()), ConfigError);
  EXPECT_THROW(llm::make_llm_backend("openai:http://a,,http://b", Config()), ConfigError);
  EXPECT_THROW(llm::make_llm_backend("openai:http://a", Config::parse("llm: {http: {concurrency: 0}}")), ConfigError);
  try {
    llm::make_llm_backend("openai:http://a", Config::parse("llm: {http: {concurency: 4}}"));
    FAIL() << "a misspelled key was accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("llm.http.concurency"), std::string::npos) << e.what();
  }
}
