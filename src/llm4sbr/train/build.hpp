// Building a fresh model from settings: the backbone named by `model` with its hyper-parameters, and the
// LLM4SBR head around it. Training starts here; load_trained (checkpoint.hpp) builds through the same
// functions before it loads the weights, so a trained model is rebuilt exactly as it was trained.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/data/dataset.hpp"
#include "llm4sbr/models/recommender.hpp"

namespace llm4sbr::train {

/// The hyper-parameters of the model named by cfg["model"]: configs/models/<model>.yaml (found through
/// cfg["paths.configs"]) overridden by cfg["models.<model>"] (so `--set models.srgnn.step=2` works).
Config model_settings(const Config& cfg);

/// Builds the plain backbone named by cfg["model"] for ds. Its initial weights depend only on train.seed,
/// so the plain and the enhanced model of a run start from the same backbone.
std::shared_ptr<models::PlainRecommenderImpl> build_backbone(const Config& cfg, const data::PreparedDataset& ds);

/// Builds LLM4SBR(cfg["model"]) for intents with `views` of width `text_dim` (enhance.* settings).
models::Recommender build_llm4sbr(const Config& cfg, const data::PreparedDataset& ds, const std::vector<std::string>& views,
                                  std::int64_t text_dim);

}  // namespace llm4sbr::train
