#include <csignal>
#include <cstdio>
#include <cstdlib>

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
  const int rc = RUN_ALL_TESTS();
  // gtest prints "[  SKIPPED ]" for each test of a suite whose SetUpTestSuite failed, and ctest (the pattern
  // gtest_discover_tests sets) counts any output with that line as a skip, whatever the exit status: a
  // failed set-up would pass CI as skipped tests. Ending on a signal is a failure ctest cannot read as a skip.
  if (rc != 0 && ::testing::UnitTest::GetInstance()->skipped_test_count() > 0) {
    std::fprintf(stderr, "llm4sbr_tests: tests were skipped beside a failure (a failed SetUpTestSuite skips its "
                         "suite): aborting, so that ctest reports a failure, not a skip\n");
    std::signal(SIGABRT, SIG_DFL);
    std::abort();
  }
  return rc;
}
