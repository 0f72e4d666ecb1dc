#include "llm4sbr/models/session_graph.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "llm4sbr/core/error.hpp"

namespace llm4sbr::models {

namespace {

/// The distinct items of every row, in ascending order, stored back to back.
struct RowNodes {
  std::vector<std::int64_t> ids;     ///< node item ids, row after row
  std::vector<std::int64_t> offset;  ///< row b owns ids[offset[b], offset[b+1])
  std::int64_t max_count = 0;
};

RowNodes distinct_items(const torch::TensorAccessor<std::int64_t, 2>& items) {
  const std::int64_t b_size = items.size(0), len = items.size(1);
  RowNodes rows;
  rows.ids.reserve(static_cast<std::size_t>(b_size * len));
  rows.offset.reserve(static_cast<std::size_t>(b_size + 1));
  rows.offset.push_back(0);
  std::vector<std::int64_t> row(static_cast<std::size_t>(len));
  for (std::int64_t b = 0; b < b_size; ++b) {
    for (std::int64_t t = 0; t < len; ++t) {
      const std::int64_t item = items[b][t];
      if (item < 0)
        throw Error(fmt::format("build_session_graph: negative item id {} at row {}, position {}", item, b, t));
      row[static_cast<std::size_t>(t)] = item;
    }
    // Like np.unique over the padded row: item 0 is a node (node 0) whenever the row has padding.
    std::sort(row.begin(), row.end());
    const auto end = std::unique(row.begin(), row.end());
    rows.ids.insert(rows.ids.end(), row.begin(), end);
    rows.offset.push_back(static_cast<std::int64_t>(rows.ids.size()));
    rows.max_count = std::max(rows.max_count, static_cast<std::int64_t>(end - row.begin()));
  }
  return rows;
}

/// Fills the normalised adjacency of every row from its binary edges.
template <typename scalar_t>
void fill_adjacency(const torch::TensorAccessor<std::int64_t, 2>& items,
                    const torch::TensorAccessor<std::int64_t, 2>& alias, torch::Tensor& a_in,
                    torch::Tensor& a_out) {
  const std::int64_t b_size = items.size(0), len = items.size(1), n = a_in.size(1);
  auto in = a_in.accessor<scalar_t, 3>();
  auto out = a_out.accessor<scalar_t, 3>();
  std::vector<std::pair<std::int64_t, std::int64_t>> edges;
  std::vector<std::int64_t> indeg(static_cast<std::size_t>(n)), outdeg(static_cast<std::size_t>(n));
  for (std::int64_t b = 0; b < b_size; ++b) {
    edges.clear();
    std::fill(indeg.begin(), indeg.end(), 0);
    std::fill(outdeg.begin(), outdeg.end(), 0);
    // out[b] first records which edges exist (1), so that a repeated transition counts once.
    for (std::int64_t t = 0; t + 1 < len; ++t) {
      if (items[b][t] == 0 || items[b][t + 1] == 0) break;
      const std::int64_t u = alias[b][t], v = alias[b][t + 1];
      if (out[b][u][v] != scalar_t(0)) continue;
      out[b][u][v] = scalar_t(1);
      edges.emplace_back(u, v);
      ++outdeg[static_cast<std::size_t>(u)];
      ++indeg[static_cast<std::size_t>(v)];
    }
    // Every recorded edge has degree >= 1 at both ends, so no division by zero (nodes without edges
    // keep all-zero rows, which is what "zero degree treated as 1" gives).
    for (const auto& [u, v] : edges) {
      in[b][v][u] = scalar_t(1.0 / static_cast<double>(indeg[static_cast<std::size_t>(v)]));
      out[b][u][v] = scalar_t(1.0 / static_cast<double>(outdeg[static_cast<std::size_t>(u)]));
    }
  }
}

}  // namespace

SessionGraph build_session_graph(const torch::Tensor& items, torch::Dtype adjacency_dtype) {
  if (!items.defined() || items.dim() != 2 || items.scalar_type() != torch::kInt64 || !items.device().is_cpu())
    throw Error("build_session_graph: expected a 2-D int64 CPU tensor of item ids, got " +
                (items.defined() ? c10::str(items.toString(), " of shape ", items.sizes())
                                 : std::string("an undefined tensor")));
  if (!c10::isFloatingType(adjacency_dtype))
    throw Error(fmt::format("build_session_graph: adjacency dtype must be floating, got {}",
                            c10::toString(adjacency_dtype)));

  const torch::Tensor contiguous = items.contiguous();
  const auto it = contiguous.accessor<std::int64_t, 2>();
  const std::int64_t b_size = it.size(0), len = it.size(1);
  const RowNodes rows = distinct_items(it);
  const std::int64_t n = rows.max_count;

  SessionGraph g;
  g.nodes = torch::zeros({b_size, n}, torch::kInt64);
  g.alias = torch::empty({b_size, len}, torch::kInt64);
  auto nodes = g.nodes.accessor<std::int64_t, 2>();
  auto alias = g.alias.accessor<std::int64_t, 2>();
  for (std::int64_t b = 0; b < b_size; ++b) {
    const auto first = rows.ids.begin() + rows.offset[static_cast<std::size_t>(b)];
    const auto last = rows.ids.begin() + rows.offset[static_cast<std::size_t>(b) + 1];
    for (auto p = first; p != last; ++p) nodes[b][p - first] = *p;
    for (std::int64_t t = 0; t < len; ++t) alias[b][t] = std::lower_bound(first, last, it[b][t]) - first;
  }

  const auto options = torch::TensorOptions().dtype(adjacency_dtype);
  g.A_in = torch::zeros({b_size, n, n}, options);
  g.A_out = torch::zeros({b_size, n, n}, options);
  AT_DISPATCH_FLOATING_TYPES_AND2(torch::kHalf, torch::kBFloat16, adjacency_dtype, "build_session_graph",
                                  [&] { fill_adjacency<scalar_t>(it, alias, g.A_in, g.A_out); });
  return g;
}

}  // namespace llm4sbr::models
