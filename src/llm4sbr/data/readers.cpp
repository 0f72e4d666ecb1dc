#include "llm4sbr/data/readers.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <functional>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "llm4sbr/core/error.hpp"
#include "llm4sbr/data/text_io.hpp"

namespace llm4sbr::data {

namespace fs = std::filesystem;
using namespace textio;  // the text and CSV toolkit every reader uses

namespace {

/// Runs `parse_row` and, with skip_malformed, turns an InputError into a skipped row.
template <typename F>
void guarded_row(const ReadOptions& opt, RawDataset& raw, F&& parse_row) {
  if (!opt.skip_malformed) {
    parse_row();
    return;
  }
  try {
    parse_row();
  } catch (const InputError& e) {
    if (raw.skipped_rows < 5) spdlog::warn("skipping malformed row: {}", e.what());
    ++raw.skipped_rows;
  }
}

void log_skipped(const RawDataset& raw) {
  if (raw.skipped_rows > 0)
    spdlog::warn("{}: skipped {} malformed rows (skip_malformed is on)", raw.name, raw.skipped_rows);
}

std::string format_movie_title(std::string_view title, std::string_view genres) {
  if (genres.empty()) return std::string(title);
  std::string out;
  out.reserve(title.size() + genres.size() + 4);
  out.append(title).append(" -- ").append(genres);
  return out;
}

// ---------------------------------------------------------------------------------------------
// MovieLens

void read_ml_latest_movies(const fs::path& path, RawDataset& raw, const ReadOptions& opt) {
  CsvTable t(path);
  const int c_id = t.require("movieId");
  const int c_title = t.require("title");
  const int c_genres = t.find("genres");
  std::vector<std::string> f;
  while (t.next(f)) {
    guarded_row(opt, raw, [&] {
      t.check_row(f);
      const std::int64_t id = parse_int(f[c_id], t.file(), t.line(), "movieId");
      raw.titles.emplace(std::to_string(id),
                         format_movie_title(f[c_title], c_genres >= 0 ? std::string_view(f[c_genres]) : ""));
    });
  }
}

// MovieLens rating files (ratings.dat, u.data): user, item, rating, timestamp per line, one separator.
void read_ratings(const fs::path& path, const std::vector<std::string>& names, std::size_t bytes_per_row,
                  const std::function<void(std::string_view, std::vector<std::string_view>&)>& split,
                  const ReadOptions& opt, RawDataset& raw) {
  const std::string file = path.string();
  const std::string text = read_text_file(path);
  LineCursor lines(text);
  std::string_view line;
  std::vector<std::string_view> f;
  raw.interactions.reserve(text.size() / bytes_per_row);
  while (lines.next(line)) {
    if (trim(line).empty()) continue;
    guarded_row(opt, raw, [&] {
      split(line, f);
      if (f.size() != names.size()) throw_field_count(file, lines.line_no(), names, f.size());
      const std::int64_t user = parse_int(f[0], file, lines.line_no(), names[0]);
      const std::int64_t item = parse_int(f[1], file, lines.line_no(), names[1]);
      check_number(f[2], file, lines.line_no(), names[2]);
      const std::int64_t ts = parse_int(f[3], file, lines.line_no(), names[3], "an integer Unix time");
      const auto order = static_cast<std::int64_t>(raw.interactions.size());
      raw.interactions.push_back({std::to_string(user), std::to_string(item), ts, order});
    });
  }
}

}  // namespace

RawDataset read_movielens_1m(const fs::path& dir, const ReadOptions& opt) {
  RawDataset raw;
  raw.name = "ml-1m";
  read_ratings(dir / "ratings.dat", {"UserID", "MovieID", "Rating", "Timestamp"}, 24,
               [](std::string_view line, std::vector<std::string_view>& f) { split_str(line, "::", f); }, opt, raw);
  {
    const fs::path path = dir / "movies.dat";
    const std::string file = path.string();
    const std::string text = decode_latin1_file(read_text_file(path));
    LineCursor lines(text);
    std::string_view line;
    while (lines.next(line)) {
      if (trim(line).empty()) continue;
      guarded_row(opt, raw, [&] {
        // MovieID::Title::Genres; split at the first and the last separator.
        const std::size_t a = line.find("::");
        const std::size_t b = line.rfind("::");
        if (a == std::string_view::npos)
          throw InputError(file, lines.line_no(), "Title", "expected 3 '::'-separated fields, found 1 (short row)");
        if (b == a)
          throw InputError(file, lines.line_no(), "Genres", "expected 3 '::'-separated fields, found 2 (short row)");
        const std::int64_t id = parse_int(line.substr(0, a), file, lines.line_no(), "MovieID");
        raw.titles.emplace(std::to_string(id),
                           format_movie_title(line.substr(a + 2, b - a - 2), line.substr(b + 2)));
      });
    }
  }
  log_skipped(raw);
  return raw;
}

RawDataset read_movielens_100k(const fs::path& dir, const ReadOptions& opt) {
  RawDataset raw;
  raw.name = "ml-100k";
  read_ratings(dir / "u.data", {"user id", "item id", "rating", "timestamp"}, 18,
               [](std::string_view line, std::vector<std::string_view>& f) { split_char(line, '\t', f); }, opt, raw);
  // u.genre: "name|index"; the genre flags of u.item follow this index order.
  std::vector<std::string> genres;
  {
    const fs::path path = dir / "u.genre";
    const std::string file = path.string();
    const std::string text = decode_latin1_file(read_text_file(path));
    LineCursor lines(text);
    std::string_view line;
    std::vector<std::string_view> f;
    while (lines.next(line)) {
      if (trim(line).empty()) continue;
      split_char(line, '|', f);
      if (f.size() != 2) throw_field_count(file, lines.line_no(), {"genre", "index"}, f.size());
      const std::int64_t idx = parse_int(f[1], file, lines.line_no(), "index");
      if (idx < 0 || idx > 1000) throw InputError(file, lines.line_no(), "index", "genre index out of range");
      if (genres.size() <= static_cast<std::size_t>(idx)) genres.resize(static_cast<std::size_t>(idx) + 1);
      genres[static_cast<std::size_t>(idx)] = std::string(f[0]);
    }
    if (genres.empty()) throw InputError(file, 0, "", "no genres listed");
  }
  {
    const fs::path path = dir / "u.item";
    const std::string file = path.string();
    const std::string text = decode_latin1_file(read_text_file(path));
    std::vector<std::string> names = {"movie id", "movie title", "release date", "video release date", "IMDb URL"};
    for (const auto& g : genres) names.push_back("genre " + g);
    LineCursor lines(text);
    std::string_view line;
    std::vector<std::string_view> f;
    std::string genre_text;
    while (lines.next(line)) {
      if (trim(line).empty()) continue;
      guarded_row(opt, raw, [&] {
        split_char(line, '|', f);
        if (f.size() != names.size()) throw_field_count(file, lines.line_no(), names, f.size());
        const std::int64_t id = parse_int(f[0], file, lines.line_no(), names[0]);
        genre_text.clear();
        for (std::size_t g = 0; g < genres.size(); ++g) {
          const std::string_view flag = f[5 + g];
          if (flag == "1") {
            if (!genre_text.empty()) genre_text.push_back('|');
            genre_text.append(genres[g]);
          } else if (flag != "0") {
            throw InputError(file, lines.line_no(), names[5 + g],
                             fmt::format("expected a genre flag 0 or 1, found '{}'", flag));
          }
        }
        raw.titles.emplace(std::to_string(id), format_movie_title(f[1], genre_text));
      });
    }
  }
  log_skipped(raw);
  return raw;
}

RawDataset read_movielens_latest(const fs::path& dir, const ReadOptions& opt) {
  RawDataset raw;
  raw.name = "ml-latest";
  {
    CsvTable t(dir / "ratings.csv");
    const int c_user = t.require("userId");
    const int c_movie = t.require("movieId");
    const int c_rating = t.find("rating");
    const int c_ts = t.require("timestamp");
    std::vector<std::string> f;
    while (t.next(f)) {
      guarded_row(opt, raw, [&] {
        t.check_row(f);
        const std::int64_t user = parse_int(f[c_user], t.file(), t.line(), "userId");
        const std::int64_t movie = parse_int(f[c_movie], t.file(), t.line(), "movieId");
        if (c_rating >= 0) check_number(f[c_rating], t.file(), t.line(), "rating");
        const std::int64_t ts = parse_int(f[c_ts], t.file(), t.line(), "timestamp", "an integer Unix time");
        const auto order = static_cast<std::int64_t>(raw.interactions.size());
        raw.interactions.push_back({std::to_string(user), std::to_string(movie), ts, order});
      });
    }
  }
  read_ml_latest_movies(dir / "movies.csv", raw, opt);
  log_skipped(raw);
  return raw;
}

// ---------------------------------------------------------------------------------------------
// Amazon Beauty 2014

namespace {

struct BeautyUser {
  std::size_t line = 0;
  std::string_view reviewer;
  std::vector<std::string_view> asins;
  bool ok = false;
};

struct RankLine {
  std::vector<std::int64_t> values;
  bool ok = false;
};

/// Reads a TiCoSeRec file ("u v v v ..." on line u).
std::vector<RankLine> read_rank_file(const fs::path& path, const char* field, const ReadOptions& opt,
                                     std::int64_t& warned) {
  const std::string file = path.string();
  const std::string text = read_text_file(path);
  std::vector<RankLine> out;
  LineCursor lines(without_trailing_blank_lines(text));
  std::string_view line;
  std::vector<std::string_view> tok;
  while (lines.next(line)) {
    RankLine& r = out.emplace_back();
    try {
      split_ws(line, tok);
      if (tok.empty()) throw InputError(file, lines.line_no(), "user", "empty line (expected 'u value ...')");
      const std::int64_t u = parse_int(tok[0], file, lines.line_no(), "user");
      if (u != static_cast<std::int64_t>(lines.line_no()))
        throw InputError(file, lines.line_no(), "user",
                         fmt::format("line {} holds user {}; users must be numbered by line", lines.line_no(), u));
      if (tok.size() < 2) throw InputError(file, lines.line_no(), field, "no values after the user number (short row)");
      r.values.reserve(tok.size() - 1);
      for (std::size_t k = 1; k < tok.size(); ++k) r.values.push_back(parse_int(tok[k], file, lines.line_no(), field));
      r.ok = true;
    } catch (const InputError& e) {
      if (!opt.skip_malformed) throw;
      if (warned++ < 5) spdlog::warn("skipping malformed row: {}", e.what());
    }
  }
  return out;
}

nlohmann::json read_json_file(const fs::path& path) {
  const std::string text = read_text_file(path);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    const std::size_t byte = std::min<std::size_t>(e.byte, text.size());
    const std::size_t line = 1 + static_cast<std::size_t>(std::count(text.begin(), text.begin() + byte, '\n'));
    throw InputError(path.string(), line, "", std::string("invalid JSON: ") + e.what());
  } catch (const nlohmann::json::exception& e) {  // a number beyond double's range (fuzz/dataset_reader_fuzz.cpp)
    throw InputError(path.string(), 0, "", std::string("invalid JSON: ") + e.what());
  }
}

}  // namespace

RawDataset read_amazon_beauty(const fs::path& dir, const ReadOptions& opt) {
  RawDataset raw;
  raw.name = "beauty";
  const fs::path seq_path = dir / "user_sequence.txt";
  const fs::path item_path = dir / "Beauty_item_org_rank.txt";
  const fs::path time_path = dir / "Beauty_time_org_rank.txt";
  const fs::path session_map_path = dir / "session_id_to_int.json";
  const fs::path item_map_path = dir / "item_id_to_int.json";
  const fs::path lookup_path = dir / "products_lookup.csv";
  const std::string seq_file = seq_path.string();

  // 1. Click order per user (GRAM).
  const std::string seq_text = read_text_file(seq_path);
  std::vector<BeautyUser> users;
  users.reserve(static_cast<std::size_t>(std::count(seq_text.begin(), seq_text.end(), '\n')) + 1);
  {
    LineCursor lines(without_trailing_blank_lines(seq_text));
    std::string_view line;
    std::vector<std::string_view> tok;
    while (lines.next(line)) {
      BeautyUser& u = users.emplace_back();
      u.line = lines.line_no();
      split_ws(line, tok);
      guarded_row(opt, raw, [&] {
        for (std::size_t k = 0; k < tok.size(); ++k)
          check_utf8(tok[k], seq_file, u.line, k == 0 ? "reviewerID" : "ASIN");
        if (tok.empty())
          throw InputError(seq_file, u.line, "reviewerID", "empty line (expected 'reviewerID ASIN ...')");
        if (tok.size() < 2) throw InputError(seq_file, u.line, "ASIN", "no items after the reviewerID (short row)");
        u.reviewer = tok[0];
        u.asins.assign(tok.begin() + 1, tok.end());
        u.ok = true;
      });
    }
  }

  // 2. TiCoSeRec item ids are 1-based ranks of the sorted distinct ASINs.
  std::vector<std::string_view> distinct;
  for (const auto& u : users) distinct.insert(distinct.end(), u.asins.begin(), u.asins.end());
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  std::unordered_map<std::string_view, std::int64_t> rank;
  rank.reserve(distinct.size() * 2);
  for (std::size_t k = 0; k < distinct.size(); ++k) rank.emplace(distinct[k], static_cast<std::int64_t>(k + 1));

  // 3. Timestamps, aligned with the TiCoSeRec item ids line by line.
  // A bad line there is counted once, as a skipped user, below.
  std::int64_t warned = 0;
  const std::vector<RankLine> item_lines = read_rank_file(item_path, "item", opt, warned);
  const std::vector<RankLine> time_lines = read_rank_file(time_path, "timestamp", opt, warned);
  if (item_lines.size() != users.size())
    throw InputError(item_path.string(), 0, "",
                     fmt::format("has {} lines but {} has {}; the files must hold the same users line by line",
                                 item_lines.size(), seq_path.filename().string(), users.size()));
  if (time_lines.size() != users.size())
    throw InputError(time_path.string(), 0, "",
                     fmt::format("has {} lines but {} has {}; the files must hold the same users line by line",
                                 time_lines.size(), seq_path.filename().string(), users.size()));

  // 4. Session order of the LLM4SBR reference: sessions grouped by the SessionId of
  // session_id_to_int.json (pandas groupby sorts by it). The paper's 90/10 split of Table 2 is
  // only reproduced in this order, not in the line order of user_sequence.txt.
  const nlohmann::json session_map = read_json_file(session_map_path);
  if (!session_map.is_object())
    throw InputError(session_map_path.string(), 1, "", "expected a JSON object {reviewerID: SessionId}");

  struct Ready {
    std::int64_t session_id;
    std::size_t user;
    std::vector<std::int64_t> times;
  };
  std::vector<Ready> ready;
  ready.reserve(users.size());
  std::unordered_map<std::string_view, std::size_t> seen;
  seen.reserve(users.size() * 2);
  std::vector<std::int64_t> ranks_sorted, items_sorted;
  for (std::size_t i = 0; i < users.size(); ++i) {
    const BeautyUser& u = users[i];
    if (!u.ok) continue;
    if (!item_lines[i].ok || !time_lines[i].ok) {
      ++raw.skipped_rows;  // the user's line is malformed in a TiCoSeRec file (already reported)
      continue;
    }
    guarded_row(opt, raw, [&] {
      const auto [it, fresh] = seen.emplace(u.reviewer, u.line);
      if (!fresh)
        throw InputError(seq_file, u.line, "reviewerID",
                         fmt::format("'{}' already appears on line {}", u.reviewer, it->second));
      const auto sid = session_map.find(std::string(u.reviewer));
      if (sid == session_map.end() || !sid->is_number_integer())
        throw InputError(seq_file, u.line, "reviewerID",
                         fmt::format("'{}' is not a key of {} with an integer SessionId", u.reviewer,
                                     session_map_path.filename().string()));
      const std::vector<std::int64_t>& ids = item_lines[i].values;
      const std::vector<std::int64_t>& ts = time_lines[i].values;
      if (ts.size() != ids.size())
        throw InputError(time_path.string(), u.line, "timestamp",
                         fmt::format("{} timestamps for {} items on the same line of {}", ts.size(), ids.size(),
                                     item_path.filename().string()));
      ranks_sorted.clear();
      for (const auto a : u.asins) ranks_sorted.push_back(rank.at(a));
      std::sort(ranks_sorted.begin(), ranks_sorted.end());
      items_sorted = ids;
      std::sort(items_sorted.begin(), items_sorted.end());
      if (ranks_sorted != items_sorted)
        throw InputError(item_path.string(), u.line, "item",
                         fmt::format("the items of user {} differ from line {} of {} (item ids must be 1-based "
                                     "ranks of the sorted distinct ASINs)",
                                     u.line, u.line, seq_path.filename().string()));
      // The orders differ only on timestamp ties and GRAM's order never contradicts the
      // timestamps, so the k-th click gets the k-th smallest timestamp.
      std::vector<std::int64_t> times = ts;
      std::sort(times.begin(), times.end());
      ready.push_back({sid->get<std::int64_t>(), i, std::move(times)});
    });
  }
  std::stable_sort(ready.begin(), ready.end(),
                   [](const Ready& a, const Ready& b) { return a.session_id < b.session_id; });

  std::size_t n_clicks = 0;
  for (const auto& r : ready) n_clicks += r.times.size();
  raw.interactions.reserve(n_clicks);
  for (const auto& r : ready) {
    const BeautyUser& u = users[r.user];
    const std::string key(u.reviewer);
    for (std::size_t k = 0; k < u.asins.size(); ++k) {
      const auto order = static_cast<std::int64_t>(raw.interactions.size());
      raw.interactions.push_back({key, std::string(u.asins[k]), r.times[k], order});
    }
  }

  // 5. Titles: ASIN -> global_product_id (item_id_to_int.json) -> name (products_lookup.csv).
  const nlohmann::json item_map = read_json_file(item_map_path);
  if (!item_map.is_object())
    throw InputError(item_map_path.string(), 1, "", "expected a JSON object {ASIN: global_product_id}");
  std::unordered_map<std::int64_t, std::string> names;
  {
    CsvTable t(lookup_path);
    const int c_gid = t.require("global_product_id");
    const int c_name = t.require("name");
    std::vector<std::string> f;
    while (t.next(f)) {
      guarded_row(opt, raw, [&] {
        t.check_row(f);
        const std::int64_t gid = parse_int(f[c_gid], t.file(), t.line(), "global_product_id");
        names.emplace(gid, std::move(f[c_name]));
      });
    }
  }
  std::size_t untitled = 0;
  for (const auto asin : distinct) {
    const auto it = item_map.find(std::string(asin));
    if (it == item_map.end() || !it->is_number_integer()) {
      ++untitled;
      continue;
    }
    const auto name = names.find(it->get<std::int64_t>());
    if (name == names.end()) {
      ++untitled;
      continue;
    }
    raw.titles.emplace(std::string(asin), name->second);  // may be "" (7 items have no name)
  }
  if (untitled > 0) spdlog::warn("beauty: {} of {} items have no title entry", untitled, distinct.size());
  log_skipped(raw);
  return raw;
}

// ---------------------------------------------------------------------------------------------
// Generic CSV

RawDataset read_generic(const fs::path& dir, const ReadOptions& opt) {
  RawDataset raw;
  raw.name = "generic";
  {
    CsvTable t(dir / "interactions.csv");
    int c_key = t.find("session_id");
    const char* key_name = "session_id";
    if (c_key < 0) {
      c_key = t.find("user_id");
      key_name = "user_id";
    }
    if (c_key < 0)
      throw InputError(t.file(), 1, "session_id",
                       fmt::format("missing column 'session_id' or 'user_id' in the header ({})",
                                   fmt::join(t.header(), ",")));
    const int c_item = t.require("item_id");
    const int c_ts = t.find("timestamp");  // optional: without it, file order is click order
    std::vector<std::string> f;
    while (t.next(f)) {
      guarded_row(opt, raw, [&] {
        t.check_row(f);
        const std::string_view key = trim(f[c_key]);
        const std::string_view item = trim(f[c_item]);
        if (key.empty()) throw InputError(t.file(), t.line(), key_name, "empty id");
        if (item.empty()) throw InputError(t.file(), t.line(), "item_id", "empty id");
        const std::int64_t ts =
            c_ts >= 0 ? parse_int(f[c_ts], t.file(), t.line(), "timestamp", "an integer Unix time") : 0;
        const auto order = static_cast<std::int64_t>(raw.interactions.size());
        raw.interactions.push_back({std::string(key), std::string(item), ts, order});
      });
    }
  }
  const fs::path items_path = dir / "items.csv";
  if (fs::exists(items_path)) {
    CsvTable t(items_path);
    const int c_item = t.require("item_id");
    const int c_title = t.require("title");
    std::vector<std::string> f;
    while (t.next(f)) {
      guarded_row(opt, raw, [&] {
        t.check_row(f);
        const std::string_view item = trim(f[c_item]);
        if (item.empty()) throw InputError(t.file(), t.line(), "item_id", "empty id");
        raw.titles.emplace(std::string(item), std::move(f[c_title]));
      });
    }
  }
  log_skipped(raw);
  return raw;
}

// ---------------------------------------------------------------------------------------------
// Dispatch

std::vector<std::string> known_datasets() {
  return {"ml-1m", "ml-100k", "ml-latest-small", "ml-latest", "beauty", "amazon-beauty-2014", "generic"};
}

std::string dataset_folder(const std::string& name) {
  if (name == "beauty" || name == "amazon-beauty-2014") return "amazon-beauty-2014";
  const auto known = known_datasets();
  if (std::find(known.begin(), known.end(), name) != known.end()) return name;
  throw ConfigError(fmt::format("unknown dataset '{}' (known: {})", name, fmt::join(known, ", ")));
}

RawDataset read_dataset(const std::string& name, const fs::path& dir, const ReadOptions& opt) {
  RawDataset raw;
  if (name == "ml-1m") {
    raw = read_movielens_1m(dir, opt);
  } else if (name == "ml-100k") {
    raw = read_movielens_100k(dir, opt);
  } else if (name == "ml-latest-small" || name == "ml-latest") {
    raw = read_movielens_latest(dir, opt);
  } else if (name == "beauty" || name == "amazon-beauty-2014") {
    raw = read_amazon_beauty(dir, opt);
  } else if (name == "generic") {
    raw = read_generic(dir, opt);
  } else {
    throw ConfigError(fmt::format("unknown dataset '{}' (known: {})", name, fmt::join(known_datasets(), ", ")));
  }
  raw.name = name;
  return raw;
}

}  // namespace llm4sbr::data
