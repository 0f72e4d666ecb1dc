// `llm4sbr serve` as a real process on a free local port, with a real HTTP client (serve_fixture.hpp). Online
// answers equal the offline ranking of the same checkpoint and intents; bad input is a 4xx naming the field;
// unknown and empty sessions fall back with flags; batch, search, health and metrics; SIGTERM stops it cleanly.
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/socket.h>
#include <unistd.h>
#include <torch/torch.h>

#include <filesystem>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "serve/serve_fixture.hpp"
#include "llm4sbr/models/batch.hpp"
#include "llm4sbr/train/checkpoint.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

class Serve : public llm4sbr::testing::ServeFixture {
 protected:
  static void SetUpTestSuite() { start_server(); }
};

// No training/serving skew: the served top 20 of test sessions are the offline model's top 20 on the stored
// intents of those sessions (the titles stage, which the service recomputes online), with the same scores up
// to float rounding. Compared by score, so that ties between items may come in either order.
TEST_F(Serve, AnswersAreTheOfflineRankingWithTheirExplanations) {
  auto trained = llm4sbr::train::load_trained(checkpoint());
  const auto& ds = *trained.dataset;
  const std::vector<llm4sbr::data::Sample> samples(ds.test.begin(), ds.test.begin() + 30);
  auto batch = llm4sbr::models::make_batch(samples);
  batch.intents = trained.intents("test").index_select(0, batch.sample_ids);
  torch::NoGradGuard no_grad;
  const auto offline = trained.model->forward(batch).scores;
  for (std::size_t i = 0; i < samples.size(); ++i) {
    json items = json::array();
    for (const auto id : samples[i].prefix) items.push_back(ds.items[static_cast<std::size_t>(id - 1)].raw_id);
    const auto answer = post("/v1/recommend", json{{"items", items}, {"k", 20}}.dump(), 200);
    ASSERT_EQ(answer["items"].size(), 20u) << answer.dump();
    const auto kth = std::get<0>(offline[static_cast<std::int64_t>(i)].topk(20))[19].item<float>();
    for (const auto& item : answer["items"]) {
      std::int64_t id = 0;
      for (const auto& it : ds.items)
        if (it.raw_id == item["id"].get<std::string>()) id = it.id;
      ASSERT_GT(id, 0) << item.dump();
      const float want = offline[static_cast<std::int64_t>(i)][id - 1].item<float>();
      EXPECT_NEAR(item["score"].get<float>(), want, 1e-4) << item.dump();
      EXPECT_GE(want, kth - 1e-4) << "served an item outside the offline top 20: " << item.dump();
      EXPECT_EQ(item["title"], ds.items[static_cast<std::size_t>(id - 1)].title);
    }
    EXPECT_EQ(answer["intent"]["source"], "titles");
    EXPECT_EQ(answer["model"], "LLM4SBR(SR-GNN)");
    for (const auto* view : {"long", "short"}) {
      const auto& v = answer["intent"]["views"][view];
      ASSERT_TRUE(v.is_object()) << answer.dump();
      EXPECT_FALSE(v["text"].get<std::string>().empty());
      EXPECT_TRUE(v["gate"].is_number());
      EXPECT_EQ(v["items"].size(), 5u);  // top-r = 5
      EXPECT_TRUE(v["items"][0]["similarity"].is_number());
    }
  }
}

TEST_F(Serve, BadInputIsA4xxNamingTheField) {
  EXPECT_NE(post("/v1/recommend", "{\"items\": [", 400)["error"].get<std::string>().find("not valid JSON"), std::string::npos);
  EXPECT_NE(post("/v1/recommend", R"({"items": "B0001"})", 400)["error"].get<std::string>().find("'items'"),
            std::string::npos);
  EXPECT_NE(post("/v1/recommend", R"({"items": [1.5]})", 400)["error"].get<std::string>().find("not an item id"),
            std::string::npos);
  EXPECT_NE(post("/v1/recommend", R"({"items": [], "k": 0})", 400)["error"].get<std::string>().find("'k'"),
            std::string::npos);
  EXPECT_NE(post("/v1/recommend", R"({"items": [], "k": 100000000})", 400)["error"].get<std::string>().find("catalogue"),
            std::string::npos);
  // 2^64 - 1 was read as an int64: "k = -1" in the message, and the same wrap for an item id.
  EXPECT_NE(post("/v1/recommend", R"({"items": [], "k": 18446744073709551615})", 400)["error"].get<std::string>().find(
                "'k' = 18446744073709551615"),
            std::string::npos);
  EXPECT_EQ(post("/v1/recommend", R"({"items": [18446744073709551615], "k": 1})", 200)["unknown_items"],
            json::array({"18446744073709551615"}));
  EXPECT_NE(post("/v1/recommend", R"({"items": [], "k": 5, "k": 500})", 400)["error"].get<std::string>().find(
                "field 'k' is given twice"),
            std::string::npos);
  EXPECT_NE(post("/v1/recommend", R"({"items": [], "kk": 3})", 400)["error"].get<std::string>().find("unknown field 'kk'"),
            std::string::npos);
  EXPECT_NE(post("/v1/recommend", R"({"items": [], "explain": "yes"})", 400)["error"].get<std::string>().find("'explain'"),
            std::string::npos);
  EXPECT_NE(post("/v1/recommend:batch", R"({"sessions": [{"items": []}, {"k": 3}]})", 400)["error"].get<std::string>().find(
                "sessions[1]"),
            std::string::npos);
  post("/v1/recommend", json{{"items", json::array({std::string(2 << 20, 'x')})}}.dump(), 413);
  // 100,000 nested arrays (200 KB): refused while parsed (writing them out in the message overflowed the stack).
  const auto deep = post("/v1/recommend", "{\"items\":" + std::string(100000, '[') + std::string(100000, ']') + "}", 400);
  EXPECT_NE(deep["error"].get<std::string>().find("nested deeper"), std::string::npos) << deep.dump().substr(0, 300);
  EXPECT_NE(post("/v1/recommend", R"({"items": [[1]]})", 400)["error"].get<std::string>().find("an array"), std::string::npos);
  auto res = client().Get("/nowhere");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  auto wrong_method = client().Get("/v1/recommend");
  ASSERT_TRUE(wrong_method);
  EXPECT_EQ(wrong_method->status, 405);
  EXPECT_EQ(wrong_method->get_header_value("Allow"), "POST");
  EXPECT_NE(client().Get("/v1/items?query=x&limit=0")->status, 200);
}

TEST_F(Serve, UnknownEmptyAndLongSessionsAreAnsweredAndFlagged) {
  const auto unknown = post("/v1/recommend", R"({"items": ["no-such-item"], "k": 5})", 200);
  EXPECT_EQ(unknown["unknown_items"], json::array({"no-such-item"}));
  EXPECT_EQ(unknown["items"].size(), 5u);
  EXPECT_EQ(unknown["intent"]["source"], "none");
  const std::set<std::string> flags(unknown["flags"].begin(), unknown["flags"].end());
  EXPECT_TRUE(flags.count("unknown_items_dropped") && flags.count("empty_session_popularity")) << unknown.dump();

  auto trained = llm4sbr::train::load_trained(checkpoint(), torch::kCPU, {.text = false});
  const auto& items = trained.dataset->items;
  json clicks = json::array();
  for (int i = 0; i < 10000; ++i) clicks.push_back(items[static_cast<std::size_t>(i) % items.size()].raw_id);
  const auto longest = post("/v1/recommend", json{{"items", clicks}, {"k", 3}, {"exclude_seen", true}}.dump(), 200);
  EXPECT_EQ(longest["items"].size(), 3u);
  EXPECT_NE(longest["flags"].dump().find("session_truncated"), std::string::npos) << longest["flags"];
  // exclude_seen: none of the 50 clicks the model read comes back
  for (const auto& item : longest["items"])
    for (int i = 10000 - 50; i < 10000; ++i) EXPECT_NE(item["id"], clicks[static_cast<std::size_t>(i)]);
}

TEST_F(Serve, BatchSearchHealthAndMetrics) {
  auto trained = llm4sbr::train::load_trained(checkpoint(), torch::kCPU, {.text = false});
  const auto& ds = *trained.dataset;
  json sessions = json::array();
  for (std::size_t i = 0; i < 3; ++i) {
    json items = json::array();
    for (const auto id : ds.test[i].prefix) items.push_back(ds.items[static_cast<std::size_t>(id - 1)].raw_id);
    sessions.push_back({{"items", items}, {"k", 10}, {"explain", false}});
  }
  const auto batch = post("/v1/recommend:batch", json{{"sessions", sessions}}.dump(), 200);
  ASSERT_EQ(batch["results"].size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) {
    const auto alone = post("/v1/recommend", sessions[i].dump(), 200);
    for (std::size_t j = 0; j < 10; ++j) {
      EXPECT_EQ(batch["results"][i]["items"][j]["id"], alone["items"][j]["id"]);
      EXPECT_NEAR(batch["results"][i]["items"][j]["score"].get<float>(), alone["items"][j]["score"].get<float>(), 1e-4);
    }
    EXPECT_TRUE(alone["intent"]["views"].empty()) << "explain=false";
  }

  const auto& title = ds.items[0].title;
  const auto word = title.substr(0, title.find(' '));
  auto found = client().Get("/v1/items", httplib::Params{{"limit", "5"}, {"query", word}}, httplib::Headers{});
  ASSERT_TRUE(found);
  ASSERT_EQ(found->status, 200);
  const auto hits = json::parse(found->body)["items"];
  EXPECT_FALSE(hits.empty());
  EXPECT_LE(hits.size(), 5u);

  EXPECT_EQ(client().Get("/healthz")->status, 200);
  EXPECT_EQ(json::parse(client().Get("/readyz")->body)["model"], "LLM4SBR(SR-GNN)");
  const std::string counted = R"(llm4sbr_requests_total{route="/v1/recommend",code="200"})";
  const auto metrics = metrics_with(counted);
  EXPECT_NE(metrics.find(counted), std::string::npos) << metrics;
  EXPECT_NE(metrics.find(R"(llm4sbr_intent_source_total{source="titles"})"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("llm4sbr_request_duration_ms_bucket"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("llm4sbr_forward_pass_sessions_count"), std::string::npos) << metrics;
}

// Connections that cost a server its workers or its memory: idle ones held open, a chunked body (which
// cpp-httplib would read past the body limit), bytes that are not UTF-8, and a second server on the same port.
TEST_F(Serve, IdleConnectionsOddBodiesAndAPortInUseDoNotTakeItDown) {
  std::vector<int> idle;
  for (int i = 0; i < 24; ++i) {
    const int fd = llm4sbr::testing::connect_loopback(port_);
    ASSERT_GE(fd, 0);
    idle.push_back(fd);
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto health = client().Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  // Held workers would answer after the 5 s read timeout; 3 s leaves room for a loaded machine.
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 3.0)
      << "24 idle connections held the workers";
  for (const int fd : idle) ::close(fd);

  httplib::Headers chunked{{"Transfer-Encoding", "chunked"}};
  auto c = client();
  auto res = c.Post("/v1/recommend", chunked, std::string("5\r\n{\"ite\r\n0\r\n\r\n"), "application/json");
  if (res) EXPECT_EQ(res->status, 411) << res->body;

  // A Content-Length that is not one number (a proxy may have read another length): 400 and the connection
  // closed, so the body is never read as a request of its own.
  for (const std::string lengths : {"Content-Length: 9\r\nContent-Length: 5", "Content-Length: -5", "Content-Length: 5, 9"}) {
    const auto answer = llm4sbr::testing::raw_exchange(
        port_, "POST /v1/recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + lengths +
                   "\r\n\r\n{\"items\": []}GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_EQ(answer.rfind("HTTP/1.1 400", 0), 0u) << lengths << "\n" << answer;
    EXPECT_NE(answer.find(R"({"error":"Content-Length)"), std::string::npos) << answer;
    EXPECT_EQ(answer.find("HTTP/1.1 200"), std::string::npos) << "a second request was read from the body:\n" << answer;
  }

  // The parser's message quotes the bad bytes; the answer must still be JSON (a 400, not a 500).
  const auto odd = post("/v1/recommend", "{\"items\": [\"\xff\xfe\"], \"k\": 1}", 400);
  EXPECT_NE(odd["error"].get<std::string>().find("not valid JSON"), std::string::npos) << odd.dump();

  const auto second = llm4sbr::testing::run_with_file_size_limit(
      {LLM4SBR_CLI, "serve", "--run", (*dir_ / "run").string(), "--port", std::to_string(port_)}, -1, 120,
      LLM4SBR_SOURCE_DIR);
  EXPECT_EQ(second.exit_code, 2) << second.output;
  EXPECT_NE(second.output.find("cannot listen"), std::string::npos) << second.output;
}

// --intent-source none: the model fed zero intents (no encoding, no localization), said in the answer.
class ServeWithoutIntents : public llm4sbr::testing::ServeFixture {
 protected:
  static void SetUpTestSuite() { start_server({"--intent-source", "none"}); }
};

TEST_F(ServeWithoutIntents, AnswersAreTheOfflineRankingOnZeroIntents) {
  auto trained = llm4sbr::train::load_trained(checkpoint(), torch::kCPU, {.text = false});
  const auto& ds = *trained.dataset;
  const std::vector<llm4sbr::data::Sample> samples(ds.test.begin(), ds.test.begin() + 10);
  auto batch = llm4sbr::models::make_batch(samples);
  batch.intents = torch::zeros({10, 2, trained.text_dim});
  torch::NoGradGuard no_grad;
  const auto offline = trained.model->forward(batch).scores;
  for (std::size_t i = 0; i < samples.size(); ++i) {
    json items = json::array();
    for (const auto id : samples[i].prefix) items.push_back(ds.items[static_cast<std::size_t>(id - 1)].raw_id);
    const auto answer = post("/v1/recommend", json{{"items", items}, {"k", 10}}.dump(), 200);
    EXPECT_EQ(answer["intent"]["source"], "none");
    EXPECT_TRUE(answer["intent"]["views"].empty());
    const auto top = std::get<0>(offline[static_cast<std::int64_t>(i)].topk(10));
    for (std::int64_t j = 0; j < 10; ++j)
      EXPECT_NEAR(answer["items"][static_cast<std::size_t>(j)]["score"].get<float>(), top[j].item<float>(), 1e-4);
  }
}

// Last (gtest runs a suite's tests in order): SIGTERM lets the server finish and exit 0.
TEST_F(Serve, ZSigtermStopsTheServerCleanly) {
  ASSERT_EQ(::kill(server_->pid, SIGTERM), 0);
  const auto finished = llm4sbr::testing::wait_process(*server_);
  delete server_;
  server_ = nullptr;
  EXPECT_EQ(finished.result.exit_code, 0) << finished.result.output;
  EXPECT_NE(finished.result.output.find("serve: stopped"), std::string::npos) << finished.result.output;
}

}  // namespace
