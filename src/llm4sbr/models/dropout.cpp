#include "llm4sbr/models/dropout.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/MT19937RNGEngine.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <mutex>

namespace llm4sbr::models {

namespace {

constexpr std::int64_t kStateWords = 624, kShift = 397;  // MT19937's n and m
constexpr std::int64_t kChunk = 256;                     // values decided per block of tempered words

// The helpers below are always inlined: a function called from the target_clones wrappers further down is
// otherwise compiled once, for the default ISA, and the clones only jump to it (perf showed draw<float> as SSE2
// code with a mispredicted branch per value).

// The Mersenne Twister's state transition (at::mt19937_engine::next_state, written as two vectorizable loops).
[[gnu::always_inline]] inline void next_state(std::uint32_t* s) {
  auto twist = [](std::uint32_t u, std::uint32_t v) {
    return (((u & 0x80000000u) | (v & 0x7fffffffu)) >> 1) ^ ((v & 1u) ? 0x9908b0dfu : 0u);
  };
  std::int64_t j = 0;
  for (; j < kStateWords - kShift; ++j) s[j] = s[j + kShift] ^ twist(s[j], s[j + 1]);
  for (; j < kStateWords - 1; ++j) s[j] = s[j + kShift - kStateWords] ^ twist(s[j], s[j + 1]);
  s[kStateWords - 1] = s[kShift - 1] ^ twist(s[kStateWords - 1], s[0]);
}

[[gnu::always_inline]] inline std::uint32_t temper(std::uint32_t y) {
  y ^= y >> 11;
  y ^= (y << 7) & 0x9d2c5680u;
  y ^= (y << 15) & 0xefc60000u;
  return y ^ (y >> 18);
}

// n values from the engine state `pod`, advanced as n · 2 calls of at::mt19937_engine::operator() would. ATen's
// value: bernoulli_distribution<double> — uniform_real_distribution<double> over random64() = (word₁ << 32) |
// word₂, masked to 53 bits and scaled by 2⁻⁵³, compared with p — that is, the 53-bit integer v < p · 2⁵³, i.e.
// v < ceil(p · 2⁵³).
template <typename T>
[[gnu::always_inline]] inline void draw(at::mt19937_data_pod& pod, std::uint64_t threshold, T* out, std::int64_t n) {
  std::uint32_t words[2 * kChunk];
  std::int64_t left = pod.left_, next = pod.next_;  // the engine's own counters: words left = left − 1
  std::uint32_t* state = pod.state_.data();
  for (std::int64_t i = 0; i < n; i += kChunk) {
    const auto chunk = std::min(kChunk, n - i);
    for (std::int64_t got = 0; got < 2 * chunk;) {
      if (left == 1) {  // the engine's next call would regenerate its state first
        next_state(state);
        left = kStateWords + 1;
        next = 0;
      }
      const auto take = std::min(2 * chunk - got, left - 1);
      for (std::int64_t k = 0; k < take; ++k) words[got + k] = temper(state[next + k]);
      next += take, left -= take, got += take;
    }
    for (std::int64_t k = 0; k < chunk; ++k) {
      const auto v = (static_cast<std::uint64_t>(words[2 * k] & 0x1fffffu) << 32) | words[2 * k + 1];
      out[i + k] = static_cast<T>(v < threshold);  // a compare and a convert, no branch: vectorizes
    }
  }
  pod.left_ = static_cast<int>(left);
  pod.next_ = static_cast<std::uint32_t>(next);
}

[[gnu::target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")]]
void draw_values(at::mt19937_data_pod& pod, std::uint64_t threshold, float* out, std::int64_t n) {
  draw(pod, threshold, out, n);
}

[[gnu::target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")]]
void draw_values(at::mt19937_data_pod& pod, std::uint64_t threshold, double* out, std::int64_t n) {
  draw(pod, threshold, out, n);
}

// The replica on a given generator; t contiguous float32/float64 on the CPU, 0 <= p <= 1.
void replica_bernoulli_(torch::Tensor& t, double p, at::CPUGeneratorImpl* generator) {
  const double scaled = std::ldexp(p, 53);  // exact: a power of two
  const auto threshold = static_cast<std::uint64_t>(std::ceil(scaled));
  std::lock_guard<std::mutex> lock(generator->mutex_);
  auto engine = generator->engine();
  auto pod = engine.data();
  if (t.scalar_type() == torch::kFloat32) draw_values(pod, threshold, t.data_ptr<float>(), t.numel());
  else draw_values(pod, threshold, t.data_ptr<double>(), t.numel());
  engine.set_data(pod);
  generator->set_engine(engine);
}

// Whether this LibTorch's bernoulli_ is the kernel replicated: the same values from one seed, for sizes that
// end inside and across the twister's 624-word blocks, and the same state after (the next draw agrees).
bool replica_is_exact() {
  for (const std::int64_t n : {1, 311, 313, 1000}) {
    auto ours = at::make_generator<at::CPUGeneratorImpl>(20261206);
    auto theirs = at::make_generator<at::CPUGeneratorImpl>(20261206);
    auto a = torch::empty({n}), b = torch::empty({n}).bernoulli_(0.3, theirs);
    replica_bernoulli_(a, 0.3, at::check_generator<at::CPUGeneratorImpl>(ours));
    if (!torch::equal(a, b)) return false;
    if (!torch::equal(torch::empty({7}).bernoulli_(0.5, ours), torch::empty({7}).bernoulli_(0.5, theirs))) return false;
  }
  return true;
}

}  // namespace

bool fast_bernoulli_replicates_libtorch() {
  static const bool exact = replica_is_exact();
  return exact;
}

torch::Tensor& fast_bernoulli_(torch::Tensor& t, double p) {
  const bool replicated = fast_bernoulli_replicates_libtorch() && t.device().is_cpu() && t.is_contiguous() &&
                          (t.scalar_type() == torch::kFloat32 || t.scalar_type() == torch::kFloat64);
  if (!replicated || !(p >= 0 && p <= 1)) return t.bernoulli_(p);  // ATen's own kernel, or its error
  replica_bernoulli_(t, p, at::check_generator<at::CPUGeneratorImpl>(at::detail::getDefaultCPUGenerator()));
  return t;
}

torch::Tensor fast_dropout(const torch::Tensor& x, double p, bool training) {
  namespace F = torch::nn::functional;
  if (!x.device().is_cpu()) return F::dropout(x, F::DropoutFuncOptions().p(p).training(training));
  TORCH_CHECK(p >= 0 && p <= 1, "dropout probability has to be between 0 and 1, but got ", p);
  if (p == 0 || !training || x.numel() == 0) return x;
  if (p == 1) return x * torch::zeros({}, x.options());
  return x * dropout_noise(x.sizes(), p, x.options());
}

torch::Tensor dropout_noise(torch::IntArrayRef sizes, double p, const torch::TensorOptions& options) {
  auto noise = torch::empty(sizes, options);
  fast_bernoulli_(noise, 1 - p);
  return noise.div_(1 - p);
}

}  // namespace llm4sbr::models
