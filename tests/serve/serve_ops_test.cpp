// The service under operations, as a real process on a free port (serve_fixture.hpp): sessions the server keeps
// (session_id + click: bounded count, TTL), a reload by POST /admin/reload or SIGHUP while requests flow (a bad
// checkpoint keeps the old model), 64 concurrent clients mixing good and bad requests (no 5xx, every good
// answer right), and a client that sends its headers one byte a second.
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/socket.h>
#include <unistd.h>
#include <torch/torch.h>

#include <atomic>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "llm4sbr/train/checkpoint.hpp"
#include "serve/serve_fixture.hpp"

using nlohmann::json;

namespace {

constexpr const char* kToken = "LLM4SBR_ADMIN_TOKEN=let-me-in";

class ServeOps : public llm4sbr::testing::ServeFixture {
 protected:
  static void SetUpTestSuite() {
    start_server({"--session-ttl", "2", "--max-sessions", "3", "--max-session-length", "4", "--request-timeout", "3"},
                 {kToken});
  }
  // Raw ids of the first test sessions' prefixes.
  static std::vector<json> test_sessions(std::size_t n) {
    auto trained = llm4sbr::train::load_trained(checkpoint(), torch::kCPU, {.text = false});
    const auto& ds = *trained.dataset;
    std::vector<json> out;
    for (std::size_t i = 0; i < n && i < ds.test.size(); ++i) {
      json items = json::array();
      for (const auto id : ds.test[i].prefix) items.push_back(ds.items[static_cast<std::size_t>(id - 1)].raw_id);
      out.push_back(items);
    }
    return out;
  }
  static httplib::Headers admin() { return {{"Authorization", "Bearer let-me-in"}}; }
  static std::int64_t version() { return json::parse(client().Get("/readyz")->body)["version"].get<std::int64_t>(); }
};

// Same answer, item for item, up to float rounding of another batch shape.
void expect_same_answer(const json& got, const json& want) {
  ASSERT_EQ(got["items"].size(), want["items"].size()) << got.dump();
  for (std::size_t j = 0; j < got["items"].size(); ++j)
    EXPECT_NEAR(got["items"][j]["score"].get<float>(), want["items"][j]["score"].get<float>(), 1e-4) << j;
  EXPECT_EQ(got["intent"]["views"]["short"]["text"], want["intent"]["views"]["short"]["text"]);
}

TEST_F(ServeOps, ASessionSentClickByClickIsAnsweredAsTheWholeSession) {
  const auto sessions = test_sessions(40);
  json longest;
  for (const auto& s : sessions)
    if (s.size() >= 3 && (longest.is_null() || s.size() > longest.size())) longest = s;
  ASSERT_FALSE(longest.is_null());
  json last;
  for (const auto& click : longest) last = post("/v1/recommend", json{{"session_id", "visitor-1"}, {"click", click}, {"k", 10}}.dump(), 200);
  EXPECT_EQ(last["session_id"], "visitor-1");
  if (longest.size() > 4) EXPECT_NE(last["flags"].dump().find("session_truncated"), std::string::npos) << last.dump();
  // The server keeps the last --max-session-length (4) clicks: the answer to those four.
  json window(longest.end() - std::min<std::ptrdiff_t>(4, static_cast<std::ptrdiff_t>(longest.size())), longest.end());
  expect_same_answer(last, post("/v1/recommend", json{{"items", window}, {"k", 10}}.dump(), 200));
  // Without a click: the session as it is.
  expect_same_answer(post("/v1/recommend", json{{"session_id", "visitor-1"}, {"k", 10}}.dump(), 200), last);
  // An unknown click is listed, and not kept: it would push a known click out of the window.
  const auto unknown = post("/v1/recommend", json{{"session_id", "visitor-1"}, {"click", "no-such-item"}, {"k", 10}}.dump(), 200);
  EXPECT_EQ(unknown["unknown_items"], json::array({"no-such-item"}));
  expect_same_answer(post("/v1/recommend", json{{"session_id", "visitor-1"}, {"k", 10}}.dump(), 200), last);
  // A batch refused for its second entry keeps no click of its first (a client's retry would add it twice).
  const json refused{{"sessions", json::array({json{{"session_id", "visitor-1"}, {"click", longest[0]}},
                                                json{{"items", json::array()}, {"k", 0}}})}};
  EXPECT_NE(post("/v1/recommend:batch", refused.dump(), 400)["error"].get<std::string>().find("sessions[1]"), std::string::npos);
  expect_same_answer(post("/v1/recommend", json{{"session_id", "visitor-1"}, {"k", 10}}.dump(), 200), last);

  EXPECT_NE(post("/v1/recommend", json{{"session_id", ""}}.dump(), 400)["error"].get<std::string>().find("'session_id'"),
            std::string::npos);
  EXPECT_NE(post("/v1/recommend", json{{"session_id", "a"}, {"items", json::array()}}.dump(), 400)["error"].get<std::string>().find(
                "either"),
            std::string::npos);
  EXPECT_NE(post("/v1/recommend", json{{"items", json::array()}, {"click", "x"}}.dump(), 400)["error"].get<std::string>().find(
                "'click'"),
            std::string::npos);
}

TEST_F(ServeOps, KeptSessionsAreBoundedInNumberAndTime) {
  const auto sessions = test_sessions(5);
  const auto first = sessions[0][0];
  post("/v1/recommend", json{{"session_id", "s0"}, {"click", first}}.dump(), 200);
  for (int i = 1; i <= 3; ++i)  // --max-sessions 3: s0 is the least recently used, forgotten
    post("/v1/recommend", json{{"session_id", "s" + std::to_string(i)}, {"click", first}}.dump(), 200);
  const auto forgotten = post("/v1/recommend", json{{"session_id", "s0"}}.dump(), 200);
  EXPECT_NE(forgotten["flags"].dump().find("empty_session_popularity"), std::string::npos) << forgotten.dump();
  EXPECT_NE(client().Get("/metrics")->body.find("llm4sbr_sessions_held 3"), std::string::npos);

  post("/v1/recommend", json{{"session_id", "t"}, {"click", first}}.dump(), 200);
  std::this_thread::sleep_for(std::chrono::milliseconds(3000));  // --session-ttl 2
  const auto expired = post("/v1/recommend", json{{"session_id", "t"}}.dump(), 200);
  EXPECT_NE(expired["flags"].dump().find("empty_session_popularity"), std::string::npos) << expired.dump();
}

// Reloads while 4 clients keep asking: no request fails; a checkpoint that does not load leaves version 1 serving.
TEST_F(ServeOps, AReloadSwapsTheModelWithoutFailingARequest) {
  const auto sessions = test_sessions(20);
  std::atomic<bool> stop{false};
  std::atomic<int> answered{0}, failed{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < 4; ++c)
    clients.emplace_back([&, c] {
      auto cl = client();
      for (std::size_t i = static_cast<std::size_t>(c); !stop; ++i) {
        auto res = cl.Post("/v1/recommend", json{{"items", sessions[i % sessions.size()]}, {"k", 5}}.dump(), "application/json");
        (res && res->status == 200 ? answered : failed)++;
      }
    });

  EXPECT_EQ(client().Post("/admin/reload", "", "application/json")->status, 401);
  const auto bad = post("/admin/reload", json{{"checkpoint", (*dir_ / "nowhere.pt").string()}}.dump(), 422, admin());
  EXPECT_NE(bad["error"].get<std::string>().find("version 1 still serves"), std::string::npos) << bad.dump();
  EXPECT_EQ(version(), 1);
  const auto good = post("/admin/reload", "", 200, admin());
  EXPECT_EQ(good["version"], 2);
  EXPECT_EQ(good["model"], "LLM4SBR(SR-GNN)");

  ASSERT_EQ(::kill(server_->pid, SIGHUP), 0);
  for (int i = 0; i < 600 && version() != 3; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(version(), 3);
  stop = true;
  for (auto& t : clients) t.join();
  EXPECT_EQ(failed, 0);
  EXPECT_GT(answered, 0);
  EXPECT_NE(client().Get("/metrics")->body.find("version=\"3\""), std::string::npos);
}

// 64 clients for a bounded time, each mixing good sessions with malformed, mistyped and oversized requests:
// every good answer is the one the same session got alone, every bad one a 4xx, never a 5xx or a crash.
TEST_F(ServeOps, SixtyFourClientsMixingGoodAndBadRequestsGetNoServerError) {
  const auto sessions = test_sessions(32);
  std::vector<json> reference;
  for (const auto& s : sessions) reference.push_back(post("/v1/recommend", json{{"items", s}, {"k", 10}}.dump(), 200));
  const std::vector<std::string> bad{"{\"items\": [", R"({"items": 3})", R"({"items": [], "k": -1})",
                                     R"({"items": [{"a": 1}]})", R"({"session_id": 7})", "[]", "",
                                     json{{"items", json::array({std::string(1 << 21, 'x')})}}.dump()};
  std::atomic<int> good{0}, rejected{0}, server_errors{0}, wrong{0}, lost{0};
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(8);
  std::vector<std::thread> clients;
  for (int c = 0; c < 64; ++c)
    clients.emplace_back([&, c] {
      std::mt19937 rng(static_cast<unsigned>(c));
      auto cl = client();
      while (std::chrono::steady_clock::now() < deadline) {
        if (rng() % 3 == 0) {
          auto res = cl.Post("/v1/recommend", bad[rng() % bad.size()], "application/json");
          if (!res) ++lost;  // a 413 may close the connection: the client opens a new one
          else if (res->status >= 500) ++server_errors;
          else if (res->status >= 400) ++rejected;
          continue;
        }
        const auto i = rng() % sessions.size();
        auto res = cl.Post("/v1/recommend", json{{"items", sessions[i]}, {"k", 10}}.dump(), "application/json");
        if (!res) { ++lost; continue; }
        if (res->status != 200) { ++server_errors; continue; }
        const auto got = json::parse(res->body);
        bool same = got["items"].size() == reference[i]["items"].size();
        for (std::size_t j = 0; same && j < got["items"].size(); ++j)
          same = std::abs(got["items"][j]["score"].get<float>() - reference[i]["items"][j]["score"].get<float>()) < 1e-4;
        (same ? good : wrong)++;
      }
    });
  for (auto& t : clients) t.join();
  EXPECT_EQ(server_errors, 0);
  EXPECT_EQ(wrong, 0);
  EXPECT_GT(good, 64);
  EXPECT_GT(rejected, 64);
  EXPECT_LE(lost, rejected / 2) << "requests without an answer";
  EXPECT_EQ(client().Get("/healthz")->status, 200);
  EXPECT_EQ(::waitpid(server_->pid, nullptr, WNOHANG), 0) << "the server died";
}

// A client that sends its request one byte a second, headers or body, is cut off at --request-timeout (3 s),
// and the server answers others meanwhile.
TEST_F(ServeOps, AClientSendingOneByteASecondIsTimedOut) {
  const std::string headers = "POST /v1/recommend HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n";
  const std::string body = "{\"items\":[]}";
  for (const bool headers_at_once : {false, true}) {
    const int fd = llm4sbr::testing::connect_loopback(port_);
    ASSERT_GE(fd, 0);
    if (headers_at_once) ASSERT_EQ(::send(fd, headers.data(), headers.size(), MSG_NOSIGNAL), static_cast<ssize_t>(headers.size()));
    const std::string slow = headers_at_once ? body : headers + body;
    const auto t0 = std::chrono::steady_clock::now();
    bool cut = false;
    for (std::size_t i = 0; i < slow.size() && !cut; ++i) {
      cut = ::send(fd, &slow[i], 1, MSG_NOSIGNAL) != 1;
      EXPECT_EQ(client().Get("/healthz")->status, 200);
      char byte;
      if (!cut && ::recv(fd, &byte, 1, MSG_DONTWAIT) == 0) cut = true;  // closed by the server
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ::close(fd);
    EXPECT_TRUE(cut) << (headers_at_once ? "the slow body" : "the slow headers") << " never cut off";
    EXPECT_LT(seconds, 8) << "cut off after " << seconds << " s";
  }
}

}  // namespace
