#include "llm4sbr/train/report.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>

#include "llm4sbr/core/atomic_file.hpp"
#include "llm4sbr/core/error.hpp"
#include "llm4sbr/data/prepare.hpp"
#include "llm4sbr/train/distributed.hpp"

namespace llm4sbr::train {

namespace fs = std::filesystem;

namespace {

double metric_or_zero(const MetricMap& m, const std::string& name) {
  auto it = m.find(name);
  return it == m.end() ? 0.0 : it->second;
}

// Quotes a string for a gnuplot script.
std::string gnuplot_quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

// True if `file` ends with a PNG's closing IEND chunk (a picture cut short does not).
bool png_is_whole(const fs::path& file) {
  static constexpr char kEnd[] = "IEND\xAE\x42\x60\x82";
  std::ifstream in(file, std::ios::binary | std::ios::ate);
  if (!in || in.tellg() < 8) return false;
  in.seekg(-8, std::ios::end);
  char tail[8];
  return in.read(tail, 8) && std::equal(tail, tail + 8, kEnd);
}

}  // namespace

std::string results_table(const std::vector<ModelRun>& runs, const std::vector<std::int64_t>& ks, bool markdown,
                          bool best_on_test, bool improvement) {
  const auto names = metric_names(ks);
  const std::string improv_label = "Improv. (%)";
  std::size_t label_width = improv_label.size();
  for (const auto& r : runs) label_width = std::max(label_width, r.label.size());
  std::string out;
  auto cell = [&](const std::string& s) { return markdown ? fmt::format(" {} |", s) : fmt::format(" {:>8}", s); };
  auto row_start = [&](const std::string& label) {
    return markdown ? fmt::format("| {} |", label) : fmt::format("{:<{}}", label, label_width);
  };
  out += row_start("Model");
  for (const auto& n : names) out += cell(n);
  out += "\n";
  if (markdown) {
    out += "|---|";
    for (std::size_t i = 0; i < names.size(); ++i) out += "---:|";
    out += "\n";
  }
  auto metrics_of = [&](const ModelRun& r) -> const MetricMap& { return best_on_test ? r.result.best_on_test : r.result.test; };
  auto improvement_row = [&](const ModelRun& base_run, const ModelRun& enhanced_run) {
    out += row_start(improv_label);
    for (const auto& n : names) {
      const double base = metric_or_zero(metrics_of(base_run), n);
      const double enhanced = metric_or_zero(metrics_of(enhanced_run), n);
      out += cell(base > 0 ? fmt::format("{:+.2f}", 100.0 * (enhanced - base) / base) : "-");
    }
    out += "\n";
  };
  for (std::size_t i = 0; i < runs.size(); ++i) {
    out += row_start(runs[i].label);
    for (const auto& n : names) out += cell(fmt::format("{:.2f}", metric_or_zero(metrics_of(runs[i]), n)));
    out += "\n";
    if (improvement && i % 2 == 1) improvement_row(runs[i - 1], runs[i]);
  }
  return out;
}

void write_reports(const Config& cfg, const data::PreparedDataset& ds, const std::vector<ModelRun>& runs,
                   const fs::path& run_dir, const std::string& title, bool improvement) {
  const auto opt = train_options_from_config(cfg);
  nlohmann::json metrics;
  metrics["dataset"] = cfg.get<std::string>("dataset", ds.name);
  metrics["stats"] = data::dataset_stats(ds);
  metrics["paper_compatible"] = opt.paper_compatible;
  // Data-parallel training on more than one rank gives the LLM4SBR head other numbers (its AU losses are
  // per rank's part of the batch): a report says how many trained.
  metrics["ranks"] = distributed().world_size();
  for (const auto& r : runs) {
    metrics["models"][r.label] = r.result.to_json();
    metrics["models"][r.label]["intents"] = r.intents;
    metrics["models"][r.label]["intents_dir"] = r.intents_dir;  // what `evaluate --intents` needs
    metrics["models"][r.label]["checkpoint_dir"] = r.checkpoint_dir;
  }
  // The first run's figures also sit at the top level, the layout scripts read for a single model.
  if (!runs.empty()) {
    auto first = runs.front().result.to_json();
    for (const char* k : {"test", "best_on_test", "epochs"}) metrics[k] = first[k];
  }
  write_file_atomically(run_dir / "metrics.json", metrics.dump(2) + "\n");

  std::string md = fmt::format("# {}\n\n", title);
  md += fmt::format("Test metrics (%) of the epoch selected on the validation split{}; averaged over all {} test samples{}.\n\n",
                    runs.empty() || runs.front().result.selected_on_validation ? "" : " (no validation split: last epoch)",
                    ds.test.size(), opt.paper_compatible ? " with the reference code's @5/@10 averaging (paper_compatible)" : "");
  if (distributed().active())
    md += fmt::format("Trained data-parallel on {} ranks (README, \"Training on several processes or machines\").\n\n",
                      distributed().world_size());
  md += results_table(runs, opt.ks, true, false, improvement);
  md += "\nIntents: ";
  std::vector<std::string> sources;
  for (const auto& r : runs) sources.push_back(fmt::format("{} = {}", r.label, r.intents.empty() ? "none" : r.intents));
  md += fmt::format("{}.\n", fmt::join(sources, "; "));
  md += "\nBest value of each metric over epochs on the test set (the papers' protocol; optimistic):\n\n";
  md += results_table(runs, opt.ks, true, true, improvement);
  if (fs::exists(run_dir / "curves.png")) md += "\n![validation curves](curves.png)\n";
  const auto k = opt.ks.back();
  md += fmt::format("\n## Epochs\n\n| model | epoch | lr | loss | s/epoch | samples/s | valid HR@{0} | valid MRR@{0} | test HR@{0} | "
                    "test MRR@{0} |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
                    k);
  const auto hr = fmt::format("HR@{}", k), mrr = fmt::format("MRR@{}", k);
  for (const auto& r : runs)
    for (const auto& e : r.result.epochs)
      md += fmt::format("| {} | {}{} | {:.0e} | {:.4f} | {:.1f} | {:.0f} | {} | {} | {:.2f} | {:.2f} |\n", r.label, e.epoch,
                        e.epoch == r.result.best_epoch ? "*" : "", e.lr, e.train_loss, e.train_seconds,
                        e.train_samples_per_second, e.valid.empty() ? "-" : fmt::format("{:.2f}", metric_or_zero(e.valid, hr)),
                        e.valid.empty() ? "-" : fmt::format("{:.2f}", metric_or_zero(e.valid, mrr)), metric_or_zero(e.test, hr),
                        metric_or_zero(e.test, mrr));
  md += fmt::format("\n## Data\n\n```\n{}\n```\n\n## Settings\n\n```yaml\n{}```\n", data::dataset_stats(ds).dump(2), cfg.dump());
  write_file_atomically(run_dir / "results.md", md);
}

bool plot_curves(const std::vector<ModelRun>& runs, const fs::path& run_dir, std::int64_t k) {
  const auto hr = fmt::format("HR@{}", k), mrr = fmt::format("MRR@{}", k);
  std::string data;
  std::vector<std::string> plotted;
  for (const auto& r : runs) {
    bool any = false;
    for (const auto& e : r.result.epochs) {
      if (e.valid.empty()) continue;
      data += fmt::format("{} {:.4f} {:.4f}\n", e.epoch, metric_or_zero(e.valid, hr), metric_or_zero(e.valid, mrr));
      any = true;
    }
    if (!any) continue;
    data += "\n\n";  // a gnuplot data block per run, addressed by `index`
    plotted.push_back(r.label);
  }
  if (plotted.empty()) {
    spdlog::info("plot: no validation split, no curves to draw");
    return false;
  }
  write_file_atomically(run_dir / "curves.dat", data);
  std::string lines_hr, lines_mrr;
  for (std::size_t i = 0; i < plotted.size(); ++i) {
    const auto sep = i ? ", " : "";
    lines_hr += fmt::format("{}'curves.dat' index {} using 1:2 with linespoints title {}", sep, i, gnuplot_quote(plotted[i]));
    lines_mrr += fmt::format("{}'curves.dat' index {} using 1:3 with linespoints title {}", sep, i, gnuplot_quote(plotted[i]));
  }
  const std::string script = fmt::format(
      "set terminal pngcairo size 1100,450 font 'sans,10' noenhanced\n"
      "set output 'curves.png.tmp'\n"
      "set multiplot layout 1,2 title 'Validation metrics per epoch'\n"
      "set grid\nset xlabel 'epoch'\nset key bottom right\nset xtics 1\n"
      "set ylabel '{} (%)'\nplot {}\n"
      "set ylabel '{} (%)'\nplot {}\n"
      "unset multiplot\n",
      hr, lines_hr, mrr, lines_mrr);
  write_file_atomically(run_dir / "curves.gp", script);
  const std::string cmd = fmt::format("cd {} && gnuplot curves.gp 2>curves.log", gnuplot_quote(run_dir.string()));
  if (std::system(cmd.c_str()) != 0) {
    std::error_code ec;
    fs::remove(run_dir / "curves.png.tmp", ec);
    spdlog::warn("plot: gnuplot failed or is missing (see {}); the curves are in curves.dat",
                 (run_dir / "curves.log").string());
    return false;
  }
  // gnuplot writes the picture in place and may exit 0 when the disk fills under it: only a whole picture
  // takes the name, so a failed plot leaves the previous curves.png.
  std::error_code ec;
  if (png_is_whole(run_dir / "curves.png.tmp")) fs::rename(run_dir / "curves.png.tmp", run_dir / "curves.png", ec);
  else spdlog::warn("plot: gnuplot did not write a whole {} (disk full?)", (run_dir / "curves.png").string());
  fs::remove(run_dir / "curves.png.tmp", ec);
  fs::remove(run_dir / "curves.log", ec);
  return true;
}

}  // namespace llm4sbr::train
