#include "llm4sbr/train/trainer.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <set>
#include <sstream>

#include "llm4sbr/core/atomic_file.hpp"
#include "llm4sbr/core/error.hpp"
#include "llm4sbr/core/progress.hpp"
#include "llm4sbr/models/batch.hpp"
#include "llm4sbr/train/batch_prefetcher.hpp"
#include "llm4sbr/train/checkpoint.hpp"
#include "llm4sbr/train/cross_entropy.hpp"
#include "llm4sbr/train/device.hpp"
#include "llm4sbr/train/distributed.hpp"
#include "llm4sbr/train/fused_adam.hpp"
#include "llm4sbr/train/resume.hpp"

namespace llm4sbr::train {

namespace {

void set_learning_rate(torch::optim::Adam& optimizer, double lr) {
  for (auto& group : optimizer.param_groups())
    static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
}

MetricMap metrics_from_ranks(const std::vector<std::int64_t>& ranks, const std::vector<std::int64_t>& ks,
                             bool paper_compatible) {
  RankingMetrics m(ks, paper_compatible);
  m.add_ranks(ranks);
  return m.result();
}

// The line of an epoch's log: HR, MRR and NDCG at the largest cutoff.
std::string short_metrics(const MetricMap& m, std::int64_t k) {
  auto get = [&](const std::string& name) { auto it = m.find(name); return it == m.end() ? 0.0 : it->second; };
  return fmt::format("HR@{0} {1:.2f} MRR@{0} {2:.2f} NDCG@{0} {3:.2f}", k, get(fmt::format("HR@{}", k)),
                     get(fmt::format("MRR@{}", k)), get(fmt::format("NDCG@{}", k)));
}

// The intents of the batch's samples, looked up by sample id: one gather per batch, nothing parsed.
// `intents` live on the batch's device (moved there once per fit or evaluation, not per batch).
void attach_intents(models::SessionBatch& batch, const torch::Tensor& intents) {
  if (intents.defined()) batch.intents = intents.index_select(0, batch.sample_ids);
}

// A run killed while writing (SIGKILL, power loss) leaves its temporary "NAME.tmp.PID" files: removed before
// this run writes again, unless their process is alive (a second run started into the same folder).
void remove_stale_temporaries(const std::filesystem::path& dir) {
  for (const auto& file : remove_orphaned_temporaries(dir))
    spdlog::info("removed {}, left by a run that was killed while writing it", file.string());
}

// The loss of every training step must be finite; reading it waits for the device. On the CPU that costs
// nothing and the step is checked at once. On a GPU a read per step would stall the queue of kernels, so
// the losses of kLossReadInterval steps are read together; a non-finite one still names its batch.
constexpr std::size_t kLossReadInterval = 50;

class LossLog {
 public:
  LossLog(std::string label, std::int64_t epoch, double lr, bool deferred)
      : label_(std::move(label)), epoch_(epoch), lr_(lr), deferred_(deferred) {}

  /// Records the loss of batch `b` (0-based); reads the pending ones when due. Throws Error if one is not finite.
  void add(const torch::Tensor& loss, std::size_t b, bool last) {
    pending_.push_back(loss.detach());
    if (!deferred_ || last || pending_.size() >= kLossReadInterval) read(b + 1 - pending_.size());
  }
  double sum() const { return sum_; }
  std::size_t count() const { return count_; }

 private:
  void read(std::size_t first) {
    const auto values = torch::stack(pending_).to(torch::kCPU, torch::kFloat64);
    const auto* v = values.data_ptr<double>();
    for (std::size_t i = 0; i < pending_.size(); ++i) {
      if (!std::isfinite(v[i]))
        throw Error(fmt::format("{}: the loss became {} at epoch {}, batch {} (learning rate {})", label_, v[i], epoch_,
                                first + i + 1, lr_));
      sum_ += v[i];
    }
    count_ += pending_.size();
    pending_.clear();
  }

  std::string label_;
  std::int64_t epoch_;
  double lr_;
  bool deferred_;
  std::vector<torch::Tensor> pending_;
  double sum_ = 0;
  std::size_t count_ = 0;
};

// Intents must have a row for every sample id of the split (row s = Sample::id s).
void check_intents(const torch::Tensor& intents, const std::vector<data::Sample>& samples, const std::string& split) {
  if (!intents.defined()) return;
  std::int64_t rows = 0;
  for (const auto& s : samples) rows = std::max(rows, s.id + 1);
  if (intents.dim() != 3 || intents.size(0) < rows)
    throw InputError("intents of the " + split + " split", 0, "shape",
                     fmt::format("[{}] but the split needs rows for {} samples (were the intents made for another "
                                 "preparation of the data?)",
                                 fmt::join(intents.sizes(), ", "), rows));
}

// The loss is checked before every step; the step of an epoch's last batch is checked here, before the
// epoch is evaluated (NaN scores would fail there without naming the epoch) and before anything is saved.
void check_finite_parameters(torch::nn::Module& model, const std::string& label, std::int64_t epoch,
                             std::size_t last_batch, double lr) {
  torch::NoGradGuard no_grad;
  for (const auto& p : model.named_parameters())
    if (!torch::isfinite(p.value()).all().item<bool>())
      throw Error(fmt::format("{}: parameter '{}' became non-finite at epoch {}, batch {} (learning rate {})", label,
                              p.key(), epoch, last_batch, lr));
}

}  // namespace

const torch::Tensor& SplitIntents::of(const std::string& split) const {
  if (split == "train") return train;
  if (split == "valid") return valid;
  if (split == "test") return test;
  throw ConfigError(fmt::format("unknown split '{}' (train, valid, test)", split));
}

const std::vector<SettingsSchema>& train_settings() {
  using enum SettingType;
  static const std::vector<SettingsSchema> schemas{
      {"train",
       {{"epochs", kInteger}, {"batch_size", kInteger}, {"eval_batch_size", kInteger}, {"lr", kNumber}, {"l2", kNumber},
        {"lr_step", kInteger}, {"lr_gamma", kNumber}, {"patience", kInteger}, {"select_metric", kString}, {"seed", kInteger},
        {"prefetch_batches", kInteger}}},
      {"eval", {{"ks", kIntegers}, {"paper_compatible", kBool}}}};
  return schemas;
}

TrainOptions train_options_from_config(const Config& cfg) {
  TrainOptions o;
  o.epochs = cfg.get<std::int64_t>("train.epochs", o.epochs);
  o.batch_size = cfg.get<std::int64_t>("train.batch_size", o.batch_size);
  o.eval_batch_size = cfg.get<std::int64_t>("train.eval_batch_size", o.eval_batch_size);
  o.lr = cfg.get<double>("train.lr", o.lr);
  o.l2 = cfg.get<double>("train.l2", o.l2);
  o.lr_step = cfg.get<std::int64_t>("train.lr_step", o.lr_step);
  o.lr_gamma = cfg.get<double>("train.lr_gamma", o.lr_gamma);
  o.patience = cfg.get<std::int64_t>("train.patience", o.patience);
  o.select_metric = cfg.get<std::string>("train.select_metric", o.select_metric);
  o.seed = cfg.get<std::uint64_t>("train.seed", o.seed);
  o.ks = cfg.get<std::vector<std::int64_t>>("eval.ks", o.ks);
  o.paper_compatible = cfg.get<bool>("eval.paper_compatible", o.paper_compatible);
  o.device = device_from_config(cfg);
  if (cfg.has("train.prefetch_batches")) {
    o.prefetch_batches = cfg.require<std::int64_t>("train.prefetch_batches");
    if (*o.prefetch_batches < 0) throw ConfigError(fmt::format("train.prefetch_batches = {} must be >= 0", *o.prefetch_batches));
  }
  o.resume = cfg.get<bool>("resume", o.resume);
  for (const auto& [key, value] : {std::pair{"train.epochs", o.epochs}, std::pair{"train.batch_size", o.batch_size},
                                   std::pair{"train.eval_batch_size", o.eval_batch_size}, std::pair{"train.lr_step", o.lr_step}})
    if (value < 1) throw ConfigError(fmt::format("{} = {} must be >= 1", key, value));
  if (o.ks.empty()) throw ConfigError("eval.ks must list at least one cutoff");
  std::sort(o.ks.begin(), o.ks.end());
  o.ks.erase(std::unique(o.ks.begin(), o.ks.end()), o.ks.end());
  if (o.ks.front() < 1) throw ConfigError(fmt::format("eval.ks: cutoff {} must be >= 1", o.ks.front()));
  if (!(o.lr > 0)) throw ConfigError(fmt::format("train.lr = {} must be > 0", o.lr));
  auto names = metric_names(o.ks);
  if (std::find(names.begin(), names.end(), o.select_metric) == names.end())
    throw ConfigError(fmt::format("train.select_metric '{}' is not one of {}", o.select_metric, fmt::join(names, ", ")));
  return o;
}

TrainResult TrainResult::from_json(const nlohmann::json& j) {
  TrainResult r;
  r.test = j.at("test").get<MetricMap>();
  r.test_standard = j.at("test_standard").get<MetricMap>();
  r.test_paper_compatible = j.at("test_paper_compatible").get<MetricMap>();
  r.best_on_test = j.at("best_on_test").get<MetricMap>();
  r.best_on_test_epoch = j.at("best_on_test_epoch").get<std::map<std::string, std::int64_t>>();
  r.best_epoch = j.at("best_epoch").get<std::int64_t>();
  r.selected_on_validation = j.at("selected_on_validation").get<bool>();
  for (const auto& e : j.at("epochs")) {
    EpochRecord rec;
    rec.epoch = e.at("epoch").get<std::int64_t>();
    rec.lr = e.at("lr").get<double>();
    rec.train_loss = e.at("train_loss").get<double>();
    rec.train_seconds = e.at("train_seconds").get<double>();
    rec.eval_seconds = e.at("eval_seconds").get<double>();
    rec.train_samples_per_second = e.at("train_samples_per_second").get<double>();
    rec.valid = e.at("valid").get<MetricMap>();
    rec.test = e.at("test").get<MetricMap>();
    r.epochs.push_back(std::move(rec));
  }
  return r;
}

nlohmann::json TrainResult::to_json() const {
  nlohmann::json j;
  j["test"] = test;
  j["test_standard"] = test_standard;
  j["test_paper_compatible"] = test_paper_compatible;
  j["best_on_test"] = best_on_test;
  j["best_on_test_epoch"] = best_on_test_epoch;
  j["best_epoch"] = best_epoch;
  j["selected_on_validation"] = selected_on_validation;
  j["epochs"] = nlohmann::json::array();
  for (const auto& e : epochs) {
    j["epochs"].push_back({{"epoch", e.epoch},
                           {"lr", e.lr},
                           {"train_loss", e.train_loss},
                           {"train_seconds", e.train_seconds},
                           {"eval_seconds", e.eval_seconds},
                           {"train_samples_per_second", e.train_samples_per_second},
                           {"valid", e.valid},
                           {"test", e.test}});
  }
  return j;
}

std::vector<std::vector<std::int64_t>> eval_batches(const std::vector<data::Sample>& samples, std::int64_t batch_size) {
  const std::int64_t budget = batch_size * kEvalCellsPerSample;
  std::vector<std::vector<std::int64_t>> out;
  std::vector<std::int64_t> batch;
  std::int64_t longest = 0;
  for (std::size_t i = 0; i < samples.size(); ++i) {
    const auto length = std::max<std::int64_t>(1, static_cast<std::int64_t>(samples[i].prefix.size()));
    const auto with = std::max(longest, length);
    const auto count = static_cast<std::int64_t>(batch.size()) + 1;
    if (!batch.empty() && (count > batch_size || count * with * with > budget)) {
      out.push_back(std::move(batch));
      batch.clear();
      longest = 0;
    }
    batch.push_back(static_cast<std::int64_t>(i));
    longest = std::max(longest, length);
  }
  if (!batch.empty()) out.push_back(std::move(batch));
  return out;
}

std::size_t TrainOptions::prefetch_depth() const {
  return static_cast<std::size_t>(prefetch_batches.value_or(device.is_cuda() ? 2 : 0));
}

namespace {

// samples[indices] as a batch on `device`, with what the model derives from it on the CPU (prepare).
models::SessionBatch prepared_batch(const models::RecommenderImpl& model, const std::vector<data::Sample>& samples,
                                    const std::vector<std::int64_t>& indices, const torch::Device& device) {
  auto batch = models::make_batch(samples, indices, device);
  batch.inputs = model.prepare(batch, device);
  return batch;
}

}  // namespace

std::vector<std::int64_t> rank_targets(models::RecommenderImpl& model, const std::vector<data::Sample>& samples,
                                       std::int64_t batch_size, const torch::Tensor& intents, std::size_t prefetch) {
  check_intents(intents, samples, "evaluated");
  torch::NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  const auto device = device_of(model);
  const auto device_intents = intents.defined() ? intents.to(device) : intents;
  std::vector<std::int64_t> ranks;
  ranks.reserve(samples.size());
  const auto batches = eval_batches(samples, batch_size);
  BatchPrefetcher prefetcher(batches.size(), prefetch,
                             [&](std::size_t b) { return prepared_batch(model, samples, batches[b], device); });
  for (const auto& idx : batches) {
    auto batch = prefetcher.next();
    attach_intents(batch, device_intents);
    auto out = model.forward(batch);
    torch::Tensor r;
    try {
      r = target_ranks(out.scores, batch.targets);
    } catch (const std::domain_error& e) {
      throw Error(fmt::format("{} (samples {}..{} of the split)", e.what(), idx.front(), idx.back()));
    }
    auto acc = r.accessor<std::int64_t, 1>();
    for (std::int64_t i = 0; i < acc.size(0); ++i) ranks.push_back(acc[i]);
  }
  model.train(was_training);
  return ranks;
}

MetricMap evaluate(models::RecommenderImpl& model, const std::vector<data::Sample>& samples, const TrainOptions& opt,
                   bool paper_compatible, const torch::Tensor& intents) {
  return metrics_from_ranks(rank_targets(model, samples, opt.eval_batch_size, intents, opt.prefetch_depth()), opt.ks,
                            paper_compatible);
}

namespace {

// The samples of a global batch this rank trains on: a contiguous shard (the whole batch in one process).
std::vector<std::int64_t> shard_of(const std::vector<std::int64_t>& batch, const Distributed& job) {
  if (!job.active()) return batch;
  const auto n = batch.size(), w = static_cast<std::size_t>(job.world_size()), r = static_cast<std::size_t>(job.rank());
  return {batch.begin() + static_cast<std::ptrdiff_t>(n * r / w), batch.begin() + static_cast<std::ptrdiff_t>(n * (r + 1) / w)};
}

// What the epochs of one fit share.
struct FitContext {
  models::RecommenderImpl& model;
  torch::optim::Adam& optimizer;
  const data::PreparedDataset& ds;
  const TrainOptions& opt;
  const SplitIntents& intents;  // on the device
  std::string label;
  GradientReducer* reducer;  // null in one process
};

// This rank's part of a global batch (BatchPrefetcher's Build): an empty SessionBatch for an empty shard.
models::SessionBatch train_batch(const FitContext& c, const std::vector<std::int64_t>& global_batch) {
  const auto idx = shard_of(global_batch, distributed());
  return idx.empty() ? models::SessionBatch{} : prepared_batch(c.model, c.ds.train, idx, c.opt.device);
}

// One optimizer step on global batch `b` (`global_size` samples): forward and backward on this rank's shard
// `batch`; with several ranks the loss is weighted by the shard's share of the batch and the gradients and
// losses are summed over the ranks. The loss is checked (LossLog) before the step changes anything.
void train_step(FitContext& c, models::SessionBatch batch, std::size_t global_size, std::size_t b, bool last,
                LossLog& losses) {
  clear_gradients(c.optimizer);
  torch::Tensor loss;
  if (batch.items.defined()) {
    attach_intents(batch, c.intents.train);
    auto out = c.model.forward(batch);
    loss = cross_entropy(out.scores, batch.targets - 1);
    if (out.aux_loss.defined()) loss = loss + out.aux_loss;
    if (c.reducer) loss = loss * (static_cast<double>(batch.size()) / static_cast<double>(global_size));
    loss.backward();
    densify_gradients(c.optimizer);  // before the reducer flattens them
  }
  losses.add(c.reducer ? c.reducer->reduce(loss) : loss, b, last);
  c.optimizer.step();
}

// Trains one epoch; fills rec's loss, seconds and rate. Throws Error when a loss or parameter is not finite.
void train_epoch(FitContext& c, EpochRecord& rec) {
  const auto& job = distributed();
  // Each rank draws its own dropout masks, from a seed fixed by the epoch: a resumed job draws the same ones.
  if (job.active()) torch::manual_seed(c.opt.seed + 1000003ULL * static_cast<std::uint64_t>(rec.epoch) +
                                       static_cast<std::uint64_t>(job.rank()));
  auto batches = models::batch_indices(static_cast<std::int64_t>(c.ds.train.size()), c.opt.batch_size, true,
                                       c.opt.seed + static_cast<std::uint64_t>(rec.epoch));
  ProgressBar bar(fmt::format("{} epoch {}/{}", c.label, rec.epoch, c.opt.epochs),
                  static_cast<std::int64_t>(c.ds.train.size()), "samples");
  const auto t0 = std::chrono::steady_clock::now();
  const double reduce_before = c.reducer ? c.reducer->seconds() : 0;
  LossLog losses(c.label, rec.epoch, rec.lr, c.opt.device.is_cuda());
  BatchPrefetcher prefetcher(batches.size(), c.opt.prefetch_depth(),
                             [&](std::size_t b) { return train_batch(c, batches[b]); });
  for (std::size_t b = 0; b < batches.size(); ++b) {
    kill_point("train", rec.epoch, static_cast<std::int64_t>(b + 1));
    train_step(c, prefetcher.next(), batches[b].size(), b, b + 1 == batches.size(), losses);
    bar.tick(static_cast<std::int64_t>(batches[b].size()),
             fmt::format("loss {:.4f}", losses.sum() / static_cast<double>(std::max<std::size_t>(1, losses.count()))));
  }
  check_finite_parameters(c.model, c.label, rec.epoch, batches.size(), rec.lr);
  rec.train_seconds = seconds_since(t0);
  rec.train_loss = losses.sum() / static_cast<double>(batches.size());
  rec.train_samples_per_second = static_cast<double>(c.ds.train.size()) / rec.train_seconds;
  bar.finish(fmt::format("loss {:.4f}", rec.train_loss));
  if (c.reducer) {
    const double reduce = c.reducer->seconds() - reduce_before;
    spdlog::info("{} epoch {}: all-reduce {:.1f} ms a step ({:.0f}% of the epoch), {:.2f} MB a rank a step", c.label,
                 rec.epoch, 1e3 * reduce / static_cast<double>(batches.size()), 100 * reduce / rec.train_seconds,
                 static_cast<double>(c.reducer->bytes_per_step()) / 1e6);
  }
}

// rank_targets over a training job: each rank ranks a contiguous part of the split, and the parts are summed
// into every rank (a sample's rank does not depend on the batch it is in: the same ranks as one process).
std::vector<std::int64_t> rank_targets_in_job(FitContext& c, const std::vector<data::Sample>& samples,
                                              const torch::Tensor& intents) {
  auto& job = distributed();
  if (!job.active()) return rank_targets(c.model, samples, c.opt.eval_batch_size, intents, c.opt.prefetch_depth());
  const auto n = static_cast<std::int64_t>(samples.size());
  const std::int64_t w = job.world_size(), r = job.rank();
  const auto lo = n * r / w, hi = n * (r + 1) / w;
  const std::vector<data::Sample> part(samples.begin() + lo, samples.begin() + hi);
  const auto local = part.empty() ? std::vector<std::int64_t>{}
                                   : rank_targets(c.model, part, c.opt.eval_batch_size, intents, c.opt.prefetch_depth());
  std::vector<torch::Tensor> all{torch::zeros({n}, torch::kInt64)};
  if (!local.empty()) all[0].slice(0, lo, hi).copy_(torch::tensor(local));
  job.all_reduce_sum(all);
  return {all[0].data_ptr<std::int64_t>(), all[0].data_ptr<std::int64_t>() + n};
}

// Evaluates the epoch, keeps the best one and the early-stopping counters. Every rank of a job evaluates its
// part and reaches the same decisions; rank 0 writes best.pt.
void evaluate_epoch(FitContext& c, EpochRecord rec, FitProgress& p) {
  const auto& opt = c.opt;
  TrainResult& result = p.result;
  auto t1 = std::chrono::steady_clock::now();
  kill_point("eval", rec.epoch);
  if (!c.ds.valid.empty())
    rec.valid = metrics_from_ranks(rank_targets_in_job(c, c.ds.valid, c.intents.valid), opt.ks, false);
  auto test_ranks = rank_targets_in_job(c, c.ds.test, c.intents.test);
  rec.test = metrics_from_ranks(test_ranks, opt.ks, opt.paper_compatible);
  rec.eval_seconds = seconds_since(t1);

  for (const auto& [name, value] : rec.test) {
    if (!result.best_on_test.count(name) || value > result.best_on_test[name]) {
      result.best_on_test[name] = value;
      result.best_on_test_epoch[name] = rec.epoch;
    }
  }
  const double score = result.selected_on_validation ? rec.valid.at(opt.select_metric) : 0.0;
  const bool improved = !result.selected_on_validation || score > p.best_valid;
  if (improved) {
    p.best_valid = score;
    p.bad_epochs = 0;
    result.best_epoch = rec.epoch;
    p.best_test_ranks = test_ranks;
    if (!opt.run_dir.empty() && distributed().is_main()) {
      save_checkpoint(c.model, opt.run_dir / "best.pt");
      if (opt.on_best_saved) opt.on_best_saved();
    }
  } else {
    ++p.bad_epochs;
  }
  spdlog::info("{} epoch {}: loss {:.4f}, {:.0f} samples/s, valid {} | test {}{}", c.label, rec.epoch, rec.train_loss,
               rec.train_samples_per_second, rec.valid.empty() ? "-" : short_metrics(rec.valid, opt.ks.back()),
               short_metrics(rec.test, opt.ks.back()), improved && result.selected_on_validation ? " *" : "");
  p.epoch = rec.epoch;
  result.epochs.push_back(std::move(rec));
  if (result.selected_on_validation && p.bad_epochs >= opt.patience) {
    spdlog::info("{}: no validation improvement for {} epochs, stopping after epoch {}", c.label, p.bad_epochs, p.epoch);
    p.finished = true;
  }
}

// Continues from run_dir/state.pt when it applies (rank 0 reads it and every rank loads the same bytes).
void resume_from_state(FitContext& c, FitProgress& p) {
  const auto state_path = c.opt.run_dir / "state.pt";
  auto& job = distributed();
  std::string bytes;
  if (job.is_main() && !c.opt.run_dir.empty() && c.opt.resume && std::filesystem::exists(state_path))
    bytes = read_training_state(state_path);
  bytes = job.broadcast_bytes(bytes);
  if (bytes.empty()) return;
  const auto why_not = load_training_state(state_path, bytes, c.model, c.optimizer, p, c.opt.state_key, c.opt.epochs);
  if (!why_not.empty())
    spdlog::warn("{}: {} {}: training from scratch (it will be replaced)", c.label, state_path.string(), why_not);
  else if (p.finished || p.epoch >= c.opt.epochs)  // a re-run of a finished run: say so, not "resuming"
    spdlog::info("{}: already trained ({} epoch(s){}, {}): nothing left to train", c.label, p.epoch,
                 p.epoch < c.opt.epochs ? ", stopped early" : "", state_path.string());
  else
    spdlog::info("{}: resuming from {} after epoch {}", c.label, state_path.string(), p.epoch);
}

// Every rank starts from rank 0's parameters and buffers, as torch's DistributedDataParallel does.
void broadcast_model(torch::nn::Module& model) {
  torch::NoGradGuard no_grad;
  for (auto& p : model.parameters()) distributed().broadcast(p);
  for (auto& b : model.buffers()) distributed().broadcast(b);
}

}  // namespace

TrainResult fit(models::RecommenderImpl& model, const data::PreparedDataset& ds, const TrainOptions& opt,
                const SplitIntents& intents) {
  if (ds.train.empty()) throw Error("fit: the training split is empty");
  check_intents(intents.train, ds.train, "train");
  check_intents(intents.valid, ds.valid, "valid");
  check_intents(intents.test, ds.test, "test");
  auto& job = distributed();
  FitProgress p;
  TrainResult& result = p.result;
  result.selected_on_validation = !ds.valid.empty();
  if (!result.selected_on_validation && job.is_main())
    spdlog::warn("no validation split (data.valid_fraction = 0): the last epoch is reported, and early stopping is off");

  // The model and the intents move to the device once; the optimizer's moments are made there.
  model.to(opt.device);
  const auto on_device = [&](const torch::Tensor& t) { return t.defined() ? t.to(opt.device) : t; };
  const SplitIntents device_intents{on_device(intents.train), on_device(intents.valid), on_device(intents.test)};
  FusedAdam optimizer(model.parameters(), torch::optim::AdamOptions(opt.lr).weight_decay(opt.l2));
  const bool writes = !opt.run_dir.empty() && job.is_main();
  if (writes) std::filesystem::create_directories(opt.run_dir);
  if (writes) remove_stale_temporaries(opt.run_dir);
  std::unique_ptr<GradientReducer> reducer;
  if (job.active()) reducer = std::make_unique<GradientReducer>(model.parameters());
  FitContext c{model, optimizer, ds, opt, device_intents, opt.label.empty() ? model.label() : opt.label, reducer.get()};

  job.check_same("training settings and data",
                 fmt::format("train.epochs: {}\nfingerprint of the data and settings: {}", opt.epochs, opt.state_key));
  resume_from_state(c, p);
  if (job.active()) broadcast_model(model);
  for (std::int64_t epoch = p.epoch + 1; epoch <= opt.epochs && !p.finished; ++epoch) {
    EpochRecord rec;
    rec.epoch = epoch;
    rec.lr = opt.lr * std::pow(opt.lr_gamma, static_cast<double>((epoch - 1) / opt.lr_step));
    set_learning_rate(optimizer, rec.lr);
    model.train();
    train_epoch(c, rec);
    evaluate_epoch(c, std::move(rec), p);
    if (writes) {
      save_checkpoint(model, opt.run_dir / "last.pt");
      // Last: a kill before this line redoes the epoch, which writes the same best.pt and last.pt again.
      const auto t2 = std::chrono::steady_clock::now();
      save_training_state(opt.run_dir / "state.pt", model, optimizer, p, opt.state_key);
      spdlog::debug("{}: state of epoch {} written in {:.3f} s", c.label, epoch, seconds_since(t2));
    }
  }

  result.test = metrics_from_ranks(p.best_test_ranks, opt.ks, opt.paper_compatible);
  result.test_standard = metrics_from_ranks(p.best_test_ranks, opt.ks, false);
  result.test_paper_compatible = metrics_from_ranks(p.best_test_ranks, opt.ks, true);
  if (writes && std::filesystem::exists(opt.run_dir / "best.pt")) load_checkpoint(model, opt.run_dir / "best.pt");
  return result;
}

}  // namespace llm4sbr::train
