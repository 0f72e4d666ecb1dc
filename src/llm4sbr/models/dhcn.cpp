#include "llm4sbr/models/dhcn.hpp"

#include <ATen/Parallel.h>
#include <immintrin.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstddef>
#include <limits>
#include <numeric>
#include <tuple>
#include <type_traits>
#include <unordered_set>
#include <utility>

#include "llm4sbr/core/error.hpp"
#include "llm4sbr/core/prefetch.hpp"
#include "llm4sbr/models/batch.hpp"
#include "llm4sbr/models/model_settings.hpp"
#include "llm4sbr/models/readout.hpp"
#include "llm4sbr/models/segments.hpp"
#include "llm4sbr/models/init.hpp"

namespace llm4sbr::models {

namespace {

torch::Tensor int64_tensor(const std::vector<std::int64_t>& v) { return torch::tensor(v, torch::kInt64); }

/// A batch's real clicks, packed session by session in click order (the layout of rep.clicks): the
/// readout runs on these P rows instead of the batch's [B, L] padded grid, which is mostly padding.
struct PackedClicks {
  torch::Tensor rows;      ///< [P] item-table row of each click (model id − 1)
  torch::Tensor sessions;  ///< [P] batch row of each click
  torch::Tensor reversed;  ///< [P] reversed position n − 1 − t (0 = the session's last click)
  torch::Tensor last;      ///< [B] index into the clicks of each session's last click
};

/// items and mask [B, L] (left-aligned, 0 = padding), lengths [B], all on one device.
PackedClicks pack_batch(const torch::Tensor& items, const torch::Tensor& mask, const torch::Tensor& lengths) {
  PackedClicks c;
  torch::Tensor ids, t;
  std::tie(ids, c.sessions) = pack_clicks(items, mask);
  t = std::get<0>(pack_clicks(torch::arange(items.size(1), lengths.options()).expand_as(items), mask));
  c.rows = ids - 1;
  c.reversed = lengths.index_select(0, c.sessions) - 1 - t;
  c.last = lengths.cumsum(0) - 1;
  return c;
}

/// D̂⁻¹Â of the line graph over a batch's sessions, [B, B] of `dtype`: the Jaccard overlap of their item sets
/// (padding left out), with self-loops. items [B, L] on the CPU.
torch::Tensor line_graph_propagation(const torch::Tensor& items, torch::Dtype dtype) {
  const auto [distinct, inverse] = torch::_unique(items, /*sorted=*/true, /*return_inverse=*/true);
  auto incidence = torch::zeros({items.size(0), distinct.size(0)}, dtype)
                       .scatter_(1, inverse, 1.0)
                       .mul_(distinct.ne(0).to(dtype).unsqueeze(0));
  const auto overlap = incidence.mm(incidence.t());
  const auto sizes = incidence.sum(1);
  auto adjacency = overlap / (sizes.unsqueeze(1) + sizes.unsqueeze(0) - overlap);
  adjacency.fill_diagonal_(1.0);  // Â = W + I: the reference leaves W's diagonal at 0
  return adjacency / adjacency.sum(1, /*keepdim=*/true);
}

/// What a pass derives from its batch's items alone (DhcnImpl::prepare), on the model's device: the packed
/// clicks, and for the SSL loss the line graph's D̂⁻¹Â. Made on the CPU, where _unique and the boolean
/// indexing of the packing need no wait for a GPU.
struct DhcnBatch {
  PackedClicks clicks;
  torch::Tensor propagate;  ///< [B, B]; undefined when made for a pass without the SSL loss
};

/// y = A x for a fixed sparse A, with the backward pass grad_x = Aᵀ grad_y from a precomputed Aᵀ
/// (autograd's own backward for sparse @ dense transposes and re-sorts A on every call).
class SparsePropagate : public torch::autograd::Function<SparsePropagate> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const SparseRows& a,
                               const SparseRows& a_t) {
    ctx->saved_data["coo"] = a_t.coo;
    ctx->saved_data["crow"] = a_t.crow;
    ctx->saved_data["col"] = a_t.col;
    ctx->saved_data["values"] = a_t.values;
    return a.matmul(x);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    const SparseRows a_t{ctx->saved_data["coo"].toTensor(), ctx->saved_data["crow"].toTensor(),
                         ctx->saved_data["col"].toTensor(), ctx->saved_data["values"].toTensor()};
    return {a_t.matmul(grad[0]), torch::Tensor(), torch::Tensor()};
  }
};

/// y = D⁻¹ S x through the prefix chains, with the backward pass grad_x = S D⁻¹ grad_y (S is symmetric).
class ChainPropagate : public torch::autograd::Function<ChainPropagate> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const PrefixChains& chains,
                               const torch::Tensor& inverse_degrees) {
    ctx->saved_data["chain_offsets"] = chains.chain_offsets;
    ctx->saved_data["edge_weights"] = chains.edge_weights;
    ctx->saved_data["first_offsets"] = chains.first_offsets;
    ctx->saved_data["first_items"] = chains.first_items;
    ctx->saved_data["inverse_degrees"] = inverse_degrees;
    return chains.multiply(x).mul_(inverse_degrees.unsqueeze(1));
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    const PrefixChains chains{ctx->saved_data["chain_offsets"].toTensor(), ctx->saved_data["edge_weights"].toTensor(),
                              ctx->saved_data["first_offsets"].toTensor(), ctx->saved_data["first_items"].toTensor()};
    const auto inverse_degrees = ctx->saved_data["inverse_degrees"].toTensor();
    return {chains.multiply(grad[0] * inverse_degrees.unsqueeze(1)), torch::Tensor(), torch::Tensor()};
  }
};

/// The raw arrays of a PrefixChains, read by the kernels below.
template <typename T>
struct ChainArrays {
  const std::int64_t* chain;  ///< [C+1] edge offsets of the chains
  std::int64_t n_chains;
  const T* weight;            ///< [E] 1/|e|
  const std::int64_t* first;  ///< [E+1] offsets into item
  const std::int64_t* item;   ///< item rows first appearing in each edge
  std::int64_t n_entries;     ///< entries of item
};

/// The rows of x and out are scattered over tables larger than L2 (4.8 MB each on Beauty), and waiting for them
/// was most of a product: the first sweep fetches the x row kAhead items ahead of the one it adds, and the out
/// row of that item for the suffix sweep, which comes back to the chain's items while they are still cached.
/// (4 ahead beat 8 and 16; blocks of 16 columns, whose tables fit in L2 together, were slower: each block
/// walks every chain again.)
constexpr std::int64_t kAhead = 4;

/// Columns [0, w) of out = S x over every chain, x and out [N, *] with rows `ld` apart (out's columns zero on
/// entry): running sums of x over the items as they first appear give each edge's sum, scaled by 1/|e| into
/// z; suffix sums of z from the chain's end back to an item's first edge are what that item gets. `sum` holds
/// w values (each sweep's running sum), `z` w for every edge of the longest chain.
template <typename T>
inline void chain_columns(const ChainArrays<T>& c, const T* __restrict x, T* __restrict out, std::int64_t ld,
                          std::int64_t w, T* __restrict z, T* __restrict sum) {
  for (std::int64_t ch = 0; ch < c.n_chains; ++ch) {
    const std::int64_t e0 = c.chain[ch], e1 = c.chain[ch + 1];
    std::fill_n(sum, w, T(0));
    for (std::int64_t e = e0; e < e1; ++e) {  // z_e = (Σ_{j ∈ e} x_j) / |e|
      for (std::int64_t k = c.first[e]; k < c.first[e + 1]; ++k) {
        if (k + kAhead < c.n_entries) {  // the row to add soon, and the out row the suffix sweep will add to
          prefetch_row(x + c.item[k + kAhead] * ld, w);
          prefetch_row(out + c.item[k + kAhead] * ld, w);
        }
        const T* xr = x + c.item[k] * ld;
        for (std::int64_t j = 0; j < w; ++j) sum[j] += xr[j];
      }
      T* ze = z + (e - e0) * w;
      const T weight = c.weight[e];
      for (std::int64_t j = 0; j < w; ++j) ze[j] = sum[j] * weight;
    }
    std::fill_n(sum, w, T(0));
    for (std::int64_t e = e1 - 1; e >= e0; --e) {  // out_i += Σ_{e' >= e} z_e' for the items first in e
      const T* ze = z + (e - e0) * w;
      for (std::int64_t j = 0; j < w; ++j) sum[j] += ze[j];
      for (std::int64_t k = c.first[e]; k < c.first[e + 1]; ++k) {
        T* o = out + c.item[k] * ld;
        for (std::int64_t j = 0; j < w; ++j) o[j] += sum[j];
      }
    }
  }
}

/// The float32 kernel, cloned per ISA level: the loops over columns run 8 or 16 wide (4 in the default).
[[gnu::target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")]]
void chain_columns_f32(const ChainArrays<float>& c, const float* x, float* out, std::int64_t ld, std::int64_t w,
                       float* z, float* sum) {
  chain_columns<float>(c, x, out, ld, w, z, sum);
}

/// The register kernel's prefetch distance: 8 entries beat 4 (prefetch_row's loop over w, not unrolled) by 5-10 %
/// in bench/hypergraph_bench, three rounds each of 4, 6, 8 and 12; 4 with the loop unrolled was in between.
constexpr std::int64_t kAheadInRegisters = 8;

/// chain_columns for float32 and w <= 16·V columns with AVX-512: the running sums live in V registers instead of a
/// w-value buffer that each added row loads and stores, and the last 16 columns are a masked vector instead of
/// a scalar loop. The same additions in the same order, so the same values as chain_columns. z holds 16·V
/// values for every edge of the longest chain.
template <int V>
[[gnu::target("avx512f")]] void chain_columns_avx512(const ChainArrays<float>& c, const float* __restrict x,
                                                      float* __restrict out, std::int64_t ld, std::int64_t w,
                                                      float* __restrict z) {
  const auto tail = static_cast<__mmask16>(w % 16 == 0 ? 0xFFFF : (1u << (w % 16)) - 1);  // last vector's columns
  __m512 sum[V];
  for (std::int64_t ch = 0; ch < c.n_chains; ++ch) {
    const std::int64_t e0 = c.chain[ch], e1 = c.chain[ch + 1];
    for (int v = 0; v < V; ++v) sum[v] = _mm512_setzero_ps();
    for (std::int64_t e = e0; e < e1; ++e) {  // z_e = (Σ_{j ∈ e} x_j) / |e|
      for (std::int64_t k = c.first[e]; k < c.first[e + 1]; ++k) {
        if (k + kAheadInRegisters < c.n_entries) {  // 16·V values: V lines a row, a loop the compiler unrolls
          prefetch_row(x + c.item[k + kAheadInRegisters] * ld, 16 * V);
          prefetch_row(out + c.item[k + kAheadInRegisters] * ld, 16 * V);
        }
        const float* xr = x + c.item[k] * ld;
        for (int v = 0; v < V - 1; ++v) sum[v] = _mm512_add_ps(sum[v], _mm512_loadu_ps(xr + 16 * v));
        sum[V - 1] = _mm512_add_ps(sum[V - 1], _mm512_maskz_loadu_ps(tail, xr + 16 * (V - 1)));
      }
      const __m512 weight = _mm512_set1_ps(c.weight[e]);
      float* ze = z + (e - e0) * 16 * V;
      for (int v = 0; v < V; ++v) _mm512_storeu_ps(ze + 16 * v, _mm512_mul_ps(sum[v], weight));
    }
    for (int v = 0; v < V; ++v) sum[v] = _mm512_setzero_ps();
    for (std::int64_t e = e1 - 1; e >= e0; --e) {  // out_i += Σ_{e' >= e} z_e' for the items first in e
      const float* ze = z + (e - e0) * 16 * V;
      for (int v = 0; v < V; ++v) sum[v] = _mm512_add_ps(sum[v], _mm512_loadu_ps(ze + 16 * v));
      for (std::int64_t k = c.first[e]; k < c.first[e + 1]; ++k) {
        float* o = out + c.item[k] * ld;
        for (int v = 0; v < V - 1; ++v)
          _mm512_storeu_ps(o + 16 * v, _mm512_add_ps(_mm512_loadu_ps(o + 16 * v), sum[v]));
        float* last = o + 16 * (V - 1);
        _mm512_mask_storeu_ps(last, tail, _mm512_add_ps(_mm512_maskz_loadu_ps(tail, last), sum[V - 1]));
      }
    }
  }
}

/// The register kernel's vectors for w columns: 1..8 (up to 128 columns) where the CPU runs AVX-512, else 0.
int avx512_vectors(std::int64_t w) {
  static const bool avx512 = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") != 0;
  }();
  return avx512 && w >= 1 && w <= 128 ? static_cast<int>((w + 15) / 16) : 0;
}

template <typename T>
void chain_columns_any(const ChainArrays<T>& c, const T* x, T* out, std::int64_t ld, std::int64_t w, T* z, T* sum,
                       PrefixChains::Kernel kernel) {
  if constexpr (std::is_same_v<T, float>) {
    switch (kernel == PrefixChains::Kernel::automatic ? avx512_vectors(w) : 0) {
      case 1: return chain_columns_avx512<1>(c, x, out, ld, w, z);
      case 2: return chain_columns_avx512<2>(c, x, out, ld, w, z);
      case 3: return chain_columns_avx512<3>(c, x, out, ld, w, z);
      case 4: return chain_columns_avx512<4>(c, x, out, ld, w, z);
      case 5: return chain_columns_avx512<5>(c, x, out, ld, w, z);
      case 6: return chain_columns_avx512<6>(c, x, out, ld, w, z);
      case 7: return chain_columns_avx512<7>(c, x, out, ld, w, z);
      case 8: return chain_columns_avx512<8>(c, x, out, ld, w, z);
      default: return chain_columns_f32(c, x, out, ld, w, z, sum);
    }
  } else {
    chain_columns<T>(c, x, out, ld, w, z, sum);
  }
}

/// out[r] = Σ_k values[k] · x[col[k]] over row r's entries; rows in parallel, each written by one thread.
template <typename T>
void csr_rows_matmul(const std::int64_t* crow, const std::int64_t* col, const T* values, const T* x, T* out,
                     std::int64_t n_rows, std::int64_t d) {
  at::parallel_for(0, n_rows, 256, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t r = begin; r < end; ++r) {
      T* o = out + r * d;
      std::fill(o, o + d, T(0));
      for (std::int64_t k = crow[r]; k < crow[r + 1]; ++k) {
        const T v = values[k];
        const T* xr = x + col[k] * d;
        for (std::int64_t j = 0; j < d; ++j) o[j] += v * xr[j];
      }
    }
  });
}

}  // namespace

DhcnOptions DhcnOptions::from_config(const ModelContext& ctx, const Config& settings) {
  const ModelSettings keys("dhcn", settings);
  DhcnOptions o;
  o.n_items = keys.n_items(ctx);
  o.hidden_size = keys.hidden_size(ctx);
  o.layers = keys.integer("layers", o.layers, 0);
  o.beta = keys.real("beta", o.beta, 0.0, std::numeric_limits<double>::infinity());
  o.position_embedding = keys.flag("position_embedding", o.position_embedding);
  o.max_positions = keys.integer("max_positions", o.max_positions, 1);
  o.prune_below = keys.real("prune_below", o.prune_below, 0.0, 1.0);
  o.nonhybrid = keys.flag("nonhybrid", o.nonhybrid);
  keys.reject_unknown_keys();
  return o;
}

// ---------------------------------------------------------------------------------------------------

Hypergraph build_hypergraph(const std::vector<data::Sample>& samples, std::int64_t n_items, double prune_below) {
  if (n_items < 1) throw Error(fmt::format("build_hypergraph: the catalogue is empty (n_items = {})", n_items));
  using Index = std::int64_t;  // item rows are 0-based (model id - 1), edges are sample positions
  const auto n = static_cast<std::size_t>(n_items);

  // Hyperedges: the distinct items of every prefix, packed (edge e owns edge_items[edge_offsets[e] ..]).
  std::vector<std::size_t> edge_offsets = {0};
  std::vector<Index> edge_items, set;
  for (const auto& s : samples) {
    set = s.prefix;
    for (auto id : set)
      if (id < 1 || id > n_items)
        throw InputError(fmt::format("sample {}", s.id), 0, "prefix",
                         fmt::format("item id {} is outside 1..{}", id, n_items));
    std::sort(set.begin(), set.end());
    set.erase(std::unique(set.begin(), set.end()), set.end());
    for (auto id : set) edge_items.push_back(id - 1);
    edge_offsets.push_back(edge_items.size());
  }
  const std::size_t n_edges = edge_offsets.size() - 1;
  auto edge_size = [&](std::size_t e) { return edge_offsets[e + 1] - edge_offsets[e]; };

  // H by rows: the edges of item i are item_edges[item_offsets[i] ..], ascending (counting sort).
  std::vector<Index> degree(n, 0), item_edges(edge_items.size());
  std::vector<std::size_t> item_offsets(n + 1, 0);
  for (auto i : edge_items) ++degree[static_cast<std::size_t>(i)];
  for (std::size_t i = 0; i < n; ++i) item_offsets[i + 1] = item_offsets[i] + static_cast<std::size_t>(degree[i]);
  std::vector<std::size_t> next(item_offsets.begin(), item_offsets.end() - 1);
  for (std::size_t e = 0; e < n_edges; ++e)
    for (std::size_t k = edge_offsets[e]; k < edge_offsets[e + 1]; ++k)
      item_edges[next[static_cast<std::size_t>(edge_items[k])]++] = static_cast<Index>(e);

  // A = D⁻¹ H B⁻¹ Hᵀ row by row (Gustavson): acc[j] = Σ_{e ∋ i, j} 1/|e|, then divide by deg_i.
  std::vector<double> acc(n, 0.0);
  std::vector<char> seen(n, 0);
  std::vector<Index> touched, rows, cols;
  std::vector<double> values;
  for (std::size_t i = 0; i < n; ++i) {
    if (degree[i] == 0) continue;  // an item in no prefix: an empty row instead of 1/0
    for (std::size_t k = item_offsets[i]; k < item_offsets[i + 1]; ++k) {
      const auto e = static_cast<std::size_t>(item_edges[k]);
      const double w = 1.0 / static_cast<double>(edge_size(e));
      for (std::size_t m = edge_offsets[e]; m < edge_offsets[e + 1]; ++m) {
        const auto j = static_cast<std::size_t>(edge_items[m]);
        if (!seen[j]) {
          seen[j] = 1;
          touched.push_back(edge_items[m]);
        }
        acc[j] += w;
      }
    }
    std::sort(touched.begin(), touched.end());
    for (auto j : touched) {
      const auto col = static_cast<std::size_t>(j);
      const double v = acc[col] / static_cast<double>(degree[i]);
      if (v >= prune_below) {
        rows.push_back(static_cast<Index>(i));
        cols.push_back(j);
        values.push_back(v);
      }
      acc[col] = 0.0;
      seen[col] = 0;
    }
    touched.clear();
  }

  Hypergraph g;
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  std::vector<Index> h_rows(item_edges.size()), sizes(n_edges);
  for (std::size_t i = 0; i < n; ++i)
    std::fill(h_rows.begin() + static_cast<std::ptrdiff_t>(item_offsets[i]),
              h_rows.begin() + static_cast<std::ptrdiff_t>(item_offsets[i + 1]), static_cast<Index>(i));
  for (std::size_t e = 0; e < n_edges; ++e) sizes[e] = static_cast<Index>(edge_size(e));
  const auto n_cols = static_cast<std::int64_t>(n_edges);
  g.incidence =
      torch::sparse_coo_tensor(torch::stack({int64_tensor(h_rows), int64_tensor(item_edges)}),
                               torch::ones({static_cast<std::int64_t>(item_edges.size())}, f64), {n_items, n_cols})
          .coalesce();
  g.degrees = int64_tensor(degree);
  g.edge_sizes = int64_tensor(sizes);
  const auto index = torch::stack({int64_tensor(rows), int64_tensor(cols)});
  const auto vals = torch::tensor(values, f64);
  g.adjacency = torch::sparse_coo_tensor(index, vals, {n_items, n_items}).coalesce();
  g.adjacency_t = torch::sparse_coo_tensor(index.flip(0), vals, {n_items, n_items}).coalesce();
  if (prune_below <= 0) g.chains = PrefixChains::from_samples(samples);
  return g;
}

PrefixChains PrefixChains::from_samples(const std::vector<data::Sample>& samples) {
  std::vector<std::size_t> order(samples.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return std::pair(samples[a].session, samples[a].prefix.size()) < std::pair(samples[b].session, samples[b].prefix.size());
  });
  std::vector<std::int64_t> chain_offsets{0}, first_offsets{0}, first_items;
  std::vector<double> weights;
  std::unordered_set<std::int64_t> seen;  // the items of the chain so far
  const data::Sample* previous = nullptr;
  for (const auto i : order) {
    const data::Sample& s = samples[i];
    const bool extends = previous != nullptr && previous->session == s.session &&
                         std::equal(previous->prefix.begin(), previous->prefix.end(), s.prefix.begin());
    if (!extends) {
      if (previous != nullptr) chain_offsets.push_back(static_cast<std::int64_t>(weights.size()));
      seen.clear();
    }
    for (std::size_t t = extends ? previous->prefix.size() : 0; t < s.prefix.size(); ++t)
      if (seen.insert(s.prefix[t]).second) first_items.push_back(s.prefix[t] - 1);
    first_offsets.push_back(static_cast<std::int64_t>(first_items.size()));
    weights.push_back(1.0 / static_cast<double>(seen.size()));
    previous = &s;
  }
  chain_offsets.push_back(static_cast<std::int64_t>(weights.size()));
  return {int64_tensor(chain_offsets), torch::tensor(weights, torch::kFloat64), int64_tensor(first_offsets),
          int64_tensor(first_items)};
}

PrefixChains PrefixChains::to(torch::Dtype dtype) const {
  return {chain_offsets, edge_weights.to(dtype), first_offsets, first_items};
}

torch::Tensor PrefixChains::multiply(const torch::Tensor& x, Kernel kernel) const {
  const auto dense = x.contiguous();
  const std::int64_t n = x.size(0), d = x.size(1);
  auto out = torch::zeros({n, d}, x.options());
  // One contiguous column range per thread: whole rows of x are what the hardware prefetcher streams
  // best (narrow 16-column blocks made a product 1.6x slower), and each column's sums are the same
  // whichever range holds it, so the result does not depend on the number of threads.
  const std::int64_t threads = std::max<std::int64_t>(1, at::get_num_threads());
  const std::int64_t block = std::max<std::int64_t>(16, (d + threads - 1) / threads);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "dhcn_chain_multiply", [&] {
    const ChainArrays<scalar_t> c{chain_offsets.data_ptr<std::int64_t>(), chain_offsets.size(0) - 1,
                                  edge_weights.data_ptr<scalar_t>(), first_offsets.data_ptr<std::int64_t>(),
                                  first_items.data_ptr<std::int64_t>(), first_items.size(0)};
    std::int64_t longest = 1;  // edges of the longest chain: z's rows
    for (std::int64_t ch = 0; ch < c.n_chains; ++ch) longest = std::max(longest, c.chain[ch + 1] - c.chain[ch]);
    at::parallel_for(0, (d + block - 1) / block, 1, [&](std::int64_t begin, std::int64_t end) {
      // z: w values an edge, 16·V for the AVX-512 kernel (w rounded up to whole vectors).
      std::vector<scalar_t> z(static_cast<std::size_t>(longest * ((block + 15) / 16 * 16))),
          sum(static_cast<std::size_t>(block));
      for (std::int64_t b = begin; b < end; ++b) {
        const std::int64_t j0 = b * block;
        chain_columns_any(c, dense.data_ptr<scalar_t>() + j0, out.data_ptr<scalar_t>() + j0, d,
                          std::min(block, d - j0), z.data(), sum.data(), kernel);
      }
    });
  });
  return out;
}

// ---------------------------------------------------------------------------------------------------

DhcnImpl::DhcnImpl(DhcnOptions options, Hypergraph graph, std::uint64_t seed)
    : options_(options), graph_(std::move(graph)) {
  const std::int64_t d = options_.hidden_size;
  if (graph_.adjacency.size(0) != options_.n_items)
    throw Error(
        fmt::format("dhcn: the hypergraph has {} items but the model {}", graph_.adjacency.size(0), options_.n_items));
  embedding = register_module("embedding", torch::nn::Embedding(options_.n_items, d));
  pos_embedding = register_module("pos_embedding", torch::nn::Embedding(options_.max_positions, d));
  w_1 = register_module("w_1", torch::nn::Linear(2 * d, d));
  w_2 = register_parameter("w_2", torch::empty({d, 1}));
  glu1 = register_module("glu1", torch::nn::Linear(d, d));
  glu2 = register_module("glu2", torch::nn::Linear(torch::nn::LinearOptions(d, d).bias(false)));
  // Registered last (the other parameters draw the same values as without it), and in nonhybrid mode
  // too, so that both variants share one checkpoint layout.
  linear_transform = register_module("linear_transform", torch::nn::Linear(2 * d, d));
  init_uniform_reference(*this, d, seed);
}

SparseRows SparseRows::from_coo(const torch::Tensor& coo, const torch::Tensor& like) {
  SparseRows s;
  s.coo = coo.to(like.device(), like.scalar_type());
  const auto indices = s.coo._indices();
  s.col = indices[1].contiguous();
  s.values = s.coo._values().contiguous();
  s.crow = torch::zeros({coo.size(0) + 1}, indices.options());
  s.crow.narrow(0, 1, coo.size(0)).copy_(torch::bincount(indices[0], {}, coo.size(0)).cumsum(0));
  return s;
}

torch::Tensor SparseRows::matmul(const torch::Tensor& x) const {
  if (!x.is_cpu()) return torch::mm(coo, x);
  const auto dense = x.contiguous();
  auto out = torch::empty({coo.size(0), x.size(1)}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "dhcn_csr_rows_matmul", [&] {
    csr_rows_matmul<scalar_t>(crow.data_ptr<std::int64_t>(), col.data_ptr<std::int64_t>(), values.data_ptr<scalar_t>(),
                              dense.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), coo.size(0), x.size(1));
  });
  return out;
}

const std::pair<SparseRows, SparseRows>& DhcnImpl::adjacency_like(const torch::Tensor& like) {
  const auto& a = adjacency_cache_.first.coo;
  if (!a.defined() || a.scalar_type() != like.scalar_type() || a.device() != like.device())
    adjacency_cache_ = {SparseRows::from_coo(graph_.adjacency, like), SparseRows::from_coo(graph_.adjacency_t, like)};
  return adjacency_cache_;
}

torch::Tensor DhcnImpl::propagate(const torch::Tensor& x) {
  if (!graph_.chains.chain_offsets.defined() || !x.is_cpu()) {
    const auto& [a, a_t] = adjacency_like(x);
    return SparsePropagate::apply(x, a, a_t);
  }
  if (!inverse_degrees_.defined() || inverse_degrees_.scalar_type() != x.scalar_type()) {
    chains_cache_ = graph_.chains.to(x.scalar_type());
    const auto degrees = graph_.degrees.to(x.scalar_type());
    inverse_degrees_ = torch::where(degrees > 0, 1.0 / degrees, torch::zeros_like(degrees));
  }
  return ChainPropagate::apply(x, chains_cache_, inverse_degrees_);
}

torch::Tensor DhcnImpl::item_states() {
  const auto& e = embedding->weight;
  auto x = e;
  auto sum = e;
  for (std::int64_t l = 0; l < options_.layers; ++l) {
    x = propagate(x);
    sum = sum + x;
  }
  return sum / static_cast<double>(options_.layers + 1);
}

torch::Tensor DhcnImpl::states_for_encode() {
  const auto& e = embedding->weight;
  if (is_training() || torch::GradMode::is_enabled()) {
    current_states_ = item_states();
    states_key_ = {};
    return current_states_;
  }
  // Evaluation: the convolution is the same for every batch until E changes (an optimiser step or a load
  // writes it in place and bumps its version; .to() gives it new storage), so it runs once per evaluation.
  const StatesKey key{e.data_ptr(), e._version()};
  if (!current_states_.defined() || key != states_key_) {
    current_states_ = item_states();
    states_key_ = key;
  }
  return current_states_;
}

std::shared_ptr<const BatchInputs> DhcnImpl::batch_inputs(const SessionBatch& batch, const torch::Device& device,
                                                          bool line_graph) const {
  const auto items = batch.items_on_cpu();
  const auto clicks = pack_batch(items, items.ne(0), batch.lengths_on_cpu());
  DhcnBatch made{{to_device(clicks.rows, device), to_device(clicks.sessions, device), to_device(clicks.reversed, device),
                  to_device(clicks.last, device)},
                 {}};
  if (line_graph) made.propagate = to_device(line_graph_propagation(items, embedding->weight.scalar_type()), device);
  return std::make_shared<PreparedInputs<DhcnBatch>>(std::move(made));
}

std::shared_ptr<const BatchInputs> DhcnImpl::prepare(const SessionBatch& batch, const torch::Device& device) const {
  return batch_inputs(batch, device, is_training() && options_.beta > 0);
}

std::shared_ptr<const BatchInputs> DhcnImpl::inputs_of(const SessionBatch& batch, bool line_graph) const {
  if (batch.inputs && (!line_graph || prepared_as<DhcnBatch>(*batch.inputs).propagate.defined())) return batch.inputs;
  return batch_inputs(batch, embedding->weight.device(), line_graph);
}

SessionRepresentation DhcnImpl::encode(const SessionBatch& batch) {
  const auto& weight = embedding->weight;
  const auto device = weight.device();
  const auto lengths = batch.lengths.to(device);
  const std::int64_t b = lengths.size(0);
  const bool ssl = is_training() && options_.beta > 0;
  const auto inputs = inputs_of(batch, ssl);

  const auto x_h = states_for_encode();  // [N, d]
  const PackedClicks& clicks = prepared_as<DhcnBatch>(*inputs).clicks;
  const auto x = x_h.index_select(0, clicks.rows);                                                    // [P, d], x_t
  const auto mean = segment_sum(x, clicks.sessions, b) / lengths.to(weight.scalar_type()).unsqueeze(1);  // s*, [B, d]
  torch::Tensor z;
  if (options_.position_embedding) {
    // Reversed position r_t = n-1-t (the reference reverses the session).
    const auto r = clicks.reversed.clamp_max(options_.max_positions - 1);
    z = torch::tanh(w_1(torch::cat({pos_embedding(r), x}, 1)));
  } else {
    z = torch::tanh(x);  // generate_sess_emb_npos
  }
  const auto gate = torch::sigmoid(glu1(z) + glu2(mean).index_select(0, clicks.sessions));
  const auto attention = torch::matmul(gate, w_2);  // β_t, [P, 1]

  SessionRepresentation rep;
  rep.global = segment_sum(attention * x, clicks.sessions, b);  // θ_h
  rep.local = x.index_select(0, clicks.last);
  rep.clicks = x;
  rep.click_sessions = clicks.sessions;
  if (ssl) rep.aux_loss = ssl_loss(rep.global, line_graph_sessions(*inputs, lengths));
  return rep;
}

torch::Tensor DhcnImpl::line_graph_sessions(const SessionBatch& batch) {
  return line_graph_sessions(*inputs_of(batch, true), batch.lengths.to(embedding->weight.device()));
}

torch::Tensor DhcnImpl::line_graph_sessions(const BatchInputs& inputs, const torch::Tensor& lengths) {
  torch::NoGradGuard no_grad;  // the reference builds Θ⁰ through numpy: no gradient reaches this channel
  const auto& weight = embedding->weight;
  const auto& made = prepared_as<DhcnBatch>(inputs);
  // Θ⁰: mean of raw E over each session's clicks, duplicates counted.
  auto theta = segment_sum(weight.detach().index_select(0, made.clicks.rows), made.clicks.sessions, lengths.size(0)) /
               lengths.to(weight.scalar_type()).unsqueeze(1);
  auto sum = theta;
  for (std::int64_t l = 0; l < options_.layers; ++l) {
    theta = made.propagate.mm(theta);  // D̂⁻¹Â Θ
    sum = sum + theta;
  }
  return sum / static_cast<double>(options_.layers + 1);
}

torch::Tensor DhcnImpl::ssl_loss(const torch::Tensor& theta_h, const torch::Tensor& theta_l) const {
  const auto idx = torch::TensorOptions().dtype(torch::kInt64).device(theta_h.device());
  const auto corrupted = theta_h.index_select(0, torch::randperm(theta_h.size(0), idx))
                             .index_select(1, torch::randperm(theta_h.size(1), idx));
  const auto pos = (theta_h * theta_l).sum(1);
  const auto neg = (theta_l * corrupted).sum(1);
  const auto loss = (-torch::log(torch::sigmoid(pos) + 1e-8) - torch::log(1 - torch::sigmoid(neg) + 1e-8)).sum();
  return options_.beta * loss;
}

torch::Tensor DhcnImpl::readout(const SessionRepresentation& rep) {
  return hybrid_readout(linear_transform, rep, options_.nonhybrid, rep.global);
}

torch::Tensor DhcnImpl::score(const torch::Tensor& session, const SessionRepresentation& /*rep*/) {
  if (!current_states_.defined()) throw Error("dhcn: score() called before encode()");
  return torch::matmul(session, current_states_.t());
}

SessionEncoder make_dhcn(const ModelContext& ctx, const Config& settings) {
  const auto options = DhcnOptions::from_config(ctx, settings);
  if (ctx.dataset == nullptr)
    throw ConfigError("dhcn: the model needs the training data (ModelContext::dataset) to build its hypergraph");
  auto graph = build_hypergraph(ctx.dataset->train, options.n_items, options.prune_below);
  const auto isolated = graph.degrees.eq(0).sum().item<std::int64_t>();
  spdlog::info("dhcn: hypergraph of {} training prefixes, {} items ({} in no prefix), {} nonzeros in A",
               graph.edge_sizes.size(0), options.n_items, isolated, graph.adjacency._nnz());
  return std::make_shared<DhcnImpl>(options, std::move(graph), ctx.seed);
}

}  // namespace llm4sbr::models
