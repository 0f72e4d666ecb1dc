#include "llm4sbr/data/prepare.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string_view>
#include <unordered_map>

#include "llm4sbr/core/error.hpp"
#include "llm4sbr/data/io.hpp"

namespace llm4sbr::data {

namespace {

void validate(const PrepareOptions& opt) {
  if (opt.sessionize == SessionizeMode::kClock && opt.clock_seconds <= 0)
    throw ConfigError(fmt::format("data.clock_seconds must be > 0, got {}", opt.clock_seconds));
  if (opt.sessionize == SessionizeMode::kGap && opt.gap_seconds < 0)
    throw ConfigError(fmt::format("data.gap_seconds must be >= 0, got {}", opt.gap_seconds));
  // A session needs a prefix and a target; shorter ones could never give a sample.
  if (opt.min_session_length < 2)
    throw ConfigError(fmt::format("data.min_session_length must be >= 2, got {}", opt.min_session_length));
  if (opt.min_item_count < 0)
    throw ConfigError(fmt::format("data.min_item_count must be >= 0, got {}", opt.min_item_count));
  // 0 (or a typo's -2) kept no session and failed later with "no session left after filtering", unnamed.
  if (opt.max_sessions == 0 || opt.max_sessions < -1)
    throw ConfigError(fmt::format("data.max_sessions must be -1 (every session) or >= 1, got {}", opt.max_sessions));
  if (!(opt.test_fraction >= 0.0 && opt.test_fraction < 1.0))
    throw ConfigError(fmt::format("data.test_fraction must be in [0, 1), got {}", opt.test_fraction));
  if (!(opt.valid_fraction >= 0.0 && opt.valid_fraction < 1.0))
    throw ConfigError(fmt::format("data.valid_fraction must be in [0, 1), got {}", opt.valid_fraction));
  if (opt.max_session_length != 0 && opt.max_session_length < opt.min_session_length)
    throw ConfigError(fmt::format("data.max_session_length must be 0 (no limit) or >= data.min_session_length ({}), got {}",
                                  opt.min_session_length, opt.max_session_length));
}

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  std::int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

/// A session under construction: dense raw-item indices, before remapping.
struct WorkSession {
  std::string key;
  std::vector<std::int32_t> items;
  std::int64_t start_time = 0;
};

// Keeps the last `max_length` clicks of every longer session (0 = no limit).
void keep_last_clicks(std::vector<WorkSession>& sessions, std::int64_t max_length) {
  if (max_length <= 0) return;
  const auto max = static_cast<std::size_t>(max_length);
  for (auto& x : sessions)
    if (x.items.size() > max) x.items.erase(x.items.begin(), x.items.end() - static_cast<std::ptrdiff_t>(max));
}

/// Groups clicks into sessions, in kOrdered order: users by first appearance in the source, and the
/// sessions of one user (clock/gap modes) chronologically, which is the reference's (user, bucket)
/// order whenever the source lists users in order.
std::vector<WorkSession> sessionize(const RawDataset& raw, const PrepareOptions& opt,
                                    std::unordered_map<std::string_view, std::int32_t>& item_index,
                                    std::vector<std::string_view>& item_raw) {
  const auto& in = raw.interactions;
  std::unordered_map<std::string_view, std::size_t> user_index;
  user_index.reserve(in.size() / 4 + 16);
  item_index.reserve(in.size() / 4 + 16);
  std::vector<std::vector<std::size_t>> clicks;  // per user, interaction indices
  std::vector<std::int64_t> first_order;
  std::vector<std::int32_t> dense(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    const Interaction& x = in[i];
    const auto [uit, unew] = user_index.emplace(x.session_key, clicks.size());
    if (unew) {
      clicks.emplace_back();
      first_order.push_back(x.order);
    }
    clicks[uit->second].push_back(i);
    first_order[uit->second] = std::min(first_order[uit->second], x.order);
    const auto [iit, inew] = item_index.emplace(x.item, static_cast<std::int32_t>(item_raw.size()));
    if (inew) item_raw.push_back(x.item);
    dense[i] = iit->second;
  }
  std::vector<std::size_t> users(clicks.size());
  std::iota(users.begin(), users.end(), 0);
  std::stable_sort(users.begin(), users.end(),
                   [&](std::size_t a, std::size_t b) { return first_order[a] < first_order[b]; });

  std::vector<WorkSession> out;
  out.reserve(opt.sessionize == SessionizeMode::kUser ? users.size() : users.size() * 4);
  for (const std::size_t u : users) {
    std::vector<std::size_t>& c = clicks[u];
    std::stable_sort(c.begin(), c.end(), [&](std::size_t a, std::size_t b) {
      if (in[a].timestamp != in[b].timestamp) return in[a].timestamp < in[b].timestamp;
      return in[a].order < in[b].order;
    });
    const std::string& user = in[c.front()].session_key;
    WorkSession* cur = nullptr;
    std::int64_t bucket = 0;
    std::int64_t k = 0;
    for (std::size_t j = 0; j < c.size(); ++j) {
      const Interaction& x = in[c[j]];
      bool fresh = (cur == nullptr);
      if (!fresh && opt.sessionize == SessionizeMode::kClock) {
        fresh = floor_div(x.timestamp, opt.clock_seconds) != bucket;
      } else if (!fresh && opt.sessionize == SessionizeMode::kGap) {
        fresh = x.timestamp - in[c[j - 1]].timestamp > opt.gap_seconds;
      }
      if (fresh) {
        cur = &out.emplace_back();
        cur->start_time = x.timestamp;
        switch (opt.sessionize) {
          case SessionizeMode::kUser:
            cur->key = user;
            break;
          case SessionizeMode::kClock:
            bucket = floor_div(x.timestamp, opt.clock_seconds);
            cur->key = fmt::format("{}@{}", user, bucket);
            break;
          case SessionizeMode::kGap:
            cur->key = fmt::format("{}#{}", user, k++);
            break;
        }
      }
      cur->items.push_back(dense[c[j]]);
    }
  }
  return out;
}

void drop_short(std::vector<WorkSession>& s, std::int64_t min_len) {
  std::erase_if(s, [&](const WorkSession& x) { return static_cast<std::int64_t>(x.items.size()) < min_len; });
}

std::vector<std::int64_t> count_items(const std::vector<WorkSession>& s, std::size_t n_items) {
  std::vector<std::int64_t> count(n_items, 0);
  for (const auto& x : s)
    for (const auto i : x.items) ++count[static_cast<std::size_t>(i)];
  return count;
}

void filter_sessions(std::vector<WorkSession>& s, const PrepareOptions& opt, std::size_t n_items) {
  if (!opt.iterative_filter) {
    // The reference (filter_sessions of Handle_Data_Prompt.py): counts over every session, short
    // ones included, then keeps sessions that are long enough and hold only frequent items.
    const auto count = count_items(s, n_items);
    std::erase_if(s, [&](const WorkSession& x) {
      if (static_cast<std::int64_t>(x.items.size()) < opt.min_session_length) return true;
      return std::any_of(x.items.begin(), x.items.end(),
                         [&](std::int32_t i) { return count[static_cast<std::size_t>(i)] < opt.min_item_count; });
    });
    return;
  }
  while (true) {
    drop_short(s, opt.min_session_length);
    const auto count = count_items(s, n_items);
    bool changed = false;
    for (auto& x : s) {
      const std::size_t before = x.items.size();
      std::erase_if(x.items,
                    [&](std::int32_t i) { return count[static_cast<std::size_t>(i)] < opt.min_item_count; });
      changed = changed || x.items.size() != before;
    }
    if (!changed) break;
  }
}

void add_samples(const Session& s, std::int64_t session_index, bool augment, std::vector<Sample>& out) {
  const std::size_t m = s.items.size();
  const std::size_t last = augment ? m - 1 : std::min<std::size_t>(1, m - 1);
  for (std::size_t i = 1; i <= last; ++i) {
    Sample x;
    x.id = static_cast<std::int64_t>(out.size());
    x.session = session_index;
    x.prefix.assign(s.items.begin(), s.items.begin() + static_cast<std::ptrdiff_t>(m - i));
    x.target = s.items[m - i];
    out.push_back(std::move(x));
  }
}

}  // namespace

const SettingsSchema& data_settings() {
  using enum SettingType;
  static const SettingsSchema schema{
      "data",
      {{"sessionize", kString}, {"clock_seconds", kInteger}, {"gap_seconds", kInteger}, {"min_session_length", kInteger},
       {"min_item_count", kInteger}, {"iterative_filter", kBool}, {"split", kString}, {"test_fraction", kNumber},
       {"test_sessions", kInteger}, {"valid_fraction", kNumber}, {"augment", kBool}, {"max_sessions", kInteger},
       {"max_session_length", kInteger}, {"skip_malformed", kBool}}};
  return schema;
}

PrepareOptions prepare_options_from_config(const Config& cfg) {
  PrepareOptions o;
  const auto mode = cfg.get<std::string>("data.sessionize", "user");
  if (mode == "user") {
    o.sessionize = SessionizeMode::kUser;
  } else if (mode == "clock") {
    o.sessionize = SessionizeMode::kClock;
  } else if (mode == "gap") {
    o.sessionize = SessionizeMode::kGap;
  } else {
    throw ConfigError(fmt::format("config key 'data.sessionize': unknown value '{}' (expected user, clock or gap)", mode));
  }
  o.clock_seconds = cfg.get<std::int64_t>("data.clock_seconds", o.clock_seconds);
  o.gap_seconds = cfg.get<std::int64_t>("data.gap_seconds", o.gap_seconds);
  o.min_session_length = cfg.get<std::int64_t>("data.min_session_length", o.min_session_length);
  o.min_item_count = cfg.get<std::int64_t>("data.min_item_count", o.min_item_count);
  o.iterative_filter = cfg.get<bool>("data.iterative_filter", o.iterative_filter);
  const auto split = cfg.get<std::string>("data.split", "ordered");
  if (split == "ordered") {
    o.split = SplitMode::kOrdered;
  } else if (split == "time") {
    o.split = SplitMode::kTime;
  } else {
    throw ConfigError(fmt::format("config key 'data.split': unknown value '{}' (expected ordered or time)", split));
  }
  o.test_fraction = cfg.get<double>("data.test_fraction", o.test_fraction);
  o.test_sessions = cfg.get<std::int64_t>("data.test_sessions", o.test_sessions);
  o.valid_fraction = cfg.get<double>("data.valid_fraction", o.valid_fraction);
  o.augment = cfg.get<bool>("data.augment", o.augment);
  o.max_sessions = cfg.get<std::int64_t>("data.max_sessions", o.max_sessions);
  o.max_session_length = cfg.get<std::int64_t>("data.max_session_length", o.max_session_length);
  validate(o);
  return o;
}

PreparedDataset prepare(const RawDataset& raw, const PrepareOptions& opt) {
  validate(opt);
  std::unordered_map<std::string_view, std::int32_t> item_index;
  std::vector<std::string_view> item_raw;
  std::vector<WorkSession> sessions = sessionize(raw, opt, item_index, item_raw);
  const std::size_t n_formed = sessions.size();

  if (opt.split == SplitMode::kTime)
    std::stable_sort(sessions.begin(), sessions.end(),
                     [](const WorkSession& a, const WorkSession& b) { return a.start_time < b.start_time; });
  if (opt.max_sessions >= 0 && static_cast<std::size_t>(opt.max_sessions) < sessions.size())
    sessions.resize(static_cast<std::size_t>(opt.max_sessions));

  filter_sessions(sessions, opt, item_raw.size());
  if (sessions.empty())
    throw InputError(raw.name, 0, "",
                     fmt::format("no session left after filtering ({} interactions, {} sessions formed; "
                                 "min_session_length {}, min_item_count {})",
                                 raw.interactions.size(), n_formed, opt.min_session_length, opt.min_item_count));
  keep_last_clicks(sessions, opt.max_session_length);

  // Split sizes. The reference keeps int(0.9 * n) sessions for training, so the test share is
  // n - floor((1 - f) * n): 2,237 of Beauty's 22,363 sessions, 5,313 of ML-1M's 53,121 (Table 2).
  const auto n = static_cast<std::int64_t>(sessions.size());
  const std::int64_t n_test =
      opt.test_sessions >= 0
          ? opt.test_sessions
          : n - static_cast<std::int64_t>(std::floor((1.0 - opt.test_fraction) * static_cast<double>(n)));
  if (n_test >= n)
    throw ConfigError(fmt::format("{} test sessions requested but only {} sessions are left after filtering; "
                                  "nothing would be left to train on",
                                  n_test, n));
  const std::int64_t n_rest = n - n_test;
  const auto n_valid = static_cast<std::int64_t>(std::floor(opt.valid_fraction * static_cast<double>(n_rest)));
  const std::int64_t n_train = n_rest - n_valid;

  PreparedDataset ds;
  ds.name = raw.name;
  ds.skipped_rows = raw.skipped_rows;
  // Model ids 1..N in order of first appearance in split order.
  std::vector<std::int64_t> model_id(item_raw.size(), 0);
  ds.sessions.reserve(sessions.size());
  for (auto& w : sessions) {
    Session s;
    s.key = tsv_field(w.key);  // as items.tsv and sessions.tsv hold them: a dataset read back is the same
    s.start_time = w.start_time;
    s.items.reserve(w.items.size());
    for (const auto i : w.items) {
      std::int64_t& id = model_id[static_cast<std::size_t>(i)];
      if (id == 0) {
        id = static_cast<std::int64_t>(ds.items.size()) + 1;
        const std::string raw_id(item_raw[static_cast<std::size_t>(i)]);
        const auto t = raw.titles.find(raw_id);
        ds.items.push_back({id, tsv_field(raw_id), t == raw.titles.end() ? std::string() : tsv_field(t->second)});
      }
      s.items.push_back(id);
    }
    ds.sessions.push_back(std::move(s));
  }

  for (std::int64_t k = 0; k < n; ++k) {
    std::vector<Sample>& out = k < n_train ? ds.train : (k < n_rest ? ds.valid : ds.test);
    add_samples(ds.sessions[static_cast<std::size_t>(k)], k, opt.augment, out);
  }
  spdlog::info("{}: {} sessions ({} train / {} valid / {} test), {} items, {} / {} / {} samples", ds.name, n,
               n_train, n_valid, n_test, ds.items.size(), ds.train.size(), ds.valid.size(), ds.test.size());
  return ds;
}

nlohmann::json dataset_stats(const PreparedDataset& ds) {
  // Split of each session: the split of its samples (sessions are stored in split order), or of
  // the session before it when it has none.
  std::vector<int> label(ds.sessions.size(), -1);
  const std::vector<Sample>* splits[3] = {&ds.train, &ds.valid, &ds.test};
  for (int k = 0; k < 3; ++k)
    for (const auto& x : *splits[k])
      if (x.session >= 0 && static_cast<std::size_t>(x.session) < label.size())
        label[static_cast<std::size_t>(x.session)] = k;
  std::int64_t per_split[3] = {0, 0, 0};
  int prev = 0;
  for (auto& l : label) {
    if (l < 0) l = prev;
    prev = l;
    ++per_split[l];
  }

  std::int64_t clicks = 0;
  for (const auto& s : ds.sessions) clicks += static_cast<std::int64_t>(s.items.size());
  std::int64_t prefix_total = 0;
  std::int64_t n_samples = 0;
  for (const auto* sp : splits)
    for (const auto& x : *sp) {
      prefix_total += static_cast<std::int64_t>(x.prefix.size());
      ++n_samples;
    }

  nlohmann::json j;
  j["name"] = ds.name;
  j["sessions"] = ds.sessions.size();
  j["items"] = ds.items.size();
  j["clicks"] = clicks;
  j["train_samples"] = ds.train.size();
  j["valid_samples"] = ds.valid.size();
  j["test_samples"] = ds.test.size();
  j["avg_prefix_length"] = n_samples > 0 ? static_cast<double>(prefix_total) / static_cast<double>(n_samples) : 0.0;
  j["avg_session_length"] =
      ds.sessions.empty() ? 0.0 : static_cast<double>(clicks) / static_cast<double>(ds.sessions.size());
  j["train_sessions"] = per_split[0];
  j["valid_sessions"] = per_split[1];
  j["test_sessions"] = per_split[2];
  j["skipped_rows"] = ds.skipped_rows;
  return j;
}

}  // namespace llm4sbr::data
