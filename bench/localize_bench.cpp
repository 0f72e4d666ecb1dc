// Intent localization throughput over the full Amazon Beauty catalogue (12,101 items): TF-IDF+LSA fit on the
// titles, encoding of title-derived view texts (the LLM-free intent source: the long and short views of
// training samples), then exact top-r search + Eq. 5 weighted sum with FAISS IndexFlatIP and with blocked
// LibTorch matrix products, checked to give identical results; then one session at a time as `llm4sbr serve`
// does (its two view texts encoded, then localized by each backend).
//
// With --intents DIR it then runs the whole intent stage (write_intents) on every training sample, long and
// short views, and reports its time and the peak memory of the process.
//
//   build/bin/localize_bench [--queries 50000] [--dim 256] [--r 5] [--threads 0] [--data-dir DIR] [--intents DIR]
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <sys/resource.h>

#include <chrono>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/data/data_dir.hpp"
#include "llm4sbr/data/prepare.hpp"
#include "llm4sbr/data/readers.hpp"
#include "llm4sbr/embed/tfidf_lsa.hpp"
#include "llm4sbr/intent/intents.hpp"
#include "llm4sbr/intent/localizer.hpp"
#include "llm4sbr/intent/titles_source.hpp"
#include "llm4sbr/train/experiment.hpp"
#include "llm4sbr/core/runtime.hpp"

using namespace llm4sbr;

int main(int argc, char** argv) {
  llm4sbr::ensure_fast_blas(argv);
  CLI::App app{"Intent localization throughput on Amazon Beauty"};
  std::int64_t n_queries = 50000;
  std::int64_t dim = 256;
  std::int64_t r = 5;
  int threads = 0;
  std::string data_dir;
  std::string intents_dir;
  app.add_option("--intents", intents_dir, "also run the intent stage on the training split into this directory");
  app.add_option("--queries", n_queries, "queries to localize (long and short views of training samples)")
      ->capture_default_str();
  app.add_option("--dim", dim, "d_text of the TF-IDF+LSA encoder")->capture_default_str();
  app.add_option("--r", r, "top-r of Eq. 5")->capture_default_str();
  app.add_option("--threads", threads, "LibTorch intra-op threads (0 = automatic, see core/runtime.hpp)")
      ->capture_default_str();
  app.add_option("--data-dir", data_dir, "raw data directory");
  CLI11_PARSE(app, argc, argv);

  std::string command;
  for (int i = 0; i < argc; ++i) command += (i ? " " : "") + std::string(argv[i]);
  fmt::print("$ {}\n", command);
  auto rt = configure_runtime(threads);
  spdlog::set_level(spdlog::level::info);
  auto now = [] { return std::chrono::steady_clock::now(); };
  auto secs = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };

  Config cfg = Config::load("configs/beauty.yaml");
  auto raw = data::read_dataset("beauty", data::resolve_data_dir(data_dir) / "amazon-beauty-2014");
  auto ds = data::prepare(raw, data::prepare_options_from_config(cfg));
  std::vector<std::string> titles;
  for (const auto& it : ds.items) titles.push_back(it.title);

  embed::TfidfLsaOptions o;
  o.dim = dim;
  embed::TfidfLsaEncoder enc(o);
  auto t0 = now();
  enc.fit(titles);
  const double fit_s = secs(t0, now());
  t0 = now();
  const auto catalogue = intent::catalogue_embeddings(ds, enc);
  const double cat_s = secs(t0, now());

  // Title-derived queries: long and short views of the first training samples.
  const auto per_view = std::min<std::int64_t>((n_queries + 1) / 2, static_cast<std::int64_t>(ds.train.size()));
  const std::vector<data::Sample> samples(ds.train.begin(), ds.train.begin() + per_view);
  auto texts = intent::view_texts(ds, samples, "long");
  const auto short_texts = intent::view_texts(ds, samples, "short");
  texts.insert(texts.end(), short_texts.begin(), short_texts.end());
  texts.resize(static_cast<std::size_t>(std::min<std::int64_t>(n_queries, static_cast<std::int64_t>(texts.size()))));
  std::size_t chars = 0;
  for (const auto& t : texts) chars += t.size();
  t0 = now();
  const auto queries = enc.encode(texts);
  const double enc_s = secs(t0, now());
  const auto m = queries.size(0);

  auto faiss = intent::make_faiss_localizer(catalogue);
  auto blocked = intent::make_blocked_localizer(catalogue);
  intent::localize(*faiss, queries.slice(0, 0, 256), r);  // warm-up (BLAS threads, allocator)
  intent::localize(*blocked, queries.slice(0, 0, 256), r);
  t0 = now();
  const auto a = intent::localize(*faiss, queries, r);
  const double faiss_s = secs(t0, now());
  t0 = now();
  const auto b = intent::localize(*blocked, queries, r);
  const double blocked_s = secs(t0, now());
  const bool same = torch::equal(a.ids, b.ids) && torch::equal(a.scores, b.scores) && torch::equal(a.intents, b.intents);

  // As `llm4sbr serve` does for one session: its two view texts encoded, then localized, one call each.
  const auto sessions = std::min<std::int64_t>(2000, per_view);
  double one_enc_s = 0, one_blocked_s = 0, one_faiss_s = 0;
  for (std::int64_t i = 0; i < sessions; ++i) {
    const std::vector<std::string> views{texts[static_cast<std::size_t>(i)],
                                         short_texts[static_cast<std::size_t>(i)]};
    auto t = now();
    const auto q = enc.encode(views);
    one_enc_s += secs(t, now());
    t = now();
    intent::localize(*blocked, q, r);
    one_blocked_s += secs(t, now());
    t = now();
    intent::localize(*faiss, q, r);
    one_faiss_s += secs(t, now());
  }

  fmt::print("Beauty catalogue: {} items, d {}; LibTorch {} thread(s), {} {} thread(s), kernels {}\n", ds.n_items(),
             enc.dim(), rt.intra_op_threads, rt.blas_kind, rt.blas_threads, rt.blas_core);
  fmt::print("  tfidf fit:    {:7.2f} s  ({} titles, vocabulary {})\n", fit_s, titles.size(), enc.vocabulary_size());
  fmt::print("  catalogue:    {:7.2f} s  ({:.0f} titles/s)\n", cat_s, titles.size() / cat_s);
  fmt::print("  encode:       {:7.2f} s  ({:.0f} texts/s, {} texts of {:.0f} chars on average) -> 350k texts in {:.0f} s\n",
             enc_s, m / enc_s, m, static_cast<double>(chars) / m, 350000 / (m / enc_s));
  fmt::print("  localize r={}: faiss   {:7.2f} s ({:.0f} queries/s) -> 350k queries in {:.1f} s\n", r, faiss_s,
             m / faiss_s, 350000 / (m / faiss_s));
  fmt::print("                blocked {:7.2f} s ({:.0f} queries/s) -> 350k queries in {:.1f} s\n", blocked_s,
             m / blocked_s, 350000 / (m / blocked_s));
  fmt::print("  faiss and blocked identical: {}\n", same ? "yes" : "NO");
  fmt::print("  one session's 2 views at a time ({} sessions): encode {:.3f} ms, localize blocked {:.3f} ms, faiss "
             "{:.3f} ms\n",
             sessions, 1e3 * one_enc_s / static_cast<double>(sessions), 1e3 * one_blocked_s / static_cast<double>(sessions),
             1e3 * one_faiss_s / static_cast<double>(sessions));
  if (!intents_dir.empty()) {
    intent::IntentsOptions opt;
    opt.r = r;
    t0 = now();
    const auto sum = intent::write_intents(intents_dir, ds, ds.train, intent::titles_text_source(ds), enc, catalogue, opt);
    const double stage_s = secs(t0, now());
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    fmt::print("  intent stage on train ({} samples x 2 views, {} distinct texts): {:.1f} s (encode {:.1f} s, localize "
               "{:.1f} s, write {:.1f} s); peak RSS {:.2f} GB\n",
               sum.samples, sum.distinct_texts, stage_s, sum.encode_seconds, sum.localize_seconds, sum.write_seconds,
               ru.ru_maxrss / 1048576.0);
  }
  return same ? 0 : 1;
}
