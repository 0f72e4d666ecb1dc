#include "llm4sbr/enhance/view_gates.hpp"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "llm4sbr/core/error.hpp"
#include "llm4sbr/core/lane_sum.hpp"
#include "llm4sbr/core/runtime.hpp"

namespace llm4sbr::enhance {

namespace F = torch::nn::functional;

torch::Tensor alignment_loss(const torch::Tensor& x, const torch::Tensor& y) {
  const auto xn = F::normalize(x, F::NormalizeFuncOptions().dim(-1));
  const auto yn = F::normalize(y, F::NormalizeFuncOptions().dim(-1));
  return (xn - yn).pow(2).sum(-1).mean(-1);
}

torch::Tensor uniformity_loss(const torch::Tensor& x) {
  const auto b = x.size(-2);
  if (b < 2) return torch::zeros(x.sizes().slice(0, x.dim() - 2), x.options());
  const auto xn = F::normalize(x, F::NormalizeFuncOptions().dim(-1));
  // The pairs' squared distances ‖x̂_i‖² + ‖x̂_j‖² − 2 x̂_i·x̂_j from one [B, B] product (torch::pdist's
  // backward pass, a loop over the pairs, cost more than the product); clamped at 0 against rounding.
  const auto squares = xn.pow(2).sum(-1);
  const auto sq = (squares.unsqueeze(-1) + squares.unsqueeze(-2) - 2 * xn.matmul(xn.transpose(-1, -2))).clamp_min(0);
  const auto pairs = torch::ones({b, b}, torch::TensorOptions().dtype(torch::kBool).device(x.device())).triu(1);
  // log mean exp(-2 d²) over the pairs i < j = logsumexp(-2 d²) - log(#pairs): the same value without underflow
  // (the other entries are -inf: no weight, no gradient).
  const auto logits = (-2.0 * sq).masked_fill(pairs.logical_not(), -std::numeric_limits<double>::infinity());
  return torch::logsumexp(logits.flatten(-2), -1) - std::log(static_cast<double>(b * (b - 1) / 2));
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr double kNormEps = 1e-12;  // F::normalize's default: rows shorter than this are divided by it

// x · y in lane_sum's 16 partial sums: the node's ~1,600 sums of 100 terms a step, as single running sums, were
// most of its own time.
template <typename T>
T dot(const T* x, const T* y, std::int64_t n) {
  return lane_sum<T>(n, [&](std::int64_t k) { return x[k] * y[k]; });
}

// The batch's tensors as pointers: projected [B, V, d] (view v of session b at p(b, v)), the V anchors [B, d]
// and the V gate weights [d], all contiguous.
template <typename T>
struct Views {
  std::int64_t b, v, d;
  const T* projected;
  std::vector<const T*> anchor, gate;

  const T* p(std::int64_t row, std::int64_t view) const { return projected + (row * v + view) * d; }
  const T* a(std::int64_t row, std::int64_t view) const { return anchor[view] + row * d; }
};

template <typename T>
Views<T> views_of(const torch::Tensor& projected, at::TensorList anchors, at::TensorList weights) {
  Views<T> x{projected.size(0), projected.size(1), projected.size(2), projected.data_ptr<T>(), {}, {}};
  for (const auto& a : anchors) x.anchor.push_back(a.data_ptr<T>());
  for (const auto& q : weights) x.gate.push_back(q.data_ptr<T>());
  return x;
}

// The gates' pre-activations z = anchor + h̃_v into s [V, B, d]; σ is applied to all of them at once by ATen's
// vectorized kernel (a scalar exp per value was most of the forward pass's own time in perf).
template <typename T>
void gate_inputs(const Views<T>& x, T* s) {
  for (std::int64_t v = 0; v < x.v; ++v)
    for (std::int64_t b = 0; b < x.b; ++b) {
      const T *p = x.p(b, v), *a = x.a(b, v);
      T* sb = s + (v * x.b + b) * x.d;
      for (std::int64_t k = 0; k < x.d; ++k) sb[k] = a[k] + p[k];
    }
}

// Eq. 10-11 from s = σ(anchor + h̃_v) (kept for the backward pass): α_v = q_v · s, gated = α_v · anchor.
template <typename T>
void gates_forward(const Views<T>& x, const T* s, T* alphas, const std::vector<T*>& gated) {
  for (std::int64_t v = 0; v < x.v; ++v)
    for (std::int64_t b = 0; b < x.b; ++b) {
      const T *a = x.a(b, v), *q = x.gate[v], *sb = s + (v * x.b + b) * x.d;
      const T alpha = dot(q, sb, x.d);
      alphas[b * x.v + v] = alpha;
      T* g = gated[v] + b * x.d;
      for (std::int64_t k = 0; k < x.d; ++k) g[k] = alpha * a[k];
    }
}

// The gates' backward pass: from the gated rows' and the α's gradients (either may be absent) to h̃, the
// anchors and q (accumulated into dp [B, V, d], da V × [B, d], dq V × [d]).
template <typename T>
void gates_backward(const Views<T>& x, const T* s, const T* alphas, const std::vector<const T*>& dgated,
                    const T* dalphas, T* dp, const std::vector<T*>& da, const std::vector<T*>& dq) {
  for (std::int64_t v = 0; v < x.v; ++v)
    for (std::int64_t b = 0; b < x.b; ++b) {
      const T *a = x.a(b, v), *q = x.gate[v], *sb = s + (v * x.b + b) * x.d;
      const T* dg = dgated[v] ? dgated[v] + b * x.d : nullptr;
      T* dab = da[v] + b * x.d;
      T* dpb = dp + (b * x.v + v) * x.d;
      T dalpha = dalphas ? dalphas[b * x.v + v] : T(0);
      if (dg) {
        const T alpha = alphas[b * x.v + v];
        dalpha += dot(dg, a, x.d);
        for (std::int64_t k = 0; k < x.d; ++k) dab[k] += dg[k] * alpha;
      }
      for (std::int64_t k = 0; k < x.d; ++k) {
        const T dz = dalpha * q[k] * sb[k] * (T(1) - sb[k]);  // σ' = σ (1 − σ)
        dab[k] += dz;
        dpb[k] += dz;
        dq[v][k] += dalpha * sb[k];
      }
    }
}

// Rows x_b (b < B, `stride` apart) divided by max(‖x_b‖, eps) into u [B, d]; the norms into n [B].
template <typename T>
void normalize_rows(const T* x, std::int64_t stride, std::int64_t b_count, std::int64_t d, T* u, T* n) {
  for (std::int64_t b = 0; b < b_count; ++b) {
    const T* xb = x + b * stride;
    n[b] = std::sqrt(dot(xb, xb, d));
    const T scale = T(1) / std::max(n[b], T(kNormEps));
    for (std::int64_t k = 0; k < d; ++k) u[b * d + k] = xb[k] * scale;
  }
}

// normalize_rows' backward pass: dx_b += (g_b − u_b (u_b · g_b)) / ‖x_b‖, or g_b / eps where the norm was
// clamped (the norm then passes no gradient, as clamp_min's backward does).
template <typename T>
void normalize_backward(const T* u, const T* n, const T* g, std::int64_t b_count, std::int64_t d, T* dx,
                        std::int64_t stride) {
  for (std::int64_t b = 0; b < b_count; ++b) {
    const T *ub = u + b * d, *gb = g + b * d;
    T* dxb = dx + b * stride;
    if (n[b] < T(kNormEps)) {
      for (std::int64_t k = 0; k < d; ++k) dxb[k] += gb[k] / T(kNormEps);
      continue;
    }
    const T ug = dot(ub, gb, d);
    for (std::int64_t k = 0; k < d; ++k) dxb[k] += (gb[k] - ub[k] * ug) / n[b];
  }
}

// ‖u_i‖² + ‖u_j‖² − 2 u_i·u_j from the Gram matrix g [B, B] (may round below 0).
template <typename T>
T squared_distance(const T* g, std::int64_t b_count, std::int64_t i, std::int64_t j) {
  return g[i * b_count + i] + g[j * b_count + j] - 2 * g[i * b_count + j];
}

// The pairs' logits −2 max(d², 0) into c's upper triangle [B, B]; returns their maximum. Not inlined: inlined,
// GCC kept the running maximum in memory (it lives across the caller's calls), and the store and reload of
// each pair was a fifth of the node's forward pass.
template <typename T>
[[gnu::noinline]] T pair_logits(const T* g, std::int64_t b_count, T* c) {
  T top = -std::numeric_limits<T>::infinity();
  for (std::int64_t i = 0; i < b_count; ++i)
    for (std::int64_t j = i + 1; j < b_count; ++j) {
      const T logit = T(-2) * std::max(squared_distance(g, b_count, i, j), T(0));
      c[i * b_count + j] = logit;
      top = logit > top ? logit : top;
    }
  return top;
}

// L_u of the rows of u [B, d] (B ≥ 2), as uniformity_loss computes it: the squared distances from the Gram
// matrix, clamped at 0, and log mean exp(−2 d²) over the pairs by a max-shifted sum. The pair weights of
// the gradient go to pairs [B, B] (symmetric, zero diagonal): softmax_ij over the pairs, 0 where the clamp held.
// The B² exps are one call of ATen's vectorized exp over the whole matrix (−inf off the upper triangle gives
// 0): as scalar calls, one a pair, they were most of the node's own time.
template <typename T>
double uniformity_forward(const torch::Tensor& u, torch::Tensor& pairs) {
  const auto b_count = u.size(0);
  const auto gram = at::mm(u, u.t());
  const T* g = gram.data_ptr<T>();
  T* c = pairs.data_ptr<T>();
  const T top = pair_logits(g, b_count, c);
  for (std::int64_t i = 0; i < b_count; ++i)
    for (std::int64_t j = 0; j < b_count; ++j)
      c[i * b_count + j] = j > i ? c[i * b_count + j] - top : -std::numeric_limits<T>::infinity();
  pairs.exp_();
  double total = 0;
  for (std::int64_t i = 0; i < b_count; ++i) {
    const T* row = c + i * b_count + i + 1;  // the pairs (i, j > i)
    total += lane_sum<double>(b_count - i - 1, [&](std::int64_t k) { return static_cast<double>(row[k]); });
  }
  const auto inverse = static_cast<T>(1.0 / total);
  for (std::int64_t i = 0; i < b_count; ++i)
    for (std::int64_t j = i + 1; j < b_count; ++j)
      c[i * b_count + j] = c[j * b_count + i] =
          squared_distance(g, b_count, i, j) >= 0 ? c[i * b_count + j] * inverse : T(0);
  return static_cast<double>(top) + std::log(total) - std::log(static_cast<double>(b_count * (b_count - 1) / 2));
}

// uniformity_forward's backward pass scaled by `scale`: g_i += scale · (−4) Σ_j c_ij (u_i − u_j).
template <typename T>
void uniformity_backward(const torch::Tensor& u, const torch::Tensor& c, double scale, T* g) {
  const auto b_count = u.size(0), d = u.size(1);
  const auto cu = at::mm(c, u);  // Σ_j c_ij u_j
  const T *up = u.data_ptr<T>(), *cp = c.data_ptr<T>(), *cup = cu.data_ptr<T>();
  const T s = static_cast<T>(-4.0 * scale);
  for (std::int64_t i = 0; i < b_count; ++i) {
    const T row = lane_sum<T>(b_count, [&](std::int64_t j) { return cp[i * b_count + j]; });
    for (std::int64_t k = 0; k < d; ++k) g[i * d + k] += s * (row * up[i * d + k] - cup[i * d + k]);
  }
}

// Normalized rows, their norms and the uniformity pair weights of the 2V batches DirectAU compares: batch
// 2v is view v's h̃, batch 2v + 1 its anchor.
struct DirectAuState {
  torch::Tensor unit;    // [2V, B, d]
  torch::Tensor norms;   // [2V, B]
  torch::Tensor pairs;   // [2V, B, B]
};

// Σ_v L_a(h̃_v, anchor_v) + ½ (L_u(h̃_v) + L_u(anchor_v)), filling `state` for the backward pass.
template <typename T>
double direct_au_forward(const Views<T>& x, DirectAuState& state) {
  T *unit = state.unit.data_ptr<T>(), *norms = state.norms.data_ptr<T>();
  const auto bd = x.b * x.d;
  double total = 0;
  for (std::int64_t v = 0; v < x.v; ++v) {
    normalize_rows(x.p(0, v), x.v * x.d, x.b, x.d, unit + 2 * v * bd, norms + 2 * v * x.b);
    normalize_rows(x.a(0, v), x.d, x.b, x.d, unit + (2 * v + 1) * bd, norms + (2 * v + 1) * x.b);
    const T *u = unit + 2 * v * bd, *w = unit + (2 * v + 1) * bd;
    const double align =
        lane_sum<double>(bd, [&](std::int64_t i) { return static_cast<double>((u[i] - w[i]) * (u[i] - w[i])); });
    total += align / static_cast<double>(x.b);
    if (x.b < 2) continue;  // no pair: L_u = 0
    for (std::int64_t side = 2 * v; side <= 2 * v + 1; ++side) {
      auto side_pairs = state.pairs[side];
      total += 0.5 * uniformity_forward<T>(state.unit[side], side_pairs);
    }
  }
  return total;
}

// direct_au_forward's backward pass, scaled by `scale` (the loss's gradient times its weight).
template <typename T>
void direct_au_backward(const Views<T>& x, const DirectAuState& state, double scale, T* dp, const std::vector<T*>& da) {
  const T *unit = state.unit.data_ptr<T>(), *norms = state.norms.data_ptr<T>();
  const auto bd = x.b * x.d;
  std::vector<T> gu(bd), gw(bd);  // the gradients of the normalized rows
  for (std::int64_t v = 0; v < x.v; ++v) {
    const T *u = unit + 2 * v * bd, *w = unit + (2 * v + 1) * bd;
    const T s = static_cast<T>(2.0 * scale / static_cast<double>(x.b));
    for (std::int64_t i = 0; i < bd; ++i) {
      gu[i] = s * (u[i] - w[i]);
      gw[i] = -gu[i];
    }
    if (x.b >= 2) {
      uniformity_backward<T>(state.unit[2 * v], state.pairs[2 * v], 0.5 * scale, gu.data());
      uniformity_backward<T>(state.unit[2 * v + 1], state.pairs[2 * v + 1], 0.5 * scale, gw.data());
    }
    normalize_backward(u, norms + 2 * v * x.b, gu.data(), x.b, x.d, dp + v * x.d, x.v * x.d);
    normalize_backward(w, norms + (2 * v + 1) * x.b, gw.data(), x.b, x.d, da[v], x.d);
  }
}

template <typename T>
std::vector<T*> pointers(const std::vector<torch::Tensor>& tensors) {
  std::vector<T*> out;
  for (const auto& t : tensors) out.push_back(t.defined() ? t.data_ptr<T>() : nullptr);
  return out;
}

// Inputs: projected [B, V, d], V anchors [B, d], V gate weights (d values), the DirectAU weight. Outputs: the
// V gated [B, d], alphas [B, V] and the weighted DirectAU loss (a scalar, 0 when the weight is 0).
struct ViewGates : torch::autograd::Function<ViewGates> {
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& projected, at::TensorList anchors,
                               at::TensorList weights, double au_weight) {
    // The node's products are [B, d] x [d, B] and [B, B] x [B, d] (the Grams): on one thread, without the
    // hand-off to OpenBLAS's other thread and the wait for it (a third of the backward pass's time in perf).
    const ScopedBlasThreads one_thread(1);
    const auto b = projected.size(0), v = projected.size(1), d = projected.size(2);
    auto s = at::empty({v, b, d}, projected.options()), alphas = at::empty({b, v}, projected.options());
    std::vector<torch::Tensor> gated;
    for (std::int64_t i = 0; i < v; ++i) gated.push_back(at::empty({b, d}, projected.options()));
    auto au = at::zeros({}, projected.options());
    DirectAuState state;
    AT_DISPATCH_FLOATING_TYPES(projected.scalar_type(), "view_gates_forward", [&] {
      const auto x = views_of<scalar_t>(projected, anchors, weights);
      gate_inputs(x, s.data_ptr<scalar_t>());
      s.sigmoid_();
      gates_forward(x, s.data_ptr<scalar_t>(), alphas.data_ptr<scalar_t>(), pointers<scalar_t>(gated));
      if (au_weight > 0) {
        state = {at::empty({2 * v, b, d}, projected.options()), at::empty({2 * v, b}, projected.options()),
                 at::empty({2 * v, b, b}, projected.options())};
        au.fill_(au_weight * direct_au_forward(x, state));
      }
    });
    std::vector<torch::Tensor> saved{projected, s, alphas, state.unit, state.norms, state.pairs};
    saved.insert(saved.end(), anchors.begin(), anchors.end());
    saved.insert(saved.end(), weights.begin(), weights.end());
    ctx->save_for_backward(saved);
    ctx->saved_data["au_weight"] = au_weight;
    ctx->set_materialize_grads(false);  // an output nobody used has no gradient to loop over
    gated.push_back(alphas);
    gated.push_back(au);
    return gated;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const ScopedBlasThreads one_thread(1);  // as in forward
    const auto saved = ctx->get_saved_variables();
    const auto &projected = saved[0], &s = saved[1], &alphas = saved[2];
    const DirectAuState state{saved[3], saved[4], saved[5]};
    const auto v = projected.size(1);
    const std::vector<torch::Tensor> anchors(saved.begin() + 6, saved.begin() + 6 + v),
        weights(saved.begin() + 6 + v, saved.end());
    const double au_weight = ctx->saved_data["au_weight"].toDouble();
    std::vector<torch::Tensor> dgated(grads.begin(), grads.begin() + v), da, dq;
    for (auto& g : dgated)
      if (g.defined()) g = g.contiguous();
    const auto dalphas = grads[v].defined() ? grads[v].contiguous() : torch::Tensor();
    const auto& dau = grads[v + 1];
    auto dp = at::zeros_like(projected);
    for (const auto& a : anchors) da.push_back(at::zeros_like(a));
    // Only the gates' outputs reach q: without their gradients q gets none (not zeros), as in the composed graph.
    const bool gates_used = dalphas.defined() || std::any_of(dgated.begin(), dgated.end(), [](auto& g) { return g.defined(); });
    for (const auto& q : weights) dq.push_back(gates_used ? at::zeros_like(q) : torch::Tensor());
    AT_DISPATCH_FLOATING_TYPES(projected.scalar_type(), "view_gates_backward", [&] {
      const auto x = views_of<scalar_t>(projected, anchors, weights);
      std::vector<const scalar_t*> dg;
      for (const auto& g : dgated) dg.push_back(g.defined() ? g.data_ptr<scalar_t>() : nullptr);
      if (gates_used)
        gates_backward(x, s.data_ptr<scalar_t>(), alphas.data_ptr<scalar_t>(), dg,
                       dalphas.defined() ? dalphas.data_ptr<scalar_t>() : nullptr, dp.data_ptr<scalar_t>(),
                       pointers<scalar_t>(da), pointers<scalar_t>(dq));
      if (au_weight > 0 && dau.defined())
        direct_au_backward(x, state, dau.item<double>() * au_weight, dp.data_ptr<scalar_t>(), pointers<scalar_t>(da));
    });
    variable_list out{dp};
    out.insert(out.end(), da.begin(), da.end());
    out.insert(out.end(), dq.begin(), dq.end());
    out.emplace_back();  // au_weight
    return out;
  }
};

void check_inputs(const torch::Tensor& projected, const std::vector<torch::Tensor>& anchors,
                  const std::vector<torch::Tensor>& gate_weights, double au_weight) {
  if (projected.dim() != 3)
    throw Error(c10::str("gate_views: projected must be [B, V, d]; got ", projected.sizes()));
  const auto b = projected.size(0), v = projected.size(1), d = projected.size(2);
  if (static_cast<std::int64_t>(anchors.size()) != v || static_cast<std::int64_t>(gate_weights.size()) != v)
    throw Error(c10::str("gate_views: ", v, " views need ", v, " anchors and gate weights; got ", anchors.size(),
                         " and ", gate_weights.size()));
  for (std::int64_t i = 0; i < v; ++i) {
    const auto &a = anchors[static_cast<std::size_t>(i)], &q = gate_weights[static_cast<std::size_t>(i)];
    if (a.dim() != 2 || a.size(0) != b || a.size(1) != d || q.numel() != d)
      throw Error(c10::str("gate_views: view ", i, " needs an anchor [", b, ", ", d, "] and a gate of ", d,
                           " values; got ", a.sizes(), " and ", q.sizes()));
    if (a.scalar_type() != projected.scalar_type() || q.scalar_type() != projected.scalar_type())
      throw Error("gate_views: projected, anchors and gate weights must have one dtype");
  }
  if (!(au_weight >= 0) || !std::isfinite(au_weight))
    throw Error(c10::str("gate_views: au_weight = ", au_weight, " must be >= 0"));
}

bool written_out(const torch::Tensor& projected, const std::vector<torch::Tensor>& anchors,
                 const std::vector<torch::Tensor>& gate_weights) {
  const auto type = projected.scalar_type();
  if (type != torch::kFloat32 && type != torch::kFloat64) return false;
  auto cpu = [](const torch::Tensor& t) { return t.device().is_cpu(); };
  return cpu(projected) && std::all_of(anchors.begin(), anchors.end(), cpu) &&
         std::all_of(gate_weights.begin(), gate_weights.end(), cpu);
}

}  // namespace

GatedViews gate_views(const torch::Tensor& projected, const std::vector<torch::Tensor>& anchors,
                      const std::vector<torch::Tensor>& gate_weights, double au_weight) {
  check_inputs(projected, anchors, gate_weights, au_weight);
  if (!written_out(projected, anchors, gate_weights))
    return composed_gate_views(projected, anchors, gate_weights, au_weight);
  std::vector<torch::Tensor> a, q;
  for (const auto& t : anchors) a.push_back(t.contiguous());
  for (const auto& t : gate_weights) q.push_back(t.contiguous());
  auto out = ViewGates::apply(projected.contiguous(), at::TensorList(a), at::TensorList(q), au_weight);
  const auto v = static_cast<std::ptrdiff_t>(anchors.size());
  GatedViews result{{out.begin(), out.begin() + v}, out[static_cast<std::size_t>(v)], torch::Tensor()};
  if (au_weight > 0) result.au = out[static_cast<std::size_t>(v) + 1];
  return result;
}

GatedViews composed_gate_views(const torch::Tensor& projected, const std::vector<torch::Tensor>& anchors,
                               const std::vector<torch::Tensor>& gate_weights, double au_weight) {
  check_inputs(projected, anchors, gate_weights, au_weight);
  const auto n_views = projected.size(1);
  GatedViews out;
  std::vector<torch::Tensor> alphas;
  for (std::int64_t v = 0; v < n_views; ++v) {
    const auto& anchor = anchors[static_cast<std::size_t>(v)];
    const auto q = gate_weights[static_cast<std::size_t>(v)].reshape({-1, 1});  // [d, 1]
    const auto alpha = torch::sigmoid(anchor + projected.select(1, v)).mm(q);  // [B, 1] Eq. 10-11
    out.gated.push_back(anchor * alpha);
    alphas.push_back(alpha);
  }
  out.alphas = torch::cat(alphas, 1);
  if (au_weight > 0) {
    // Σ_v align(h̃_v, anchor_v) + ½ (unif(h̃_v) + unif(anchor_v)), every view at once ([V, B, d] stacks).
    const auto intents = projected.transpose(0, 1), anchored = torch::stack(anchors);
    const auto uniformity = uniformity_loss(torch::cat({intents, anchored}));  // [2V]
    out.au = au_weight * (alignment_loss(intents, anchored) +
                          0.5 * (uniformity.narrow(0, 0, n_views) + uniformity.narrow(0, n_views, n_views)))
                             .sum();
  }
  return out;
}

}  // namespace llm4sbr::enhance
