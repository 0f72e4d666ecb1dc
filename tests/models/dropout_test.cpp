// fast_bernoulli_ and fast_dropout against LibTorch's own from the same seed: the same values, the same gradient, and the
// generator left in the same state (the draws after agree too).
#include "llm4sbr/models/dropout.hpp"

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <ATen/Context.h>

#include <cstdint>

namespace llm4sbr::models {
namespace {

namespace F = torch::nn::functional;

// Debian's LibTorch (no MKL) has the kernel fast_bernoulli_ replicates: it must not fall back to ATen there
// (a replica that drew otherwise would, and the equalities below could not tell).
TEST(Dropout, ReplicatesThisLibTorchsKernel) {
  if (at::hasMKL()) GTEST_SKIP() << "LibTorch with MKL draws Bernoulli values by MKL's generator";
  EXPECT_TRUE(fast_bernoulli_replicates_libtorch());
}

// Sizes inside one 624-word block of the twister, across one and across several (each value takes 2 words).
TEST(Dropout, BernoulliDrawsWhatLibTorchDraws) {
  for (const auto dtype : {torch::kFloat32, torch::kFloat64})
    for (const double p : {0.0, 0.3, 0.5, 0.9, 1.0})
      for (const std::int64_t n : {0, 1, 311, 312, 313, 5000}) {
        torch::manual_seed(42);
        const auto before = torch::empty({3}).bernoulli_(0.5);  // the generator mid-block
        const auto theirs = torch::empty({n}, dtype).bernoulli_(p);
        const auto after = torch::rand({9});
        torch::manual_seed(42);
        EXPECT_TRUE(torch::equal(torch::empty({3}).bernoulli_(0.5), before));
        auto ours = torch::empty({n}, dtype);
        fast_bernoulli_(ours, p);
        EXPECT_TRUE(torch::equal(ours, theirs)) << "p " << p << ", n " << n;
        EXPECT_TRUE(torch::equal(torch::rand({9}), after)) << "generator state after p " << p << ", n " << n;
      }
}

TEST(Dropout, BernoulliOfOtherTensorsIsLibTorchs) {
  torch::manual_seed(1);
  const auto theirs = torch::empty({40, 30}).t().bernoulli_(0.4);  // not contiguous
  const auto integers = torch::empty({100}, torch::kInt64).bernoulli_(0.4);
  torch::manual_seed(1);
  auto ours = torch::empty({40, 30}).t();
  EXPECT_TRUE(torch::equal(fast_bernoulli_(ours, 0.4), theirs));
  auto ours_integers = torch::empty({100}, torch::kInt64);
  EXPECT_TRUE(torch::equal(fast_bernoulli_(ours_integers, 0.4), integers));
  auto t = torch::empty({4});
  EXPECT_THROW(fast_bernoulli_(t, 1.5), c10::Error);
}

TEST(Dropout, EqualsFDropoutValuesAndGradient) {
  for (const double p : {0.0, 0.25, 0.5, 1.0})
    for (const bool training : {true, false}) {
      const auto x = torch::randn({37, 50});
      auto x1 = x.clone().requires_grad_(), x2 = x.clone().requires_grad_();
      torch::manual_seed(9);
      const auto theirs = F::dropout(x1, F::DropoutFuncOptions().p(p).training(training));
      torch::manual_seed(9);
      const auto ours = fast_dropout(x2, p, training);
      EXPECT_TRUE(torch::equal(ours, theirs)) << "p " << p << ", training " << training;
      const auto weights = torch::randn({37, 50});
      (theirs * weights).sum().backward();
      (ours * weights).sum().backward();
      EXPECT_TRUE(torch::equal(x2.grad(), x1.grad())) << "p " << p << ", training " << training;
    }
  const auto columns = torch::randn({20, 30}).t();  // a transposed input: the mask is drawn in its logical order
  torch::manual_seed(4);
  const auto theirs = F::dropout(columns, F::DropoutFuncOptions().p(0.5).training(true));
  torch::manual_seed(4);
  EXPECT_TRUE(torch::equal(fast_dropout(columns, 0.5, true), theirs));
}

}  // namespace
}  // namespace llm4sbr::models
