#include "llm4sbr/train/resume.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>

#include "llm4sbr/core/atomic_file.hpp"
#include "llm4sbr/core/error.hpp"
#include "llm4sbr/core/kill_point.hpp"
#include "llm4sbr/train/device.hpp"
#include "llm4sbr/train/distributed.hpp"

namespace llm4sbr::train {

namespace fs = std::filesystem;

namespace {

constexpr int kFormat = 1;

nlohmann::json progress_json(const FitProgress& p, const std::string& key) {
  return {{"format", kFormat},     {"key", key},
          {"epoch", p.epoch},      {"finished", p.finished},
          {"best_valid", p.best_valid}, {"bad_epochs", p.bad_epochs},
          {"best_test_ranks", p.best_test_ranks}, {"result", p.result.to_json()},
          {"ranks", distributed().world_size()}};
}

}  // namespace

void save_training_state(const fs::path& file, const torch::nn::Module& model, const torch::optim::Optimizer& optimizer,
                         const FitProgress& progress, const std::string& key) {
  torch::serialize::OutputArchive archive, weights, moments;
  model.save(weights);
  optimizer.save(moments);
  archive.write("model", weights);
  archive.write("optimizer", moments);
  {
    const auto& generator = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(const_cast<at::Generator&>(generator).mutex());
    archive.write("cpu_generator", generator.get_state());
  }
  archive.write("progress", c10::IValue(progress_json(progress, key).dump()));
  std::ostringstream bytes;
  archive.save_to(bytes);
  const auto data = bytes.str();
  AtomicFile out(file);
  out.write(data.data(), data.size() / 2);
  kill_point("state", progress.epoch);  // half of the new state written
  out.write(data.data() + data.size() / 2, data.size() - data.size() / 2);
  out.commit();
}

std::string read_training_state(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::ostringstream bytes;
  if (in) bytes << in.rdbuf();
  if (!in || in.bad()) throw InputError(file.string(), 0, "", fmt::format("cannot read the training state: {}", std::strerror(errno)));
  return bytes.str();
}

std::string load_training_state(const fs::path& file, torch::nn::Module& model, torch::optim::Optimizer& optimizer,
                                FitProgress& progress, const std::string& key, std::int64_t max_epochs) {
  return load_training_state(file, read_training_state(file), model, optimizer, progress, key, max_epochs);
}

std::string load_training_state(const fs::path& file, const std::string& bytes, torch::nn::Module& model,
                                torch::optim::Optimizer& optimizer, FitProgress& progress, const std::string& key,
                                std::int64_t max_epochs) {
  torch::serialize::InputArchive archive, weights, moments;
  nlohmann::json j;
  torch::Tensor generator_state;
  try {
    archive.load_from(bytes.data(), bytes.size(), device_of(model));  // the optimizer's moments beside their parameters
    c10::IValue text;
    archive.read("progress", text);
    j = nlohmann::json::parse(text.toStringRef());
    if (j.at("format").get<int>() != kFormat)
      throw InputError(file.string(), 0, "format", fmt::format("state format {} (this build reads {})", j.at("format").dump(), kFormat));
    if (j.at("key").get<std::string>() != key) return "was written with other settings";
    if (j.at("epoch").get<std::int64_t>() > max_epochs)
      return fmt::format("holds {} epochs, more than train.epochs = {}", j.at("epoch").get<std::int64_t>(), max_epochs);
    archive.read("model", weights);
    archive.read("optimizer", moments);
    archive.read("cpu_generator", generator_state);
  } catch (const InputError&) {
    throw;
  } catch (const std::exception& e) {
    // LibTorch's errors carry its C++ stack in what(): the message keeps the reason only.
    const auto* torch_error = dynamic_cast<const c10::Error*>(&e);
    throw InputError(file.string(), 0, "",
                     fmt::format("not a readable training state (truncated or corrupt: {} bytes). Delete it, or pass --set "
                                 "resume=false, to train from scratch ({})",
                                 bytes.size(),
                                 torch_error ? torch_error->what_without_backtrace() : e.what()));
  }
  try {
    model.load(weights);
    optimizer.load(moments);
  } catch (const std::exception& e) {
    throw InputError(file.string(), 0, "model",
                     fmt::format("the state does not fit this model (another model or dataset in the same folder?): {}",
                                 e.what()));
  }
  auto generator = at::detail::getDefaultCPUGenerator();
  {
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(generator_state.to(torch::kCPU));
  }
  // Another number of ranks goes on from the same weights, but its steps differ (the head's AU losses per
  // rank's part of the batch, per-rank dropout): the end is neither job's uninterrupted result.
  if (const auto ranks = j.value("ranks", 1); ranks != distributed().world_size())
    spdlog::warn("{} was written by a job of {} rank(s) and continues with {}: the training goes on from it, but ends "
                 "exactly as an uninterrupted job only with the same number of ranks",
                 file.string(), ranks, distributed().world_size());
  progress.epoch = j.at("epoch").get<std::int64_t>();
  progress.finished = j.at("finished").get<bool>();
  progress.best_valid = j.at("best_valid").get<double>();
  progress.bad_epochs = j.at("bad_epochs").get<std::int64_t>();
  progress.best_test_ranks = j.at("best_test_ranks").get<std::vector<std::int64_t>>();
  progress.result = TrainResult::from_json(j.at("result"));
  return "";
}

void kill_point(const char* stage, std::int64_t epoch, std::int64_t batch) {
  if (!kill_points_armed()) return;
  auto point = batch < 0 ? fmt::format("{}:{}", stage, epoch) : fmt::format("{}:{}:{}", stage, epoch, batch);
  if (kill_point_names_a_rank()) point += fmt::format("@{}", distributed().rank());
  llm4sbr::kill_point(point);
}

}  // namespace llm4sbr::train
