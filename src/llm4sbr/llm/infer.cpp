#include "llm4sbr/llm/infer.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <map>

#include "llm4sbr/core/hash.hpp"
#include "llm4sbr/core/progress.hpp"

namespace llm4sbr::llm {

namespace {

struct Pending {
  std::string prompt;
  std::vector<std::pair<std::int64_t, std::string>> waiting;  // (sample, view) answered by this prompt
};

}  // namespace

InferStats run_inference(const data::PreparedDataset& ds, const std::vector<data::Sample>& samples,
                         const std::vector<std::string>& views, const text::PromptTemplate& tpl, LlmBackend& backend,
                         ResponseStore& store, std::int64_t chunk) {
  InferStats stats;
  std::vector<std::string> order;  // distinct prompt hashes in first-seen (sample) order
  std::map<std::string, Pending> pending;
  for (const auto& sample : samples) {
    for (const auto& view : views) {
      ++stats.requested;
      std::string prompt = text::build_prompt(tpl, ds, sample, view);
      const std::string hash = hash_hex(prompt);
      if (store.has(sample.id, view, hash)) {
        ++stats.already;
        continue;
      }
      if (auto same = store.find_prompt(hash)) {
        ResponseRecord r = *same;
        r.sample = sample.id;
        r.view = view;
        store.append(r);
        ++stats.reused;
        continue;
      }
      auto [it, fresh] = pending.try_emplace(hash);
      if (fresh) {
        it->second.prompt = std::move(prompt);
        order.push_back(hash);
      } else {
        ++stats.reused;
      }
      it->second.waiting.emplace_back(sample.id, view);
    }
  }
  stats.generated = static_cast<std::int64_t>(order.size());
  spdlog::info("infer: {} (sample, view) pairs: {} already answered, {} answered by an identical prompt, {} prompts to "
               "generate with {}",
               stats.requested, stats.already, stats.reused, stats.generated, backend.model_name());
  if (order.empty()) return stats;

  ProgressBar bar("infer", stats.generated, "prompts");
  std::int64_t completion_tokens = 0;
  for (std::size_t lo = 0; lo < order.size(); lo += static_cast<std::size_t>(chunk)) {
    const std::size_t hi = std::min(order.size(), lo + static_cast<std::size_t>(chunk));
    std::vector<std::string> prompts;
    for (std::size_t i = lo; i < hi; ++i) prompts.push_back(pending[order[i]].prompt);
    backend.generate(prompts, [&](std::size_t k, const Generation& g) {
      const std::string& hash = order[lo + k];
      for (const auto& [sample, view] : pending[hash].waiting)
        store.append({sample, view, hash, backend.model_name(), g.text, g.prompt_tokens, g.completion_tokens, g.seconds});
      completion_tokens += g.completion_tokens;
      bar.tick(1, fmt::format("{:.0f} gen tok/s", completion_tokens / std::max(bar.elapsed_seconds(), 1e-9)));
    });
  }
  bar.finish();
  return stats;
}

}  // namespace llm4sbr::llm
