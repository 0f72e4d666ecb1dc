// configure_runtime: LibTorch's own warnings reach our log, not glog's stderr lines (issue 17, item 7: TAGNN and
// GCE-GNN printed "Logging before InitGoogleLogging()" with index_reduce's beta notice).
#include "llm4sbr/core/runtime.hpp"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>

TEST(Runtime, LibTorchWarningsDoNotGoThroughGlog) {
  llm4sbr::configure_runtime(1);
  ::testing::internal::CaptureStderr();
  // The operation TAGNN and GCE-GNN use; LibTorch warns once per process that it is in beta.
  auto out = torch::zeros({2, 3});
  out.index_reduce_(0, torch::tensor({0L, 0L}), torch::ones({2, 3}), "amax");
  TORCH_WARN("a warning of the run");
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(err.find("InitGoogleLogging"), std::string::npos) << err;
  EXPECT_EQ(err.find("a warning of the run"), std::string::npos) << "glog printed it: " << err;
  EXPECT_TRUE(torch::equal(out, torch::ones({2, 3}) * torch::tensor({1.0f, 0.0f}).unsqueeze(1)));
}
