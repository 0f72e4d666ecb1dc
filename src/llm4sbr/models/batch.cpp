#include "llm4sbr/models/batch.hpp"

#include <algorithm>
#include <numeric>
#include <random>

#include "llm4sbr/core/error.hpp"

namespace llm4sbr::models {

SessionBatch make_batch(const std::vector<data::Sample>& samples, std::span<const std::int64_t> indices,
                                const torch::Device& device, std::int64_t pad_to) {
  const auto b = static_cast<std::int64_t>(indices.size());
  std::int64_t len = pad_to;
  for (auto i : indices) {
    const data::Sample& s = samples.at(static_cast<std::size_t>(i));
    if (s.prefix.empty())
      throw InputError("sample " + std::to_string(s.id), 0, "prefix", "empty session prefix");
    len = std::max<std::int64_t>(len, static_cast<std::int64_t>(s.prefix.size()));
  }
  auto items = torch::zeros({b, len}, torch::kInt64);
  auto lengths = torch::empty({b}, torch::kInt64);
  auto targets = torch::empty({b}, torch::kInt64);
  auto ids = torch::empty({b}, torch::kInt64);
  auto it = items.accessor<std::int64_t, 2>();
  auto lt = lengths.accessor<std::int64_t, 1>();
  auto tt = targets.accessor<std::int64_t, 1>();
  auto st = ids.accessor<std::int64_t, 1>();
  for (std::int64_t r = 0; r < b; ++r) {
    const data::Sample& s = samples[static_cast<std::size_t>(indices[static_cast<std::size_t>(r)])];
    for (std::size_t t = 0; t < s.prefix.size(); ++t) it[r][static_cast<std::int64_t>(t)] = s.prefix[t];
    lt[r] = static_cast<std::int64_t>(s.prefix.size());
    tt[r] = s.target;
    st[r] = s.id;
  }
  SessionBatch batch;
  batch.items = to_device(items, device);
  batch.lengths = to_device(lengths, device);
  batch.mask = batch.items.ne(0);
  batch.targets = to_device(targets, device);
  batch.sample_ids = to_device(ids, device);
  batch.host_items = items;
  return batch;
}

torch::Tensor to_device(const torch::Tensor& host, const torch::Device& device) {
  if (host.device() == device) return host;
  if (!device.is_cuda() || !host.device().is_cpu()) return host.to(device);
  // The pinned block is LibTorch's caching host allocator's: it is not reused before the copy has run.
  return host.pin_memory().to(device, /*non_blocking=*/true);
}

SessionBatch make_batch(const std::vector<data::Sample>& samples, const torch::Device& device) {
  std::vector<std::int64_t> all(samples.size());
  std::iota(all.begin(), all.end(), 0);
  return make_batch(samples, all, device);
}

std::vector<std::vector<std::int64_t>> batch_indices(std::int64_t n, std::int64_t batch_size, bool shuffle,
                                                     std::uint64_t seed) {
  std::vector<std::int64_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  if (shuffle) {
    std::mt19937_64 rng(seed);
    std::shuffle(order.begin(), order.end(), rng);
  }
  std::vector<std::vector<std::int64_t>> batches;
  for (std::int64_t start = 0; start < n; start += batch_size) {
    auto end = std::min(n, start + batch_size);
    batches.emplace_back(order.begin() + start, order.begin() + end);
  }
  return batches;
}

std::int64_t max_prefix_length(const std::vector<data::Sample>& samples) {
  std::size_t m = 0;
  for (const auto& s : samples) m = std::max(m, s.prefix.size());
  return static_cast<std::int64_t>(m);
}

}  // namespace llm4sbr::models
