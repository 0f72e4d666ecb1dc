#include "llm4sbr/models/session_graph.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "llm4sbr/core/error.hpp"
#include "llm4sbr/models/batch.hpp"

namespace llm4sbr::models {

namespace {

// torch::tensor copies the vector (from_blob would alias memory that dies with the builder).
torch::Tensor int_tensor(const std::vector<std::int64_t>& v) { return torch::tensor(v, torch::kInt64); }

torch::Tensor real_tensor(const std::vector<double>& v, torch::Dtype dtype) {
  return torch::tensor(v, torch::kFloat64).to(dtype);
}

// out[target] += weight * x[source] over all edges.
torch::Tensor scatter_edges(const torch::Tensor& x, const torch::Tensor& source, const torch::Tensor& target,
                            const torch::Tensor& weight) {
  const auto device = x.device();
  const auto messages = x.index_select(0, source.to(device)) * weight.to(device, x.scalar_type()).unsqueeze(1);
  return torch::zeros_like(x).index_add(0, target.to(device), messages);
}

}  // namespace

SessionGraph SessionGraph::to(const torch::Device& device) const {
  return {to_device(node_items, device),  to_device(node_offsets, device), to_device(click_nodes, device),
          to_device(click_sessions, device), to_device(last_clicks, device), to_device(edge_src, device),
          to_device(edge_dst, device),     to_device(in_weight, device),   to_device(out_weight, device)};
}

namespace {

// Session b's dense matrix with entry [row][col] = weight, over its own nodes.
torch::Tensor dense(const SessionGraph& g, std::int64_t b, const torch::Tensor& row, const torch::Tensor& col,
                    const torch::Tensor& weight) {
  const auto first = g.node_offsets[b].item<std::int64_t>();
  const auto n = g.node_offsets[b + 1].item<std::int64_t>() - first;
  auto a = torch::zeros({n, n}, weight.options());
  const auto mine = row.ge(first) & row.lt(first + n);
  a.index_put_({row.masked_select(mine) - first, col.masked_select(mine) - first}, weight.masked_select(mine));
  return a;
}

}  // namespace

SessionGraph build_session_graph(const torch::Tensor& items, torch::Dtype weight_dtype) {
  if (!items.defined() || items.dim() != 2 || items.scalar_type() != torch::kInt64 || !items.device().is_cpu())
    throw Error("build_session_graph: expected a 2-D int64 CPU tensor of item ids, got " +
                (items.defined() ? c10::str(items.toString(), " of shape ", items.sizes())
                                 : std::string("an undefined tensor")));
  if (!c10::isFloatingType(weight_dtype))
    throw Error(fmt::format("build_session_graph: weight dtype must be floating, got {}", c10::toString(weight_dtype)));

  const torch::Tensor contiguous = items.contiguous();
  const auto it = contiguous.accessor<std::int64_t, 2>();
  const std::int64_t b_size = it.size(0), len = it.size(1);

  std::vector<std::int64_t> node_items, node_offsets{0}, click_nodes, click_sessions, last_clicks;
  std::vector<std::int64_t> edge_src, edge_dst;
  std::vector<double> in_weight, out_weight;
  std::vector<std::int64_t> row, local;                      // one session's clicks and their local node index
  std::vector<std::pair<std::int64_t, std::int64_t>> edges;  // local (u, v)
  std::vector<std::int64_t> indeg, outdeg;
  for (std::int64_t b = 0; b < b_size; ++b) {
    row.clear();
    for (std::int64_t t = 0; t < len && it[b][t] != 0; ++t) {
      if (it[b][t] < 0) throw Error(fmt::format("build_session_graph: negative item id {} at row {}, position {}", it[b][t], b, t));
      row.push_back(it[b][t]);
    }
    if (row.empty()) throw Error(fmt::format("build_session_graph: row {} has no click", b));
    const auto first = static_cast<std::int64_t>(node_items.size());
    std::vector<std::int64_t> nodes = row;
    std::sort(nodes.begin(), nodes.end());
    nodes.erase(std::unique(nodes.begin(), nodes.end()), nodes.end());
    node_items.insert(node_items.end(), nodes.begin(), nodes.end());
    node_offsets.push_back(static_cast<std::int64_t>(node_items.size()));

    local.resize(row.size());
    for (std::size_t t = 0; t < row.size(); ++t) {
      local[t] = std::lower_bound(nodes.begin(), nodes.end(), row[t]) - nodes.begin();
      click_nodes.push_back(first + local[t]);
      click_sessions.push_back(b);
    }
    last_clicks.push_back(static_cast<std::int64_t>(click_nodes.size()) - 1);

    edges.clear();
    for (std::size_t t = 0; t + 1 < row.size(); ++t) edges.emplace_back(local[t], local[t + 1]);
    std::sort(edges.begin(), edges.end());  // a repeated transition counts once (binary edges)
    edges.erase(std::unique(edges.begin(), edges.end()), edges.end());
    indeg.assign(nodes.size(), 0);
    outdeg.assign(nodes.size(), 0);
    for (const auto& [u, v] : edges) ++outdeg[static_cast<std::size_t>(u)], ++indeg[static_cast<std::size_t>(v)];
    for (const auto& [u, v] : edges) {
      edge_src.push_back(first + u);
      edge_dst.push_back(first + v);
      in_weight.push_back(1.0 / static_cast<double>(indeg[static_cast<std::size_t>(v)]));
      out_weight.push_back(1.0 / static_cast<double>(outdeg[static_cast<std::size_t>(u)]));
    }
  }

  SessionGraph g;
  g.node_items = int_tensor(node_items);
  g.node_offsets = int_tensor(node_offsets);
  g.click_nodes = int_tensor(click_nodes);
  g.click_sessions = int_tensor(click_sessions);
  g.last_clicks = int_tensor(last_clicks);
  g.edge_src = int_tensor(edge_src);
  g.edge_dst = int_tensor(edge_dst);
  g.in_weight = real_tensor(in_weight, weight_dtype);
  g.out_weight = real_tensor(out_weight, weight_dtype);
  return g;
}

torch::Tensor SessionGraph::aggregate_in(const torch::Tensor& x) const {
  return scatter_edges(x, edge_src, edge_dst, in_weight);
}

torch::Tensor SessionGraph::aggregate_out(const torch::Tensor& x) const {
  return scatter_edges(x, edge_dst, edge_src, out_weight);
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// One pass over the edges u->v with weights a_in (of v's in-degree) and a_out (of u's out-degree):
// out[v, :d] += a_in · x[u, :d] and out[u, d:] += a_out · x[v, d:] (x, out [V, 2d], out zeroed). The backward
// pass is the same loop with the roles of u and v swapped (the transposed adjacencies).
template <typename T>
void aggregate_edges(const T* x, const std::int64_t* src, const std::int64_t* dst, const T* a_in, const T* a_out,
                     std::int64_t edges, std::int64_t d, bool transposed, T* out) {
  for (std::int64_t e = 0; e < edges; ++e) {
    const auto u = transposed ? dst[e] : src[e], v = transposed ? src[e] : dst[e];
    const T *x_in = x + u * 2 * d, *x_out = x + v * 2 * d + d;
    T *to_in = out + v * 2 * d, *to_out = out + u * 2 * d + d;
    for (std::int64_t k = 0; k < d; ++k) to_in[k] += a_in[e] * x_in[k];
    for (std::int64_t k = 0; k < d; ++k) to_out[k] += a_out[e] * x_out[k];
  }
}

torch::Tensor run_aggregate(const torch::Tensor& x, const torch::Tensor& src, const torch::Tensor& dst,
                            const torch::Tensor& a_in, const torch::Tensor& a_out, bool transposed) {
  auto out = at::zeros_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "aggregate_both", [&] {
    aggregate_edges(x.data_ptr<scalar_t>(), src.data_ptr<std::int64_t>(), dst.data_ptr<std::int64_t>(),
                    a_in.data_ptr<scalar_t>(), a_out.data_ptr<scalar_t>(), src.numel(), x.size(1) / 2, transposed,
                    out.data_ptr<scalar_t>());
  });
  return out;
}

struct AggregateBoth : torch::autograd::Function<AggregateBoth> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& src,
                               const torch::Tensor& dst, const torch::Tensor& a_in, const torch::Tensor& a_out) {
    ctx->save_for_backward({src, dst, a_in, a_out});
    return run_aggregate(x, src, dst, a_in, a_out, false);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    if (!grads[0].defined()) return {torch::Tensor(), {}, {}, {}, {}};
    return {run_aggregate(grads[0].contiguous(), saved[0], saved[1], saved[2], saved[3], true), {}, {}, {}, {}};
  }
};

}  // namespace

torch::Tensor SessionGraph::aggregate_both(const torch::Tensor& x) const {
  const auto nodes = node_items.size(0);
  if (x.dim() != 2 || x.size(0) != nodes || x.size(1) % 2 != 0)
    throw Error(c10::str("aggregate_both: expected x [", nodes, ", 2d] (the graph's nodes); got ", x.sizes()));
  const bool written_out = x.is_cpu() && edge_src.is_cpu() &&
                           (x.scalar_type() == torch::kFloat32 || x.scalar_type() == torch::kFloat64);
  if (!written_out) {
    const auto halves = x.chunk(2, 1);
    return torch::cat({aggregate_in(halves[0]), aggregate_out(halves[1])}, 1);
  }
  const auto type = x.scalar_type();
  return AggregateBoth::apply(x.contiguous(), edge_src.contiguous(), edge_dst.contiguous(),
                              in_weight.to(type).contiguous(), out_weight.to(type).contiguous());
}

torch::Tensor SessionGraph::dense_in(std::int64_t b) const { return dense(*this, b, edge_dst, edge_src, in_weight); }

torch::Tensor SessionGraph::dense_out(std::int64_t b) const { return dense(*this, b, edge_src, edge_dst, out_weight); }

}  // namespace llm4sbr::models
