#include "llm4sbr/llm/infer.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <map>
#include <unordered_set>

#include "llm4sbr/core/error.hpp"
#include "llm4sbr/core/progress.hpp"

namespace llm4sbr::llm {

namespace {

struct Waiting {
  ResponseStore* store;
  std::int64_t sample;
  std::string view;
};

struct Pending {
  std::string prompt;
  std::vector<Waiting> waiting;  // the (sample, view) pairs this prompt answers
};

// Answers of two models in one file would be mixed into one set of intents without a trace.
void check_answered_by(const ResponseStore& store, const std::string& model) {
  for (const auto& [key, r] : store.records())
    if (!r.model.empty() && r.model != model)
      throw InputError(store.file().string(), 0, "model",
                       fmt::format("holds answers from '{}' (sample {}, view {}), but this run uses '{}'; use another "
                                   "output folder for another model, or delete the file",
                                   r.model, key.first, key.second, model));
}

// A file that a run of another --shard split wrote holds answers outside this shard: resumed into, it would
// end up with prompts that another shard answers too (merge then refuses them) or that none does.
void check_in_shard(const ResponseStore& store, const Shard& shard) {
  if (shard.count <= 1) return;
  for (const auto& [key, r] : store.records())
    if (!shard.holds(r.prompt_hash))
      throw InputError(store.file().string(), 0, "prompt_hash",
                       fmt::format("holds the answer of sample {}, view {}, whose prompt is not in shard {}/{}: the "
                                   "folder was written with another --shard; use one output folder per shard",
                                   key.first, key.second, shard.index, shard.count));
}

}  // namespace

InferStats run_inference(const data::PreparedDataset& ds, const std::vector<InferTask>& tasks,
                         const std::vector<std::string>& views, const text::PromptTemplate& tpl, LlmBackend& backend,
                         const InferOptions& options) {
  InferStats stats;
  std::vector<std::string> order;  // distinct prompt hashes in first-seen (task, sample) order
  std::map<std::string, Pending> pending;
  for (const auto& task : tasks) {
    check_answered_by(*task.store, backend.model_name());
    check_in_shard(*task.store, options.shard);
  }
  for (const auto& task : tasks) {
    ResponseStore& store = *task.store;
    for_each_prompt(ds, task.samples, views, tpl, [&](PromptKey&& key) {
      if (!options.shard.holds(key.hash)) {
        ++stats.other_shards;
        return;
      }
      ++stats.requested;
      if (store.has(key.sample, key.view, key.hash)) {
        ++stats.already;
        return;
      }
      if (auto same = store.find_prompt(key.hash)) {
        ResponseRecord r = *same;
        r.sample = key.sample;
        r.view = key.view;
        store.append(r);
        ++stats.reused;
        return;
      }
      auto [it, fresh] = pending.try_emplace(key.hash);
      if (fresh) {
        it->second.prompt = std::move(key.prompt);
        order.push_back(key.hash);
      } else {
        ++stats.reused;
      }
      it->second.waiting.push_back({&store, key.sample, key.view});
    });
  }
  stats.generated = static_cast<std::int64_t>(order.size());
  spdlog::info("infer: {} (sample, view) pairs{}: {} already answered, {} answered by an identical prompt, {} prompts to "
               "generate with {}",
               stats.requested,
               options.shard.count > 1 ? fmt::format(" in shard {}/{} ({} left to the other shards)", options.shard.index,
                                                     options.shard.count, stats.other_shards)
                                       : "",
               stats.already, stats.reused, stats.generated, backend.model_name());
  if (order.empty()) return stats;

  ProgressBar bar("infer", stats.generated, "prompts");
  std::int64_t prompt_tokens = 0, completion_tokens = 0;
  auto token_rates = [&] {
    const double secs = std::max(bar.elapsed_seconds(), 1e-9);
    return fmt::format("{:.0f} prompt tok/s, {:.0f} gen tok/s", prompt_tokens / secs, completion_tokens / secs);
  };
  for (std::size_t lo = 0; lo < order.size(); lo += static_cast<std::size_t>(options.chunk)) {
    const std::size_t hi = std::min(order.size(), lo + static_cast<std::size_t>(options.chunk));
    std::vector<std::string> prompts;
    for (std::size_t i = lo; i < hi; ++i) prompts.push_back(pending[order[i]].prompt);
    backend.generate(prompts, [&](std::size_t k, const Generation& g) {
      const std::string& hash = order[lo + k];
      for (const auto& w : pending[hash].waiting)
        w.store->append({w.sample, w.view, hash, backend.model_name(), g.text, g.prompt_tokens, g.completion_tokens, g.seconds});
      prompt_tokens += g.prompt_tokens;
      completion_tokens += g.completion_tokens;
      bar.tick(1, token_rates());
    });
  }
  bar.finish(token_rates());
  backend.log_summary();
  return stats;
}

PrefillCount count_prefill(const data::PreparedDataset& ds, const std::vector<std::vector<data::Sample>>& splits,
                           const std::vector<std::string>& views, const text::PromptTemplate& tpl,
                           const LlamaBackend& backend, const InferOptions& options) {
  std::vector<std::string> prompts;  // distinct, in first-seen (split, sample) order as run_inference sends them
  std::unordered_set<std::string> seen;
  for (const auto& samples : splits)
    for_each_prompt(ds, samples, views, tpl, [&](PromptKey&& key) {
      if (options.shard.holds(key.hash) && seen.insert(key.hash).second) prompts.push_back(std::move(key.prompt));
    });
  PrefillCount total;
  ProgressBar bar("count prefill", static_cast<std::int64_t>(prompts.size()), "prompts");
  const auto chunk = static_cast<std::size_t>(std::max<std::int64_t>(options.chunk, 1));
  for (std::size_t lo = 0; lo < prompts.size(); lo += chunk) {
    const auto hi = std::min(prompts.size(), lo + chunk);
    total += backend.count_prefill({prompts.begin() + static_cast<std::ptrdiff_t>(lo),
                                    prompts.begin() + static_cast<std::ptrdiff_t>(hi)});
    bar.tick(static_cast<std::int64_t>(hi - lo));
  }
  bar.finish();
  return total;
}

}  // namespace llm4sbr::llm
