// The page `GET /` answers (serve/web_page.hpp), used the way a person uses it: real headless Chromium, driven
// through chromedriver's W3C WebDriver HTTP API with cpp-httplib, against the real server of serve_fixture.hpp.
// It types a word of a real title, clicks two results, and must show the server's recommendations for that
// session with their intents; clicks on a recommendation, remove and clear change the session. The page loads
// nothing from another origin. A screenshot goes to <build dir>/serve-page.png.
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <regex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "e2e/background_process.hpp"
#include "llm4sbr/train/checkpoint.hpp"
#include "serve/serve_fixture.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kChromium = "/usr/bin/chromium";
constexpr const char* kChromedriver = "/usr/bin/chromedriver";
constexpr const char* kElement = "element-6066-11e4-a52e-4f735466cecf";  // W3C: the key of an element reference

using llm4sbr::testing::free_port;

std::string base64_decode(const std::string& text) {
  static const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::uint32_t bits = 0;
  int n = 0;
  for (const char c : text) {
    const auto v = alphabet.find(c);
    if (v == std::string::npos) continue;  // padding, line breaks
    bits = (bits << 6) | static_cast<std::uint32_t>(v);
    if ((n += 6) >= 8) out.push_back(static_cast<char>((bits >> (n -= 8)) & 0xff));
  }
  return out;
}

// A headless Chromium behind chromedriver, for one test. The destructor ends the WebDriver session (which
// closes the browser) and kills chromedriver, also when the test failed half-way.
class Browser {
 public:
  explicit Browser(const fs::path& log_dir) : port_(free_port()), log_(log_dir / "chromedriver.log") {
    driver_ = llm4sbr::testing::start_process({kChromedriver, "--port=" + std::to_string(port_)}, {}, log_, 300, "/");
    http_.set_read_timeout(120, 0);
    try {
      open_session();
    } catch (...) {
      stop();  // the destructor does not run for a half-built object
      throw;
    }
  }
  ~Browser() { stop(); }
  Browser(const Browser&) = delete;
  Browser& operator=(const Browser&) = delete;

  /// A WebDriver command of this session; its "value". Throws on a WebDriver error.
  json command(const std::string& method, const std::string& path, const json& body = json::object()) {
    return call(method, "/session/" + session_ + path, body);
  }
  /// Runs `script` (a function body) in the page with `args`; what it returns.
  json run(const std::string& script, const json& args = json::array()) {
    return command("POST", "/execute/sync", {{"script", script}, {"args", args}});
  }
  /// Runs `script` until it returns something other than null (or false); fails with `what` after `seconds`.
  json wait_for(const std::string& what, const std::string& script, const json& args = json::array(),
                int seconds = 60) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    while (true) {
      if (auto value = run(script, args); !value.is_null() && value != false) return value;
      if (std::chrono::steady_clock::now() > deadline)
        throw std::runtime_error("timed out waiting for " + what + "; the page's error box: " +
                                 run("return document.querySelector('#error').textContent").dump());
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  std::vector<std::string> elements(const std::string& css) {
    std::vector<std::string> ids;
    for (const auto& e : command("POST", "/elements", {{"using", "css selector"}, {"value", css}}))
      ids.push_back(e[kElement].get<std::string>());
    return ids;
  }
  void click(const std::string& element) { command("POST", "/element/" + element + "/click"); }
  std::string attribute(const std::string& element, const std::string& name) {
    return command("GET", "/element/" + element + "/attribute/" + name).get<std::string>();
  }

 private:
  void open_session() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (true) {
      if (auto res = http_.Get("/status")) {
        const auto status = json::parse(res->body, nullptr, false);
        if (status.is_object() && status.value("value", json::object()).value("ready", false)) break;
      }
      if (std::chrono::steady_clock::now() > deadline)
        throw std::runtime_error("chromedriver did not get ready within 30 s:\n" + llm4sbr::testing::read_text(log_));
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    const json capabilities{
        {"capabilities",
         {{"alwaysMatch",
           {{"browserName", "chrome"},
            {"goog:loggingPrefs", {{"browser", "ALL"}}},
            {"goog:chromeOptions",
             {{"binary", kChromium},
              {"args", {"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                        "--window-size=1280,1000"}}}}}}}}};
    session_ = call("POST", "/session", capabilities)["sessionId"].get<std::string>();
  }
  // Ends the session (which closes the browser), then chromedriver.
  void stop() {
    if (!session_.empty()) http_.Delete("/session/" + session_);
    session_.clear();
    if (driver_.pid > 0) ::kill(driver_.pid, SIGKILL), llm4sbr::testing::wait_process(driver_);
    driver_.pid = -1;
  }
  json call(const std::string& method, const std::string& path, const json& body) {
    const auto res = method == "GET"    ? http_.Get(path)
                     : method == "POST" ? http_.Post(path, body.dump(), "application/json")
                                        : http_.Delete(path);
    if (!res) throw std::runtime_error(method + " " + path + ": chromedriver did not answer");
    const auto answer = json::parse(res->body, nullptr, false);
    if (res->status != 200 || answer.is_discarded())
      throw std::runtime_error(method + " " + path + " " + body.dump().substr(0, 300) + ": HTTP " +
                               std::to_string(res->status) + " " + res->body.substr(0, 2000));
    return answer["value"];
  }

  int port_;
  fs::path log_;
  llm4sbr::testing::Started driver_;
  httplib::Client http_{"127.0.0.1", port_};
  std::string session_;
};

class ServePage : public llm4sbr::testing::ServeFixture {
 protected:
  static void SetUpTestSuite() { start_server(); }

  // A word of a real title that finds at least two items, so that the page offers two to click.
  static std::string search_word() {
    auto trained = llm4sbr::train::load_trained(checkpoint(), torch::kCPU, {.text = false});
    const std::regex word("[A-Za-z]{4,}");
    for (const auto& item : trained.dataset->items) {
      for (std::sregex_iterator it(item.title.begin(), item.title.end(), word), end; it != end; ++it) {
        const auto found = client().Get("/v1/items", httplib::Params{{"limit", "20"}, {"query", it->str()}}, {});
        if (found && found->status == 200 && json::parse(found->body)["items"].size() >= 2) return it->str();
      }
    }
    return "";
  }
};

// What the page shows, read from its DOM.
constexpr const char* kReadPage = R"js(
  const text = (e) => (e ? e.textContent : null);
  const all = (css, root) => [...(root || document).querySelectorAll(css)];
  return {
    session: all('#session li').map((li) => li.dataset.id),
    recommendations: all('.recommendation').map((li) =>
      ({id: li.dataset.id, title: text(li.querySelector('.title')), score: text(li.querySelector('.score'))})),
    flags: all('#flags .flag').map(text),
    source: text(document.querySelector('#intent-source')),
    views: all('.view').map((v) => ({name: v.dataset.view, text: text(v.querySelector('.intent-text')),
                                     gate: text(v.querySelector('.gate')),
                                     items: all('.localized-item', v).map((li) => li.dataset.id)})),
    error: document.querySelector('#error').hidden ? '' : text(document.querySelector('#error')),
  };)js";

// Returns true once the answer for a session of arguments[0] items is on the page.
constexpr const char* kAnswered =
    "const a = document.querySelector('#answer');"
    "return a.dataset.state === 'ready' && a.dataset.sessionSize === String(arguments[0]);";

TEST_F(ServePage, GetRootIsOneSelfContainedHtmlPage) {
  auto res = client().Get("/");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), "text/html; charset=utf-8");
  const auto& page = res->body;
  EXPECT_NE(page.find("<!doctype html>"), std::string::npos);
  EXPECT_NE(page.find("id=\"query\""), std::string::npos);
  // Nothing from another host, no loaded scripts or stylesheets: only inline code and relative API calls.
  EXPECT_EQ(page.find("http://"), std::string::npos);
  EXPECT_EQ(page.find("https://"), std::string::npos);
  EXPECT_EQ(page.find("//cdn"), std::string::npos);
  EXPECT_FALSE(std::regex_search(page, std::regex("<script[^>]*\\bsrc\\s*=", std::regex::icase)));
  EXPECT_FALSE(std::regex_search(page, std::regex("<link[^>]*\\bhref\\s*=\\s*\"(?!data:)", std::regex::icase)));
  EXPECT_FALSE(std::regex_search(page, std::regex("@import|url\\(", std::regex::icase)));
  EXPECT_EQ(page.find("innerHTML"), std::string::npos) << "data goes into the page as text";

  const auto posted = client().Post("/", "{}", "application/json");
  ASSERT_TRUE(posted);
  EXPECT_EQ(posted->status, 405);
  EXPECT_EQ(posted->get_header_value("Allow"), "GET");
  const std::string counted = R"(llm4sbr_requests_total{route="/",code="200"})";
  EXPECT_NE(metrics_with(counted).find(counted), std::string::npos);
}

TEST_F(ServePage, APersonSearchesClicksAndSeesRecommendationsWithTheirIntents) {
  ASSERT_TRUE(fs::exists(kChromium) && fs::exists(kChromedriver))
      << kChromium << " or " << kChromedriver << " is missing: run scripts/install-deps.sh (Debian's chromium and "
      << "chromium-driver)";
  const auto word = search_word();
  ASSERT_FALSE(word.empty()) << "no title word finds two items";
  const std::string origin = "http://127.0.0.1:" + std::to_string(port_);

  Browser browser(dir_->path());
  browser.command("POST", "/url", {{"url", origin + "/"}});
  browser.wait_for("the most clicked items of the empty session", kAnswered, {0});

  const auto query = browser.elements("#query");
  ASSERT_EQ(query.size(), 1u);
  browser.command("POST", "/element/" + query[0] + "/value", {{"text", word}});
  browser.wait_for("two search results for '" + word + "'",
                   "const l = document.querySelector('#search-results');"
                   "return l.dataset.query === arguments[0] && l.querySelectorAll('.search-result').length >= 2;",
                   {word});
  const auto results = browser.elements(".search-result");
  ASSERT_GE(results.size(), 2u);
  const std::vector<std::string> clicked{browser.attribute(results[0], "data-id"),
                                         browser.attribute(results[1], "data-id")};
  browser.click(results[0]);
  browser.click(results[1]);
  browser.wait_for("the recommendations of the two clicks", kAnswered, {2});

  // The page shows the server's answer for the session it built, with the explanation.
  const auto shown = browser.run(kReadPage);
  EXPECT_EQ(shown["error"], "");
  EXPECT_EQ(shown["session"], json(clicked));
  const auto answer = post("/v1/recommend", json{{"items", clicked}, {"k", 20}, {"explain", true}}.dump(), 200);
  ASSERT_EQ(shown["recommendations"].size(), answer["items"].size());
  ASSERT_EQ(shown["recommendations"].size(), 20u);
  for (std::size_t i = 0; i < answer["items"].size(); ++i) {
    const auto &page = shown["recommendations"][i], &want = answer["items"][i];
    EXPECT_EQ(page["id"], want["id"]) << i;
    EXPECT_EQ(page["title"], want["title"]) << i;
    EXPECT_NEAR(std::stod(page["score"].get<std::string>()), want["score"].get<double>(), 1e-3) << i;
  }
  EXPECT_EQ(shown["source"], "titles");
  EXPECT_EQ(shown["flags"], answer["flags"]);
  bool explained = false;
  for (const auto& view : shown["views"]) {
    const auto& want = answer["intent"]["views"][view["name"].get<std::string>()];
    EXPECT_EQ(view["text"], want["text"]) << view.dump();
    EXPECT_EQ(view["items"].size(), want["items"].size()) << view.dump();
    EXPECT_NE(view["gate"].get<std::string>().find("gate "), std::string::npos);
    if ((view["name"] == "long" || view["name"] == "short") && !view["text"].get<std::string>().empty() &&
        !view["items"].empty())
      explained = true;
  }
  EXPECT_TRUE(explained) << "no long or short view with an intent text and localized items: " << shown.dump();

  // Only this server: no font, script or style from elsewhere, and the page's calls went to its own origin.
  const auto resources = browser.run("return performance.getEntriesByType('resource').map((e) => e.name);");
  EXPECT_FALSE(resources.empty());
  for (const auto& name : resources) EXPECT_EQ(name.get<std::string>().rfind(origin + "/", 0), 0u) << name;
  for (const auto& entry : browser.command("POST", "/se/log", {{"type", "browser"}}))
    EXPECT_NE(entry["level"], "SEVERE") << "the browser console: " << entry.dump();

  const auto build_dir = fs::path(LLM4SBR_CLI).parent_path().parent_path();  // LLM4SBR_CLI is <build>/bin/llm4sbr
  std::ofstream(build_dir / "serve-page.png", std::ios::binary)
      << base64_decode(browser.command("GET", "/screenshot").get<std::string>());
  EXPECT_GT(fs::file_size(build_dir / "serve-page.png"), 10000u);

  // A recommendation clicked joins the session; remove and clear take items out again.
  const auto recommended = browser.elements(".recommendation");
  ASSERT_FALSE(recommended.empty());
  const auto added = browser.attribute(recommended[0], "data-id");
  browser.click(recommended[0]);
  browser.wait_for("the recommendations of three clicks", kAnswered, {3});
  EXPECT_EQ(browser.run(kReadPage)["session"], json({clicked[0], clicked[1], added}));
  browser.click(browser.elements("#session li .remove").at(0));
  browser.wait_for("the recommendations after a remove", kAnswered, {2});
  EXPECT_EQ(browser.run(kReadPage)["session"], json({clicked[1], added}));
  browser.click(browser.elements("#clear").at(0));
  browser.wait_for("the recommendations of the cleared session", kAnswered, {0});
  const auto cleared = browser.run(kReadPage);
  EXPECT_TRUE(cleared["session"].empty());
  EXPECT_EQ(cleared["flags"], json({"empty_session_popularity"}));
  EXPECT_EQ(cleared["recommendations"][0]["score"], "–") << "a null score (popularity) is shown as a dash";

  // A 4xx of the server shows its error on the page: the page's next request goes out with k = 0.
  browser.run("const fetch0 = window.fetch;"
              "window.fetch = (url, options) => fetch0(url, options && options.body ?"
              "  {...options, body: options.body.replace('\"k\":20', '\"k\":0')} : options);");
  browser.click(browser.elements(".recommendation").at(0));
  browser.wait_for("the error of k = 0", "return document.querySelector('#answer').dataset.state === 'error';");
  const auto failed = browser.run(kReadPage);
  EXPECT_NE(failed["error"].get<std::string>().find("400: field 'k'"), std::string::npos) << failed.dump();
  EXPECT_TRUE(failed["recommendations"].empty()) << "no answer of another session stays on the page";
}

}  // namespace
