// What a person reads after a run: Table-3-style text and markdown tables, metrics.json, results.md,
// and a PNG of the validation curves (gnuplot).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/data/dataset.hpp"
#include "llm4sbr/train/trainer.hpp"

namespace llm4sbr::train {

/// One trained model: its table label, what its intents were, and its result.
struct ModelRun {
  std::string label;
  TrainResult result;
  std::string intents;  ///< "" for a plain backbone, else the intent source ("titles", "llm llama:...")
  std::string intents_dir;     ///< the intents-<key> stage folder the model was trained with ("" if none)
  std::string checkpoint_dir;  ///< where best.pt and last.pt are
};

/// A text table (rows = models, columns = metrics in display order); markdown when `markdown`. With
/// `improvement`, rows come in (baseline, enhanced) pairs and an `Improv. (%)` row after each complete
/// pair gives the relative change (%) of the second over the first, like the paper's Table 3.
std::string results_table(const std::vector<ModelRun>& runs, const std::vector<std::int64_t>& ks, bool markdown,
                          bool best_on_test = false, bool improvement = false);

/// Writes metrics.json and results.md for the runs into run_dir. `title` heads results.md.
void write_reports(const Config& cfg, const data::PreparedDataset& ds, const std::vector<ModelRun>& runs,
                   const std::filesystem::path& run_dir, const std::string& title, bool improvement);

/// Plots validation HR@k and MRR@k (k = the largest cutoff) per epoch of every run into run_dir/curves.png (gnuplot; the
/// data and script stay beside it as curves.dat / curves.gp). Returns false, with a warning, when
/// gnuplot is missing or fails or no run has a validation split; never throws for that.
bool plot_curves(const std::vector<ModelRun>& runs, const std::filesystem::path& run_dir, std::int64_t k = 20);

}  // namespace llm4sbr::train
