#include "llm4sbr/intent/intents.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <algorithm>
#include <fstream>
#include <set>
#include <string_view>
#include <unordered_map>

#include "llm4sbr/core/atomic_file.hpp"
#include "llm4sbr/core/error.hpp"
#include "llm4sbr/core/linalg.hpp"
#include "llm4sbr/core/npy.hpp"
#include "llm4sbr/core/progress.hpp"
#include "llm4sbr/intent/localizer.hpp"
#include "llm4sbr/intent/titles_source.hpp"

namespace llm4sbr::intent {

namespace fs = std::filesystem;

namespace {

constexpr int kFormatVersion = 1;

void check_options(const IntentsOptions& o) {
  if (o.views.empty()) throw ConfigError("intents: at least one view is needed");
  if (std::set<std::string>(o.views.begin(), o.views.end()).size() != o.views.size())
    throw ConfigError("intents: a view is listed twice");
  if (o.r < 0) throw ConfigError(fmt::format("intents: r = {} must be >= 0", o.r));
  if (o.chunk < 1) throw ConfigError(fmt::format("intents: chunk = {} must be >= 1", o.chunk));
}

/// Rows scaled to unit L2 norm; zero rows stay zero.
torch::Tensor unit_rows(const torch::Tensor& x) {
  const auto norm = x.norm(2, 1, /*keepdim=*/true);
  return torch::where(norm > 0, x / norm, torch::zeros_like(x));
}

}  // namespace

ViewTextSource titles_text_source(const data::PreparedDataset& ds) {
  return [&ds](const std::vector<data::Sample>& samples, const std::string& view) {
    return view_texts(ds, samples, view);
  };
}

torch::Tensor catalogue_embeddings(const data::PreparedDataset& ds, embed::TextEncoder& encoder) {
  std::vector<std::string> titles;
  titles.reserve(ds.items.size());
  for (const auto& item : ds.items) titles.push_back(item.title);
  torch::NoGradGuard no_grad;
  auto e = encoder.encode(titles).to(torch::kFloat32).contiguous();
  // An empty title must never be a hit, whatever the encoder makes of "".
  for (std::size_t k = 0; k < titles.size(); ++k)
    if (titles[k].empty()) e[static_cast<std::int64_t>(k)].zero_();
  return e;
}

namespace {

/// Step 1 of encode_view_texts: the texts of every (sample, view) and each distinct text once, in first-use
/// order; `first_use` gets the (sample index, view) where each distinct text first appears (for errors).
EncodedTexts distinct_view_texts(const std::vector<data::Sample>& samples, const ViewTextSource& source,
                                 const IntentsOptions& opt, std::vector<std::pair<std::size_t, std::size_t>>& first_use) {
  EncodedTexts out;
  out.views = opt.views;
  for (const auto& s : samples) out.sample_ids.push_back(s.id);
  const auto n_views = opt.views.size();
  std::vector<std::vector<std::string>> texts(n_views);
  for (std::size_t v = 0; v < n_views; ++v) {
    texts[v] = source(samples, opt.views[v]);
    if (texts[v].size() != samples.size())
      throw Error(fmt::format("intents: the text source gave {} texts for view '{}' of {} samples", texts[v].size(),
                              opt.views[v], samples.size()));
  }
  std::unordered_map<std::string_view, std::int64_t> distinct_of;
  out.text_index.resize(samples.size() * n_views);
  distinct_of.reserve(samples.size() * n_views);
  for (std::size_t s = 0; s < samples.size(); ++s)
    for (std::size_t v = 0; v < n_views; ++v) {
      const std::string& t = texts[v][s];
      auto [it, inserted] = distinct_of.try_emplace(t, static_cast<std::int64_t>(first_use.size()));
      if (inserted) first_use.emplace_back(s, v);
      out.text_index[s * n_views + v] = it->second;
    }
  distinct_of = {};
  out.distinct.reserve(first_use.size());
  for (const auto& [s, v] : first_use) out.distinct.push_back(std::move(texts[v][s]));
  return out;
}

/// Step 2: the rows `rows` of `texts` encoded (chunks of opt.chunk, a progress bar), [rows.size(), d] unit rows
/// (L2-normalised here if the encoder does not). `bad_row(i)` throws for row rows[i] embedding to NaN/Inf.
torch::Tensor encode_rows(const std::vector<std::string>& texts, const std::vector<std::int64_t>& rows,
                          embed::TextEncoder& encoder, const IntentsOptions& opt,
                          const std::function<void(std::int64_t)>& bad_row) {
  const auto u = static_cast<std::int64_t>(rows.size());
  const auto d = encoder.dim();
  auto emb = torch::empty({u, d}, torch::kFloat32);
  {
    ProgressBar bar("intents: encode", u, "texts");
    std::vector<std::string> batch;
    for (std::int64_t b0 = 0; b0 < u; b0 += opt.chunk) {
      const auto b1 = std::min(u, b0 + opt.chunk);
      batch.clear();
      for (auto i = b0; i < b1; ++i) batch.push_back(texts[static_cast<std::size_t>(rows[static_cast<std::size_t>(i)])]);
      const auto e = encoder.encode(batch);
      if (e.dim() != 2 || e.size(0) != b1 - b0 || e.size(1) != d)
        throw Error(fmt::format("intents: encoder {} returned shape {} for {} texts of dim {}", encoder.name(),
                                fmt::join(e.sizes(), "x"), b1 - b0, d));
      emb.slice(0, b0, b1).copy_(e);
      bar.tick(b1 - b0);
    }
    bar.finish();
  }
  if (const auto row = first_non_finite_row(emb); row >= 0) bad_row(row);
  return encoder.normalize() ? emb : unit_rows(emb);
}

/// The error for a view text that embeds to NaN/Inf, naming the sample and view that first use it.
[[noreturn]] void throw_unembeddable(const data::PreparedDataset& ds, const std::vector<data::Sample>& samples,
                                     const IntentsOptions& opt, std::pair<std::size_t, std::size_t> first_use,
                                     const std::string& encoder, const std::string& text) {
  const auto [s, v] = first_use;
  throw InputError(fmt::format("{} sample {}", ds.name, samples[s].id), 0, "view " + opt.views[v],
                   fmt::format("the text embeds to NaN/Inf ({}): '{}'", encoder, text.substr(0, 200)));
}

std::vector<std::int64_t> all_rows(std::size_t n) {
  std::vector<std::int64_t> rows(n);
  for (std::size_t i = 0; i < n; ++i) rows[i] = static_cast<std::int64_t>(i);
  return rows;
}

}  // namespace

EncodedTexts encode_view_texts(const data::PreparedDataset& ds, const std::vector<data::Sample>& samples,
                               const ViewTextSource& source, embed::TextEncoder& encoder, const IntentsOptions& opt) {
  check_options(opt);
  if (!encoder.fitted()) throw Error("intents: the text encoder is not fitted");
  torch::NoGradGuard no_grad;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::pair<std::size_t, std::size_t>> first_use;
  EncodedTexts out = distinct_view_texts(samples, source, opt, first_use);
  out.encoder = encoder.name();
  out.embeddings = encode_rows(out.distinct, all_rows(out.distinct.size()), encoder, opt, [&](std::int64_t i) {
    const auto row = static_cast<std::size_t>(i);
    throw_unembeddable(ds, samples, opt, first_use[row], encoder.name(), out.distinct[row]);
  });
  out.zero_texts = (out.embeddings == 0).all(1).sum().item<std::int64_t>();
  out.seconds = seconds_since(t0);
  return out;
}

void save_catalogue(const fs::path& file, const torch::Tensor& catalogue) {
  const auto c = catalogue.to(torch::kCPU, torch::kFloat32).contiguous();
  write_npy(file, c.data_ptr<float>(), c.sizes().vec());
}

torch::Tensor load_catalogue(const fs::path& file) {
  auto a = read_npy_float32(file);
  if (a.shape.size() != 2) throw InputError(file.string(), 0, "shape", "the catalogue must be a 2-D array [items, d]");
  return torch::from_blob(a.data.data(), a.shape, torch::kFloat32).clone();
}

void save_encoded_texts(const fs::path& dir, const EncodedTexts& e) {
  fs::create_directories(dir);
  std::error_code ec;
  fs::remove(dir / "encoded.json", ec);
  const auto n = static_cast<std::int64_t>(e.sample_ids.size());
  const auto v = static_cast<std::int64_t>(e.views.size());
  write_npy(dir / "texts.npy", e.embeddings.contiguous().data_ptr<float>(), {e.embeddings.size(0), e.embeddings.size(1)});
  write_npy(dir / "text_index.npy", e.text_index.data(), {n, v});
  write_npy(dir / "sample_ids.npy", e.sample_ids.data(), {n});
  {
    AtomicFile out(dir / "texts.jsonl");
    for (const auto& t : e.distinct) {
      out.write(nlohmann::json(t).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
      out.write("\n");
    }
    out.commit();
  }
  const nlohmann::json done = {{"format", kFormatVersion}, {"views", e.views},          {"samples", n},
                               {"distinct_texts", e.distinct.size()}, {"dim", e.embeddings.size(1)},
                               {"encoder", e.encoder},      {"zero_texts", e.zero_texts}, {"seconds", e.seconds}};
  write_file_atomically(dir / "encoded.json", done.dump(2) + "\n");
}

EncodedTexts load_encoded_texts(const fs::path& dir) {
  const auto meta_file = dir / "encoded.json";
  std::ifstream in(meta_file);
  if (!in) throw InputError(meta_file.string(), 0, "", "missing: `llm4sbr encode` did not finish in this directory");
  nlohmann::json meta;
  try {
    meta = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& ex) {
    throw InputError(meta_file.string(), 0, "", std::string("not valid JSON: ") + ex.what());
  }
  EncodedTexts e;
  e.views = meta.at("views").get<std::vector<std::string>>();
  e.encoder = meta.value("encoder", "");
  e.zero_texts = meta.value("zero_texts", 0);
  auto texts = read_npy_float32(dir / "texts.npy");
  auto index = read_npy_int64(dir / "text_index.npy");
  auto ids = read_npy_int64(dir / "sample_ids.npy");
  e.embeddings = torch::from_blob(texts.data.data(), texts.shape, torch::kFloat32).clone();
  e.text_index = std::move(index.data);
  e.sample_ids = std::move(ids.data);
  std::ifstream lines(dir / "texts.jsonl");
  std::string line;
  for (std::int64_t no = 1; std::getline(lines, line); ++no) {
    try {
      e.distinct.push_back(nlohmann::json::parse(line).get<std::string>());
    } catch (const nlohmann::json::exception& ex) {
      throw InputError((dir / "texts.jsonl").string(), no, "", std::string("not a JSON string: ") + ex.what());
    }
  }
  const auto u = static_cast<std::int64_t>(e.distinct.size());
  const bool ok = e.embeddings.dim() == 2 && e.embeddings.size(0) == u &&
                  static_cast<std::int64_t>(e.text_index.size()) ==
                      static_cast<std::int64_t>(e.sample_ids.size() * e.views.size()) &&
                  std::all_of(e.text_index.begin(), e.text_index.end(), [u](std::int64_t t) { return t >= 0 && t < u; });
  if (!ok)
    throw InputError(dir.string(), 0, "", "texts.npy, texts.jsonl, text_index.npy and sample_ids.npy disagree (files from different runs?)");
  return e;
}

LocalizedTexts localize_encoded(const EncodedTexts& enc, const IntentLocalizer& index, const IntentsOptions& opt) {
  check_options(opt);
  torch::NoGradGuard no_grad;
  const auto t0 = std::chrono::steady_clock::now();
  LocalizedTexts out;
  const auto d = enc.embeddings.size(1);
  if (index.dim() != d)
    throw Error(fmt::format("intents: the catalogue has width {} but the texts were encoded with width {}", index.dim(), d));
  out.r = opt.r;
  if (out.r > index.size()) {
    spdlog::warn("intents: r = {} exceeds the {} catalogue items with a title; using r = {}", out.r, index.size(),
                 index.size());
    out.r = index.size();
  }
  out.localizer = index.name();
  out.searchable_items = index.size();
  const auto u = static_cast<std::int64_t>(enc.distinct.size());
  out.distinct = {torch::empty({u, d}, torch::kFloat32), torch::empty({u, out.r}, torch::kInt64),
                  torch::empty({u, out.r}, torch::kFloat32)};
  {
    ProgressBar bar("intents: localize", u, "queries");
    for (std::int64_t b0 = 0; b0 < u; b0 += opt.chunk) {
      const auto b1 = std::min(u, b0 + opt.chunk);
      const auto loc = localize(index, enc.embeddings.slice(0, b0, b1), out.r, opt.normalize_weights);
      out.distinct.intents.slice(0, b0, b1).copy_(loc.intents);
      out.distinct.ids.slice(0, b0, b1).copy_(loc.ids);
      out.distinct.scores.slice(0, b0, b1).copy_(loc.scores);
      bar.tick(b1 - b0);
    }
    bar.finish();
  }
  out.seconds = seconds_since(t0);
  return out;
}

torch::Tensor sample_intents(const EncodedTexts& enc, const LocalizedTexts& loc) {
  // Every (sample, view) gets the intent of its text: what intents.npy holds, row by row.
  const auto rows = torch::from_blob(const_cast<std::int64_t*>(enc.text_index.data()),
                                     {static_cast<std::int64_t>(enc.text_index.size())}, torch::kInt64);
  return loc.distinct.intents.index_select(0, rows)
      .view({static_cast<std::int64_t>(enc.sample_ids.size()), static_cast<std::int64_t>(enc.views.size()),
             loc.distinct.intents.size(1)});
}

LocalizedTexts localize_encoded(const EncodedTexts& enc, const torch::Tensor& catalogue, const IntentsOptions& opt) {
  const auto d = enc.embeddings.size(1);
  if (catalogue.dim() != 2 || catalogue.size(1) != d)
    throw Error(fmt::format("intents: the catalogue must be [items, {}] (the encoder's width), got {}", d,
                            fmt::join(catalogue.sizes(), "x")));
  return localize_encoded(enc, *catalogue_index(catalogue, opt.localizer), opt);
}

std::unique_ptr<IntentLocalizer> catalogue_index(const torch::Tensor& catalogue, const std::string& kind) {
  // Cosines: both sides unit rows (the queries are, after encode_view_texts).
  return make_localizer(kind, unit_rows(catalogue.to(torch::kCPU, torch::kFloat32).contiguous()));
}

PrecomputedTexts precompute_texts(const std::vector<std::string>& texts, embed::TextEncoder& encoder,
                                  const IntentLocalizer& index, const IntentsOptions& opt) {
  check_options(opt);
  if (!encoder.fitted()) throw Error("intents: the text encoder is not fitted");
  torch::NoGradGuard no_grad;
  PrecomputedTexts out;
  EncodedTexts encoded;
  for (const auto& t : texts)
    if (out.row_of.try_emplace(t, static_cast<std::int64_t>(encoded.distinct.size())).second) encoded.distinct.push_back(t);
  encoded.embeddings = encode_rows(encoded.distinct, all_rows(encoded.distinct.size()), encoder, opt, [&](std::int64_t i) {
    throw InputError("precomputed texts", i + 1, "text",
                     fmt::format("embeds to NaN/Inf ({}): '{}'", encoder.name(),
                                 encoded.distinct[static_cast<std::size_t>(i)].substr(0, 200)));
  });
  out.localized = localize_encoded(encoded, index, opt);
  out.embeddings = std::move(encoded.embeddings);
  return out;
}

namespace {

/// intents_in_memory for texts some of which are in `known`: only the others are encoded and localized.
MemoryIntents intents_with_known_texts(const data::PreparedDataset& ds, const std::vector<data::Sample>& samples,
                                       const ViewTextSource& source, embed::TextEncoder& encoder,
                                       const IntentLocalizer& index, const IntentsOptions& opt,
                                       const PrecomputedTexts& known) {
  check_options(opt);
  if (!encoder.fitted()) throw Error("intents: the text encoder is not fitted");
  torch::NoGradGuard no_grad;
  const auto t0 = std::chrono::steady_clock::now();
  MemoryIntents out;
  std::vector<std::pair<std::size_t, std::size_t>> first_use;
  auto& texts = out.texts;
  texts = distinct_view_texts(samples, source, opt, first_use);
  texts.encoder = encoder.name();
  std::vector<std::int64_t> computed, known_at, known_rows;  // rows of texts.distinct, and of `known`
  for (std::size_t i = 0; i < texts.distinct.size(); ++i) {
    const auto it = known.row_of.find(texts.distinct[i]);
    if (it == known.row_of.end()) {
      computed.push_back(static_cast<std::int64_t>(i));
    } else {
      known_at.push_back(static_cast<std::int64_t>(i));
      known_rows.push_back(it->second);
    }
  }
  EncodedTexts fresh;  // the texts not known: encoded and localized now
  fresh.embeddings = encode_rows(texts.distinct, computed, encoder, opt, [&](std::int64_t i) {
    const auto row = static_cast<std::size_t>(computed[static_cast<std::size_t>(i)]);
    throw_unembeddable(ds, samples, opt, first_use[row], encoder.name(), texts.distinct[row]);
  });
  for (const auto i : computed) fresh.distinct.push_back(texts.distinct[static_cast<std::size_t>(i)]);
  const auto fresh_localized = localize_encoded(fresh, index, opt);

  // Both parts into the rows of texts.distinct.
  auto as_index = [](const std::vector<std::int64_t>& v) {
    return torch::tensor(at::ArrayRef<std::int64_t>(v), torch::kInt64);
  };
  const auto at_computed = as_index(computed), at_known = as_index(known_at), from_known = as_index(known_rows);
  const auto u = static_cast<std::int64_t>(texts.distinct.size());
  auto merge = [&](const torch::Tensor& fresh_rows, const torch::Tensor& known_table) {
    auto all = torch::empty({u, known_table.size(1)}, known_table.options());
    all.index_copy_(0, at_computed, fresh_rows);
    all.index_copy_(0, at_known, known_table.index_select(0, from_known));
    return all;
  };
  texts.embeddings = merge(fresh.embeddings, known.embeddings);
  texts.zero_texts = (texts.embeddings == 0).all(1).sum().item<std::int64_t>();
  texts.seconds = seconds_since(t0);
  auto& localized = out.localized;
  localized = fresh_localized;
  localized.distinct = {merge(fresh_localized.distinct.intents, known.localized.distinct.intents),
                        merge(fresh_localized.distinct.ids, known.localized.distinct.ids),
                        merge(fresh_localized.distinct.scores, known.localized.distinct.scores)};
  out.intents = sample_intents(texts, localized);
  return out;
}

}  // namespace

MemoryIntents intents_in_memory(const data::PreparedDataset& ds, const std::vector<data::Sample>& samples,
                                const ViewTextSource& source, embed::TextEncoder& encoder, const IntentLocalizer& index,
                                const IntentsOptions& options, const PrecomputedTexts* known) {
  if (known) return intents_with_known_texts(ds, samples, source, encoder, index, options, *known);
  MemoryIntents out;
  out.texts = encode_view_texts(ds, samples, source, encoder, options);
  out.localized = localize_encoded(out.texts, index, options);
  out.intents = sample_intents(out.texts, out.localized);
  return out;
}

IntentsSummary localize_texts(const fs::path& dir, const data::PreparedDataset& ds, const EncodedTexts& enc,
                              const torch::Tensor& catalogue_in, const IntentsOptions& opt) {
  check_options(opt);
  torch::NoGradGuard no_grad;
  IntentsSummary sum;
  sum.samples = static_cast<std::int64_t>(enc.sample_ids.size());
  sum.views = static_cast<std::int64_t>(enc.views.size());
  sum.texts = sum.samples * sum.views;
  sum.distinct_texts = static_cast<std::int64_t>(enc.distinct.size());
  sum.zero_texts = enc.zero_texts;
  sum.encode_seconds = enc.seconds;
  const auto d = enc.embeddings.size(1);
  sum.dim = d;
  if (catalogue_in.dim() != 2 || catalogue_in.size(0) != ds.n_items() || catalogue_in.size(1) != d)
    throw Error(fmt::format("intents: the catalogue must be [{}, {}] (items x encoder dim), got {}", ds.n_items(), d,
                            fmt::join(catalogue_in.sizes(), "x")));
  fs::create_directories(dir);
  std::error_code ec;
  fs::remove(dir / "done.json", ec);

  const auto loc = localize_encoded(enc, catalogue_in, opt);
  const auto r = loc.r;
  sum.r = r;
  sum.localize_seconds = loc.seconds;
  const auto u = sum.distinct_texts;
  const auto& top_ids = loc.distinct.ids;
  const auto& top_scores = loc.distinct.scores;

  // Write, done.json last.
  const auto t0 = std::chrono::steady_clock::now();
  const auto n_views = enc.views.size();
  {
    // Streamed from the distinct rows: the [samples, views, d] array is never held in memory.
    NpyWriter out(dir / "intents.npy", NpyDtype::kFloat32, {sum.samples, sum.views, d});
    const float* ip = loc.distinct.intents.data_ptr<float>();
    for (const auto t : enc.text_index) out.write(ip + t * d, d);
    out.commit();
  }
  if (opt.write_records) {
    AtomicFile out(dir / "localization.jsonl");
    const auto zero = (enc.embeddings == 0).all(1).contiguous();
    const auto* idp = top_ids.data_ptr<std::int64_t>();
    const auto* scp = top_scores.data_ptr<float>();
    const auto* zp = zero.data_ptr<bool>();
    for (std::size_t s = 0; s < enc.sample_ids.size(); ++s)
      for (std::size_t v = 0; v < n_views; ++v) {
        const auto t = enc.text_index[s * n_views + v];
        using Json = nlohmann::ordered_json;
        Json items = Json::array(), titles = Json::array(), scores = Json::array();
        if (!zp[t])
          for (std::int64_t j = 0; j < r; ++j) {
            const auto id = idp[t * r + j];
            items.push_back(id);
            titles.push_back(ds.items[static_cast<std::size_t>(id - 1)].title);
            scores.push_back(std::round(static_cast<double>(scp[t * r + j]) * 1e6) / 1e6);  // 6 decimals
          }
        const Json rec = {{"sample", enc.sample_ids[s]}, {"view", enc.views[v]},
                          {"text", enc.distinct[static_cast<std::size_t>(t)]},
                          {"items", std::move(items)}, {"titles", std::move(titles)}, {"scores", std::move(scores)}};
        out.write(rec.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
        out.write("\n");
      }
    out.commit();
  }
  sum.write_seconds = seconds_since(t0);
  const nlohmann::json done = {{"format", kFormatVersion},
                               {"key", opt.key},
                               {"data", opt.data},
                               {"shape", {sum.samples, sum.views, d}},
                               {"samples", sum.samples},
                               {"views", enc.views},
                               {"dim", d},
                               {"r", r},
                               {"r_requested", opt.r},
                               {"normalize_weights", opt.normalize_weights},
                               {"localizer", loc.localizer},
                               {"encoder", enc.encoder},
                               {"catalogue_items", ds.n_items()},
                               {"searchable_items", loc.searchable_items},
                               {"distinct_texts", sum.distinct_texts},
                               {"zero_texts", sum.zero_texts},
                               {"records", opt.write_records},
                               {"seconds",
                                {{"encode", sum.encode_seconds},
                                 {"localize", sum.localize_seconds},
                                 {"write", sum.write_seconds}}}};
  write_file_atomically(dir / "done.json", done.dump(2) + "\n");
  spdlog::info("intents: {} samples x {} views -> {} ({} distinct texts, {} with a zero embedding; encode {:.1f}s, "
               "localize {:.1f}s, write {:.1f}s)",
               sum.samples, sum.views, (dir / "intents.npy").string(), u, sum.zero_texts, sum.encode_seconds,
               sum.localize_seconds, sum.write_seconds);
  return sum;
}

IntentsSummary write_intents(const fs::path& dir, const data::PreparedDataset& ds,
                             const std::vector<data::Sample>& samples, const ViewTextSource& source,
                             embed::TextEncoder& encoder, const torch::Tensor& catalogue, const IntentsOptions& opt) {
  check_options(opt);
  if (catalogue.dim() != 2 || catalogue.size(0) != ds.n_items() || catalogue.size(1) != encoder.dim())
    throw Error(fmt::format("intents: the catalogue must be [{}, {}] (items x encoder dim), got {}", ds.n_items(),
                            encoder.dim(), fmt::join(catalogue.sizes(), "x")));
  std::error_code ec;
  fs::remove(dir / "done.json", ec);  // an interrupted re-run must never look finished
  return localize_texts(dir, ds, encode_view_texts(ds, samples, source, encoder, opt), catalogue, opt);
}

std::optional<nlohmann::json> intents_done(const fs::path& dir) {
  std::ifstream in(dir / "done.json");
  if (!in) return std::nullopt;
  try {
    auto j = nlohmann::json::parse(in);
    if (j.value("format", 0) != kFormatVersion || !fs::exists(dir / "intents.npy")) return std::nullopt;
    return j;
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;
  }
}

bool intents_ready(const fs::path& dir, const std::string& key) {
  const auto done = intents_done(dir);
  return done && done->value("key", std::string{}) == key;
}

torch::Tensor read_intents(const fs::path& dir) {
  const auto done = intents_done(dir);
  if (!done) throw InputError((dir / "done.json").string(), 0, "", "missing or unreadable: the intent stage did not finish here");
  const auto file = dir / "intents.npy";
  const auto h = read_npy_header(file);
  const auto shape = done->at("shape").get<std::vector<std::int64_t>>();
  if (h.shape != shape)
    throw InputError(file.string(), 0, "shape", fmt::format("({}) but done.json says ({})", fmt::join(h.shape, ", "),
                                                            fmt::join(shape, ", ")));
  auto out = torch::empty(h.shape, torch::kFloat32);
  read_npy_data(file, h, NpyDtype::kFloat32, out.data_ptr<float>());
  if (const auto row = first_non_finite_row(out); row >= 0) {
    throw InputError(file.string(), 0, fmt::format("row {}", row),
                     "NaN or infinite intent values (a damaged file: delete the folder and run again)");
  }
  return out;
}

}  // namespace llm4sbr::intent
