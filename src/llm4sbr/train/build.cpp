#include "llm4sbr/train/build.hpp"

#include <spdlog/spdlog.h>

#include <filesystem>

#include "llm4sbr/enhance/llm4sbr_head.hpp"
#include "llm4sbr/models/session_encoder.hpp"
#include "llm4sbr/train/trainer.hpp"

namespace llm4sbr::train {

namespace fs = std::filesystem;

Config model_settings(const Config& cfg) {
  const auto model = cfg.require<std::string>("model");
  YAML::Node settings(YAML::NodeType::Map);
  const fs::path configs = cfg.get<std::string>("paths.configs", "configs");
  const fs::path file = configs / "models" / (model + ".yaml");
  const YAML::Node over = cfg.node("models." + model);
  if (fs::exists(file)) settings = Config::load(file).root();
  // Run from outside the checkout, the backbone's settings went unread unsaid. A checkpoint's config holds them
  // all (models.<model>, recorded at training time): nothing to say then.
  else if (!over.IsMap() && !fs::is_directory(configs))
    spdlog::warn("{} is not read: there is no {} folder here (run from the checkout's root, or pass --config); "
                 "the backbone's built-in settings are used", file.string(), configs.string());
  // Without a models.<model> section, node() is null, and merging null would replace the file's keys.
  if (over.IsMap()) settings = merge_yaml(settings, over);
  return Config(settings);
}

std::shared_ptr<models::PlainRecommenderImpl> build_backbone(const Config& cfg, const data::PreparedDataset& ds) {
  const auto opt = train_options_from_config(cfg);
  const Config settings = model_settings(cfg);
  torch::manual_seed(opt.seed);
  models::ModelContext ctx;
  ctx.n_items = ds.n_items();
  ctx.hidden_size = settings.get<std::int64_t>("hidden_size", 100);
  ctx.seed = opt.seed;
  ctx.dataset = &ds;
  return std::make_shared<models::PlainRecommenderImpl>(models::make_encoder(cfg.require<std::string>("model"), ctx, settings));
}

models::Recommender build_llm4sbr(const Config& cfg, const data::PreparedDataset& ds, const std::vector<std::string>& views,
                                  std::int64_t text_dim) {
  auto backbone = build_backbone(cfg, ds);
  return std::make_shared<enhance::Llm4sbrHeadImpl>(backbone->encoder(),
                                                    enhance::HeadOptions::from_config(cfg, views, text_dim),
                                                    train_options_from_config(cfg).seed);
}

}  // namespace llm4sbr::train
