#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include "llm4sbr/core/runtime.hpp"

int main(int argc, char** argv) {
  // First, before anything loads OpenBLAS's kernels: may re-execute the binary with AVX-512 kernels
  // selected (the TAGNN end-to-end test runs 2.7x faster).
  llm4sbr::ensure_fast_blas(argv);
#ifdef LLM4SBR_CONFIGURE_RUNTIME
  // As every command of the CLI does (the GPU test set): LibTorch's threads beside a pthread OpenBLAS.
  llm4sbr::configure_runtime();
#endif
  ::testing::InitGoogleTest(&argc, argv);
  spdlog::set_level(spdlog::level::warn);
  return RUN_ALL_TESTS();
}
