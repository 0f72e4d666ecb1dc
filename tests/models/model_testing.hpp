// Helpers shared by the backbone tests (tests/models/*_test.cpp): tiny hand-made inputs, and the checks
// every SessionEncoder must pass (finite-difference gradients, batch and padding independence, both
// anchors reaching the readout, checkpoint round-trips), written once.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "llm4sbr/models/batch.hpp"
#include "llm4sbr/data/dataset.hpp"
#include "llm4sbr/models/session_encoder.hpp"
#include "test_support.hpp"

namespace llm4sbr::testing {

/// Samples with ids and session indices 0, 1, ... from prefixes and their targets (same length).
inline std::vector<data::Sample> samples_of(const std::vector<std::vector<std::int64_t>>& prefixes,
                                            const std::vector<std::int64_t>& targets) {
  std::vector<data::Sample> out;
  for (std::size_t i = 0; i < prefixes.size(); ++i)
    out.push_back({static_cast<std::int64_t>(i), static_cast<std::int64_t>(i), prefixes[i], targets[i]});
  return out;
}

/// A [rows, cols] tensor of `dtype` from nested lists (every row as long as the first).
template <typename T>
torch::Tensor matrix(const std::vector<std::vector<T>>& rows, torch::Dtype dtype) {
  auto t = torch::zeros({static_cast<std::int64_t>(rows.size()), static_cast<std::int64_t>(rows[0].size())}, dtype);
  for (std::size_t r = 0; r < rows.size(); ++r)
    for (std::size_t c = 0; c < rows[r].size(); ++c)
      t[static_cast<std::int64_t>(r)][static_cast<std::int64_t>(c)] = rows[r][c];
  return t;
}
inline torch::Tensor int_matrix(const std::vector<std::vector<std::int64_t>>& rows) { return matrix(rows, torch::kInt64); }
inline torch::Tensor real_matrix(const std::vector<std::vector<double>>& rows) { return matrix(rows, torch::kFloat64); }

// ---------------------------------------------------------------------------------------------------
// Finite-difference gradients.

/// Settings of a gradient check.
struct GradCheck {
  double eps = 1e-6;        ///< central-difference step
  double tolerance = 1e-5;  ///< bound on ‖analytic − numeric‖ / max(‖analytic‖, ‖numeric‖), per parameter
  /// Parameters to leave out (unused in a mode, or with a gradient that is exactly zero by design).
  std::function<bool(const std::string&)> skip = [](const std::string&) { return false; };
  std::string label;  ///< appended to failure messages (e.g. the mode under test)
};

/// Compares the gradient already stored in every parameter's .grad() (call backward() first) with
/// central differences (f(p + eps) − f(p − eps)) / 2 eps of `numeric_loss`, entry by entry. Run in double
/// precision: in float the differences drown in rounding. A parameter whose gradients are both ~0 fails
/// as "gets no gradient", since a silently disconnected parameter is the bug this check exists to find.
inline void expect_stored_gradients_match(torch::nn::Module& model, const std::function<double()>& numeric_loss,
                                          const GradCheck& check = {}) {
  torch::NoGradGuard no_grad;
  for (const auto& item : model.named_parameters()) {
    const std::string& name = item.key();
    if (check.skip(name)) continue;
    auto p = item.value();
    ASSERT_TRUE(p.grad().defined()) << name << " has no .grad() " << check.label;
    const auto analytic = p.grad().clone();
    auto numeric = torch::zeros_like(p);
    auto flat = p.view({-1});
    auto num_flat = numeric.view({-1});
    for (std::int64_t k = 0; k < flat.numel(); ++k) {
      const double orig = flat[k].item<double>();
      flat[k] = orig + check.eps;
      const double up = numeric_loss();
      flat[k] = orig - check.eps;
      const double down = numeric_loss();
      flat[k] = orig;
      num_flat[k] = (up - down) / (2 * check.eps);
    }
    const double scale = std::max(analytic.norm().item<double>(), numeric.norm().item<double>());
    ASSERT_GT(scale, 1e-8) << name << " gets no gradient " << check.label;
    // The norm of the difference bounds every entry's error too.
    EXPECT_LT((analytic - numeric).norm().item<double>() / scale, check.tolerance)
        << name << " " << check.label << ": largest entry error " << (analytic - numeric).abs().max().item<double>()
        << " at gradient scale " << scale;
  }
}

/// Backpropagates loss() once and checks the result against central differences of loss() itself.
inline void expect_gradients_match(torch::nn::Module& model, const std::function<torch::Tensor()>& loss,
                                   const GradCheck& check = {}) {
  model.zero_grad();
  loss().backward();
  expect_stored_gradients_match(model, [&] { return loss().item<double>(); }, check);
}

/// The usual loss of a backbone: cross-entropy of forward(batch) against the batch's targets.
inline std::function<torch::Tensor()> cross_entropy_of(models::SessionEncoderImpl& model,
                                                       const models::SessionBatch& batch) {
  return [&model, batch] { return torch::nn::functional::cross_entropy(model.forward(batch), batch.targets - 1); };
}

// ---------------------------------------------------------------------------------------------------
// Properties every backbone has.

/// Each sample's scores are the same alone, inside a batch of all the samples in reverse order (other
/// sessions, longer ones among them, share its batch and its padding), and padded to 30 positions.
/// Call in eval mode: nothing at test time may depend on the rest of the batch (DESIGN.md).
inline void expect_scores_independent_of_batch(models::SessionEncoderImpl& model,
                                               const std::vector<data::Sample>& samples) {
  torch::NoGradGuard no_grad;
  std::vector<std::int64_t> reversed(samples.size());
  std::iota(reversed.rbegin(), reversed.rend(), 0);
  const auto together = model.forward(models::make_batch(samples, reversed));
  for (std::int64_t i = 0; i < static_cast<std::int64_t>(samples.size()); ++i) {
    const std::vector<std::int64_t> alone = {i};
    const auto single = model.forward(models::make_batch(samples, alone))[0];
    const auto padded = model.forward(models::make_batch(samples, alone, torch::kCPU, 30))[0];
    const auto in_batch = together[static_cast<std::int64_t>(samples.size()) - 1 - i];
    EXPECT_TRUE(torch::allclose(single, in_batch, 1e-5, 1e-6)) << "sample " << i << ": " << (single - in_batch).abs().max();
    EXPECT_TRUE(torch::allclose(single, padded, 1e-5, 1e-6)) << "sample " << i << ": " << (single - padded).abs().max();
  }
}

/// The session vector depends on both anchors, so that the LLM4SBR head, which rescales rep.global and
/// rep.local between encode() and readout(), changes the scores through either of them.
inline void expect_readout_uses_both_anchors(models::SessionEncoderImpl& model, const models::SessionBatch& batch) {
  torch::NoGradGuard no_grad;
  const auto rep = model.encode(batch);
  const auto plain = model.readout(rep);
  auto gated_global = rep, gated_local = rep;
  gated_global.global = rep.global * 0.5;
  gated_local.local = rep.local * 0.5;
  EXPECT_FALSE(torch::allclose(model.readout(gated_global), plain)) << model.name() << " ignores rep.global";
  EXPECT_FALSE(torch::allclose(model.readout(gated_local), plain)) << model.name() << " ignores rep.local";
}

/// The readout of a hybrid model is W3 [global ; local] + b3 (`w3`) and depends on both anchors; a
/// nonhybrid one returns its own anchor, rep.global (`own_is_global`) or rep.local.
inline void expect_hybrid_readout(models::SessionEncoderImpl& hybrid, torch::nn::Linear w3,
                                  models::SessionEncoderImpl& nonhybrid, bool own_is_global,
                                  const models::SessionBatch& batch) {
  expect_readout_uses_both_anchors(hybrid, batch);
  torch::NoGradGuard no_grad;
  const auto rep = hybrid.encode(batch);
  EXPECT_TRUE(torch::allclose(hybrid.readout(rep), w3(torch::cat({rep.global, rep.local}, 1))));
  EXPECT_TRUE(torch::equal(nonhybrid.readout(rep), own_is_global ? rep.global : rep.local));
}

/// The representation of a batch has the documented shapes: local and global [B, d], clicks [P, d] with
/// the batch row of each click, and scores [B, N] that are finite and equal to forward(batch).
inline void expect_representation_shapes(models::SessionEncoderImpl& model, const models::SessionBatch& batch) {
  const std::int64_t b = batch.size(), d = model.hidden_size();
  const auto rep = model.encode(batch);
  EXPECT_EQ(rep.local.sizes(), (std::vector<std::int64_t>{b, d}));
  EXPECT_EQ(rep.global.sizes(), (std::vector<std::int64_t>{b, d}));
  const auto lengths = batch.lengths.to(torch::kCPU);
  EXPECT_EQ(rep.clicks.sizes(), (std::vector<std::int64_t>{lengths.sum().item<std::int64_t>(), d}));
  EXPECT_TRUE(torch::equal(rep.click_sessions.to(torch::kCPU),
                           torch::repeat_interleave(torch::arange(b, torch::kInt64), lengths)));
  const auto scores = model.score(model.readout(rep), rep);
  EXPECT_EQ(scores.sizes(), (std::vector<std::int64_t>{b, model.n_items()}));
  EXPECT_TRUE(torch::isfinite(scores).all().item<bool>());
}

/// Saves `saved`, checks that `loaded` (initialised differently) scores `batch` differently, loads the
/// checkpoint into it, and expects identical scores. Both models are put in eval mode.
template <typename Model>
void expect_checkpoint_round_trip(const std::shared_ptr<Model>& saved, const std::shared_ptr<Model>& loaded,
                                  const models::SessionBatch& batch) {
  TempDir dir;
  const auto path = (dir / "model.pt").string();
  saved->eval();
  loaded->eval();
  torch::save(saved, path);
  torch::NoGradGuard no_grad;
  ASSERT_FALSE(torch::equal(saved->forward(batch), loaded->forward(batch)));
  torch::load(loaded, path);
  EXPECT_TRUE(torch::equal(saved->forward(batch), loaded->forward(batch)));
}

}  // namespace llm4sbr::testing
