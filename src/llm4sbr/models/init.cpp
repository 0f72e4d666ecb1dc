#include "llm4sbr/models/init.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

namespace llm4sbr::models {

void init_uniform_reference(torch::nn::Module& module, std::int64_t hidden_size, std::uint64_t seed) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(hidden_size));
  auto gen = at::detail::createCPUGenerator(seed);
  torch::NoGradGuard no_grad;
  for (auto& p : module.parameters()) {
    // Draw on the CPU in the parameter's dtype, so the values do not depend on the device.
    auto draw = torch::empty(p.sizes(), p.options().device(torch::kCPU));
    draw.uniform_(-bound, bound, gen);
    p.copy_(draw);
  }
}

}  // namespace llm4sbr::models
