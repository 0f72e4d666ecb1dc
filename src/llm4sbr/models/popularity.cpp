#include "llm4sbr/models/popularity.hpp"

#include <unordered_set>

namespace llm4sbr::models {

PopularityRecommenderImpl::PopularityRecommenderImpl(const data::PreparedDataset& ds) {
  counts_ = torch::zeros({ds.n_items()}, torch::kFloat32);
  auto c = counts_.accessor<float, 1>();
  // Count each training session once (not once per augmented prefix).
  std::unordered_set<std::int64_t> seen;
  for (const auto& s : ds.train) {
    if (!seen.insert(s.session).second) continue;
    for (auto item : ds.sessions.at(static_cast<std::size_t>(s.session)).items) c[item - 1] += 1;
  }
  counts_ = register_buffer("counts", counts_);
}

ForwardOutput PopularityRecommenderImpl::forward(const SessionBatch& batch) {
  return {counts_.unsqueeze(0).expand({batch.size(), counts_.size(0)}), {}};
}

}  // namespace llm4sbr::models
