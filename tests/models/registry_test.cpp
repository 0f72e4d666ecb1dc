// The backbone registry: every shipped model config is read completely, and a misspelled key under
// models.NAME is refused (naming the model and the key) instead of silently training with the default.
#include <gtest/gtest.h>

#include <filesystem>
#include <set>
#include <string>

#include "llm4sbr/core/config.hpp"
#include "llm4sbr/core/error.hpp"
#include "llm4sbr/data/dataset.hpp"
#include "llm4sbr/models/batch.hpp"
#include "llm4sbr/models/recommender.hpp"
#include "llm4sbr/models/session_encoder.hpp"
#include "model_testing.hpp"

namespace llm4sbr::models {
namespace {

// A context every backbone can be built from (GCE-GNN and S²-DHCN build graphs from the training sessions).
struct TinyContext {
  data::PreparedDataset ds;
  ModelContext ctx;
  TinyContext() {
    ds.sessions = {{"a", {1, 2, 3}, 0}, {"b", {2, 4}, 0}};
    ds.train = {{0, 0, {1, 2}, 3}, {1, 1, {2}, 4}};
    ctx.n_items = 6;
    ctx.hidden_size = 4;
    ctx.seed = 1;
    ctx.dataset = &ds;
  }
};

std::string message_of(const std::string& model, const ModelContext& ctx, const Config& settings) {
  try {
    make_encoder(model, ctx, settings);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(Registry, EveryShippedModelConfigIsReadCompletely) {
  const TinyContext tiny;
  for (const auto& model : registered_encoders()) {
    SCOPED_TRACE(model);
    const auto file = std::filesystem::path(LLM4SBR_SOURCE_DIR) / "configs" / "models" / (model + ".yaml");
    ASSERT_TRUE(std::filesystem::exists(file)) << file;
    EXPECT_NO_THROW(make_encoder(model, tiny.ctx, Config::load(file)));
  }
}

TEST(Registry, MisspelledModelKeyIsRefusedNamingModelAndKey) {
  const TinyContext tiny;
  for (const auto& model : registered_encoders()) {
    SCOPED_TRACE(model);
    const auto msg = message_of(model, tiny.ctx, Config::parse("hiden_size: 8\n"));
    EXPECT_NE(msg.find(model + ": unknown config key 'hiden_size'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("hidden_size"), std::string::npos) << msg;  // the keys it does read
  }
  // TAGNN reads SR-GNN's keys plus its own; a key of another model is still unknown to it.
  EXPECT_NE(message_of("tagnn", tiny.ctx, Config::parse("step: 2\nfaithful_padding: false\nbeta: 0.1\n"))
                .find("tagnn: unknown config key 'beta'"),
            std::string::npos);
  EXPECT_EQ(message_of("srgnn", tiny.ctx, Config::parse("step: 2\nnonhybrid: true\n")), "");
}

// Serving ranks with linear_scorer's table instead of score() where a backbone has one, so the table (and
// GRU4Rec's bias) must be exactly what score() multiplies with; the others say they have none, and their
// forward_unscored is an error, not vectors scored some other way.
TEST(Registry, ALinearScorerIsWhatScoreComputes) {
  const TinyContext tiny;
  const std::set<std::string> linear = {"gcegnn", "gru4rec", "sasrec", "srgnn"};
  const auto samples = testing::samples_of({{1, 2, 3}, {4}, {2, 5, 2}}, {4, 5, 6});
  for (const auto& model : registered_encoders()) {
    SCOPED_TRACE(model);
    auto encoder = make_encoder(model, tiny.ctx, Config());
    PlainRecommenderImpl plain(encoder);
    plain.eval();
    torch::NoGradGuard no_grad;
    for (auto& p : plain.parameters()) p.uniform_(-1, 1);  // GRU4Rec's bias starts at zero
    const auto batch = make_batch(samples, std::vector<std::int64_t>{0, 1, 2});
    const auto scorer = plain.linear_scorer();
    ASSERT_EQ(scorer.defined(), linear.count(model) > 0);
    if (!scorer.defined()) {
      EXPECT_THROW(plain.forward_unscored(batch), Error);
      continue;
    }
    const auto out = plain.forward_unscored(batch);
    EXPECT_FALSE(out.scores.defined());
    auto product = out.session.mm(scorer.weight.t());
    if (scorer.bias.defined()) product = product + scorer.bias;
    EXPECT_TRUE(torch::allclose(product, plain.forward(batch).scores, 1e-5, 1e-6));
  }
}

}  // namespace
}  // namespace llm4sbr::models
