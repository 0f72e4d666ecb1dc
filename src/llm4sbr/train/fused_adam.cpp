#include "llm4sbr/train/fused_adam.hpp"

#include <ATen/Parallel.h>

#include <cmath>
#include <sstream>
#include <string>
#include <type_traits>

namespace llm4sbr::train {

namespace {

// The key of a parameter in Optimizer::state(), as torch::optim::Adam makes it: the address of its TensorImpl,
// as a string in LibTorch 1.x (c10::guts::to_string, an ostream of the pointer) and as the pointer in 2.x.
template <typename Key>
Key state_key(const torch::Tensor& p) {
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream out;
    out << p.unsafeGetTensorImpl();
    return out.str();
  } else {
    return p.unsafeGetTensorImpl();
  }
}

template <typename States>
bool has_state(const States& states, const torch::Tensor& p) {
  return states.count(state_key<typename States::key_type>(p)) > 0;
}

// The AdamParamState of `p`, made with zero moments on its first step (as torch's Adam does).
template <typename States>
torch::optim::AdamParamState& state_of(States& states, const torch::Tensor& p) {
  const auto key = state_key<typename States::key_type>(p);
  auto it = states.find(key);
  if (it == states.end()) {
    auto fresh = std::make_unique<torch::optim::AdamParamState>();
    fresh->step(0);
    fresh->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
    fresh->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
    it = states.emplace(key, std::move(fresh)).first;
  }
  return static_cast<torch::optim::AdamParamState&>(*it->second);
}

// Values an update needs, in the precision torch's kernels use: float32 tensors take their scalar arguments
// as float.
struct Coefficients {
  float beta1, one_minus_beta1, beta2, one_minus_beta2, weight_decay, sqrt_bias_correction2, eps, minus_step_size;
};

// The update of values [begin, end) of one parameter, in the order torch's kernels compute it.
// The four arrays are distinct tensors (__restrict lets the compiler keep them in vector registers).
// Cloned per ISA level: in SSE2's 4 lanes its square root and two divisions a value bound it (1.6-1.9 ms of an
// SR-GNN step on Beauty); in 16 lanes the memory does (0.9-1.2 ms, 34 MB read and written). No FMA
// contraction (CMakeLists.txt), so each clone's values are the same bit for bit.
[[gnu::target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")]]
void update(float* __restrict theta, const float* __restrict grad, float* __restrict m, float* __restrict v,
            const Coefficients& c, std::int64_t begin, std::int64_t end) {
  for (std::int64_t i = begin; i < end; ++i) {
    const float g = grad[i] + c.weight_decay * theta[i];  // torch skips the term for λ = 0: + 0·θ changes nothing
    m[i] = m[i] * c.beta1 + c.one_minus_beta1 * g;
    v[i] = v[i] * c.beta2 + c.one_minus_beta2 * g * g;
    const float denom = std::sqrt(v[i]) / c.sqrt_bias_correction2 + c.eps;
    theta[i] = theta[i] + c.minus_step_size * m[i] / denom;
  }
}

}  // namespace

bool FusedAdam::fusable() const {
  for (const auto& group : param_groups()) {
    if (static_cast<const torch::optim::AdamOptions&>(group.options()).amsgrad()) return false;
    for (const auto& p : group.params()) {
      const auto& g = p.grad();
      if (!g.defined()) continue;
      if (!p.device().is_cpu() || p.scalar_type() != torch::kFloat || !p.is_contiguous() || g.is_sparse() ||
          g.scalar_type() != torch::kFloat || !g.is_contiguous())
        return false;
    }
  }
  return true;
}

torch::Tensor FusedAdam::step(LossClosure closure) {
  densify_gradients(*this);
  for (auto& group : param_groups())
    for (auto& p : group.params())
      if (!p.grad().defined() && has_state(state(), p)) p.mutable_grad() = torch::zeros_like(p);  // as zero_grad() left it
  if (!fusable()) return torch::optim::Adam::step(std::move(closure));
  torch::Tensor loss;
  if (closure) {
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  torch::NoGradGuard no_grad;
  for (auto& group : param_groups()) {
    const auto& o = static_cast<const torch::optim::AdamOptions&>(group.options());
    const double beta1 = std::get<0>(o.betas()), beta2 = std::get<1>(o.betas());
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      auto& s = state_of(state(), p);
      if (!s.exp_avg().is_contiguous()) s.exp_avg(s.exp_avg().contiguous());  // a loaded state may be strided
      if (!s.exp_avg_sq().is_contiguous()) s.exp_avg_sq(s.exp_avg_sq().contiguous());
      s.step(s.step() + 1);
      const double bias_correction1 = 1 - std::pow(beta1, static_cast<double>(s.step()));
      const double bias_correction2 = 1 - std::pow(beta2, static_cast<double>(s.step()));
      const Coefficients c{static_cast<float>(beta1),        static_cast<float>(1 - beta1),
                           static_cast<float>(beta2),        static_cast<float>(1 - beta2),
                           static_cast<float>(o.weight_decay()), static_cast<float>(std::sqrt(bias_correction2)),
                           static_cast<float>(o.eps()),      static_cast<float>(-o.lr() / bias_correction1)};
      float* theta = p.data_ptr<float>();
      const float* grad = p.grad().data_ptr<float>();
      float* m = s.exp_avg().data_ptr<float>();
      float* v = s.exp_avg_sq().data_ptr<float>();
      // 16K values a task: large enough that a thread's share is worth waking it for.
      at::parallel_for(0, p.numel(), 16384,
                       [&](std::int64_t begin, std::int64_t end) { update(theta, grad, m, v, c, begin, end); });
    }
  }
  return loss;
}

void clear_gradients(torch::optim::Optimizer& optimizer) {
  for (auto& group : optimizer.param_groups())
    for (auto& p : group.params()) p.mutable_grad() = torch::Tensor();
}

void densify_gradients(torch::optim::Optimizer& optimizer) {
  for (auto& group : optimizer.param_groups())
    for (auto& p : group.params())
      if (p.grad().defined() && p.grad().is_sparse()) p.mutable_grad() = p.grad().to_dense();
}

}  // namespace llm4sbr::train
