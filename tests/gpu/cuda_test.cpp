// The GPU test set (ctest -L gpu): every backbone, plain and with the LLM4SBR head, scores a few Beauty test
// sessions the same on the CPU and on CUDA, one training step moves the weights the same, and a model
// trained on the GPU evaluates on the CPU from its checkpoint. Skipped where LibTorch has no CUDA GPU.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <future>
#include <string>
#include <vector>

#include "llm4sbr/data/io.hpp"
#include "llm4sbr/models/batch.hpp"
#include "llm4sbr/models/session_encoder.hpp"
#include "llm4sbr/train/build.hpp"
#include "llm4sbr/train/checkpoint.hpp"
#include "llm4sbr/train/device.hpp"
#include "llm4sbr/train/experiment.hpp"
#include "test_support.hpp"

namespace llm4sbr::train {
namespace {

using llm4sbr::testing::TempDir;

// The device compared with the CPU: CUDA, or $LLM4SBR_TEST_DEVICE (`cpu` dry-runs this file on any machine).
torch::Device test_device() {
  const char* env = std::getenv("LLM4SBR_TEST_DEVICE");
  return resolve_device(env && *env ? env : "cuda:0", "LLM4SBR_TEST_DEVICE");
}

#define LLM4SBR_REQUIRE_CUDA()                                                                    \
  if (!torch::cuda::is_available() && !std::getenv("LLM4SBR_TEST_DEVICE"))                       \
  GTEST_SKIP() << "no CUDA GPU visible to LibTorch"

// Dropout off and S²-DHCN's self-supervised loss (random permutations) weighted 0: the CPU and the GPU
// draw different random numbers, everything else must agree.
Config cuda_config(const std::string& model, bool head) {
  Config cfg;
  cfg.set("model", model);
  cfg.set("paths.configs", std::string(LLM4SBR_SOURCE_DIR) + "/configs");
  cfg.apply_overrides({"device=cpu", "threads=0", "models.gcegnn.dropout_global=0", "models.gru4rec.dropout_hidden=0",
                       "models.sasrec.dropout=0", "models.dhcn.beta=0", std::string("enhance.enabled=") + (head ? "true" : "false")});
  return cfg;
}

const data::PreparedDataset& beauty() {
  static const data::PreparedDataset ds = data::read_prepared(llm4sbr::testing::prepared_beauty());
  return ds;
}

constexpr std::int64_t kTextDim = 32;

// Seeded random unit intents for the first n test samples, [n, 2, kTextDim].
torch::Tensor random_intents(std::int64_t n) {
  torch::manual_seed(11);
  const auto x = torch::randn({n, 2, kTextDim});
  return x / x.norm(2, -1, true);
}

models::Recommender build(const std::string& model, bool head) {
  const auto cfg = cuda_config(model, head);
  torch::manual_seed(5);  // the head's initial weights
  if (head) return build_llm4sbr(cfg, beauty(), {"long", "short"}, kTextDim);
  return build_backbone(cfg, beauty());
}

models::SessionBatch batch_on(const torch::Device& device, const torch::Tensor& intents) {
  const std::vector<data::Sample> samples(beauty().test.begin(), beauty().test.begin() + 24);
  auto batch = models::make_batch(samples, device);
  if (intents.defined()) batch.intents = intents.to(device).index_select(0, batch.sample_ids);
  return batch;
}

// Every registered backbone, plain and with the LLM4SBR head: fn(name, head, label), traced by its label.
void for_every_model(const std::function<void(const std::string&, bool, const std::string&)>& fn) {
  for (const auto& name : models::registered_encoders())
    for (const bool head : {false, true}) {
      const auto label = fmt::format("{}{}", name, head ? " + LLM4SBR head" : "");
      SCOPED_TRACE(label);
      fn(name, head, label);
    }
}

void expect_close(const torch::Tensor& cpu, const torch::Tensor& cuda, const std::string& what) {
  const auto diff = (cpu - cuda.to(torch::kCPU)).abs().max().item<double>();
  EXPECT_TRUE(torch::allclose(cpu, cuda.to(torch::kCPU), 1e-4, 1e-4)) << what << ": max |cpu - cuda| = " << diff;
}

// Also what the trainer's BatchPrefetcher does: the model's inputs (session graphs, packed clicks) prepared on
// another thread and copied to the GPU from there without blocking give the scores of the model making them.
TEST(Cuda, EveryBackboneScoresTheSameOnCpuAndGpu) {
  LLM4SBR_REQUIRE_CUDA();
  LLM4SBR_REQUIRE_DATA("amazon-beauty-2014");
  const torch::Device cuda = test_device();
  const auto intents = random_intents(static_cast<std::int64_t>(beauty().test.size()));
  for_every_model([&](const std::string& name, bool head, const std::string& label) {
      auto model = build(name, head);
      model->eval();
      torch::NoGradGuard no_grad;
      const auto on_cpu = model->forward(batch_on(torch::kCPU, head ? intents : torch::Tensor())).scores;
      model->to(cuda);
      EXPECT_EQ(device_of(*model), cuda);
      const auto on_gpu = model->forward(batch_on(cuda, head ? intents : torch::Tensor())).scores;
      EXPECT_EQ(on_gpu.device(), cuda);
      expect_close(on_cpu, on_gpu, label + " scores");
      auto batch = batch_on(cuda, head ? intents : torch::Tensor());
      batch.inputs = std::async(std::launch::async, [&] { return model->prepare(batch, cuda); }).get();
      const auto prepared = model->forward(batch).scores.to(torch::kCPU);
      EXPECT_TRUE(torch::allclose(on_gpu.to(torch::kCPU), prepared, 1e-6, 1e-6)) << label << ": inputs prepared apart";
  });
}

// One training step: the same loss, and gradients equal up to float rounding (relative to each parameter's
// largest gradient: cuDNN's GRU and cuBLAS sum in other orders than the CPU). The optimizer step after it is
// the same code on both devices; its first Adam update, m / (sqrt(v) + eps), turns a rounding difference in
// a near-zero gradient into a difference of up to the learning rate, so the weights after it are not compared.
TEST(Cuda, OneTrainingStepHasTheSameLossAndGradients) {
  LLM4SBR_REQUIRE_CUDA();
  LLM4SBR_REQUIRE_DATA("amazon-beauty-2014");
  const torch::Device cuda = test_device();
  const auto intents = random_intents(static_cast<std::int64_t>(beauty().test.size()));
  for_every_model([&](const std::string& name, bool head, const std::string& label) {
      std::vector<double> losses;
      std::vector<std::vector<torch::Tensor>> grads;  // per device, per parameter
      for (const auto& device : {torch::Device(torch::kCPU), cuda}) {
        auto model = build(name, head);
        model->to(device);
        model->train();
        auto batch = batch_on(device, head ? intents : torch::Tensor());
        auto out = model->forward(batch);
        auto loss = torch::nn::functional::cross_entropy(out.scores, batch.targets - 1);
        if (out.aux_loss.defined()) loss = loss + out.aux_loss;
        loss.backward();
        losses.push_back(loss.item<double>());
        grads.emplace_back();
        for (const auto& p : model->parameters())
          grads.back().push_back(p.grad().defined() ? p.grad().to(torch::kCPU) : torch::zeros_like(p, torch::kCPU));
      }
      EXPECT_NEAR(losses[0], losses[1], 1e-4 * std::max(1.0, std::abs(losses[0])));
      for (std::size_t i = 0; i < grads[0].size(); ++i) {
        const auto scale = grads[0][i].abs().max().item<double>();
        const auto diff = (grads[0][i] - grads[1][i]).abs().max().item<double>();
        EXPECT_LE(diff, 1e-3 * scale + 1e-7) << label << " parameter " << i << ": gradients up to " << scale;
      }
  });
}

TEST(Cuda, AModelTrainedOnTheGpuEvaluatesOnTheCpu) {
  LLM4SBR_REQUIRE_CUDA();
  LLM4SBR_REQUIRE_DATA("amazon-beauty-2014");
  TempDir dir;
  auto cfg = cuda_config("srgnn", false);
  cfg.apply_overrides({"device=" + test_device().str(), "train.epochs=1", "data.valid_fraction=0"});
  // A small training split keeps the test short; the model and its checkpoint are full-sized.
  data::PreparedDataset ds = beauty();
  ds.train.resize(5000);
  auto model = build_backbone(cfg, ds);
  train_model(cfg, ds, *model, dir / "srgnn", {}, {llm4sbr::testing::prepared_beauty(), {}, {}});
  EXPECT_EQ(device_of(*model), test_device());
  torch::NoGradGuard no_grad;
  model->eval();
  const auto on_gpu = model->forward(batch_on(device_of(*model), {})).scores;
  const auto trained = load_trained(dir / "srgnn" / "best.pt", torch::kCPU);
  EXPECT_TRUE(device_of(*trained.model).is_cpu());
  const auto on_cpu = trained.model->forward(batch_on(torch::kCPU, {})).scores;
  expect_close(on_cpu, on_gpu, "scores after reloading on the CPU");
}

}  // namespace
}  // namespace llm4sbr::train
