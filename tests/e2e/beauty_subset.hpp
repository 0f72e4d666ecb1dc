// The Amazon Beauty subset the end-to-end tests train on, and the check they share: a model trained for
// a few epochs through the trainer beats the most-popular baseline on the test split.
#pragma once

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/data/prepare.hpp"
#include "llm4sbr/data/readers.hpp"
#include "llm4sbr/train/experiment.hpp"
#include "llm4sbr/models/popularity.hpp"
#include "llm4sbr/train/trainer.hpp"
#include "test_support.hpp"

namespace llm4sbr::testing {

/// configs/beauty.yaml on the first 4,000 users, one epoch, two threads. A 5-core filter on a subset
/// would drop almost every session, so rare items (< 3 clicks) are removed iteratively instead.
/// `overrides` ("key=value") are applied last.
inline Config beauty_subset_config(const std::vector<std::string>& overrides = {}) {
  Config cfg = Config::load(std::filesystem::path(LLM4SBR_SOURCE_DIR) / "configs" / "beauty.yaml");
  cfg.set("paths.configs", std::string(LLM4SBR_SOURCE_DIR) + "/configs");
  cfg.apply_overrides({"data.max_sessions=4000", "data.min_item_count=3", "data.iterative_filter=true",
                       "train.epochs=1", "threads=2"});
  cfg.apply_overrides(overrides);
  return cfg;
}

/// The subset prepared with beauty_subset_config()'s data settings, once per process.
inline const data::PreparedDataset& beauty_subset() {
  static const auto ds = [] {
    const auto raw = data::read_dataset("beauty", data_dir() / "amazon-beauty-2014");
    return std::make_unique<data::PreparedDataset>(data::prepare(raw, data::prepare_options_from_config(beauty_subset_config())));
  }();
  return *ds;
}

/// Trains cfg's model on the subset for train.epochs epochs (writing its checkpoint), prints its test
/// HR@20 and MRR@20 beside most-popular's and the time taken, and expects a higher HR@20 than
/// most-popular's. Returns both results (the trained model's first) for further checks.
inline std::pair<train::MetricMap, train::MetricMap> expect_beats_most_popular(const Config& cfg) {
  const auto& ds = beauty_subset();
  EXPECT_GT(ds.train.size(), 10000u);
  EXPECT_GT(ds.test.size(), 1000u);
  models::PopularityRecommenderImpl pop(ds);
  const auto popular = train::evaluate(pop, ds.test, train::train_options_from_config(cfg), false);

  TempDir dir;
  const auto t0 = std::chrono::steady_clock::now();
  const auto run = train::train_backbone(cfg, ds, dir.path());
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const auto epochs = cfg.get<std::int64_t>("train.epochs", 1);
  EXPECT_EQ(run.result.epochs.size(), static_cast<std::size_t>(epochs));
  const auto& test = run.result.test;
  fmt::print("{}: {} epoch(s), HR@20 {:.2f} MRR@20 {:.2f} (most-popular {:.2f} / {:.2f}); first epoch trains in {:.1f} s, "
             "all {:.1f} s\n",
             run.label, epochs, test.at("HR@20"), test.at("MRR@20"), popular.at("HR@20"), popular.at("MRR@20"),
             run.result.epochs.at(0).train_seconds, seconds);
  EXPECT_GT(test.at("HR@20"), popular.at("HR@20")) << run.label;
  EXPECT_TRUE(std::filesystem::exists(std::filesystem::path(run.checkpoint_dir) / "best.pt")) << run.checkpoint_dir;
  return {test, popular};
}

}  // namespace llm4sbr::testing
