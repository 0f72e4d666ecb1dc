// configure_runtime: LibTorch's own warnings reach our log, not glog's stderr lines (issue 17, item 7: TAGNN and
// GCE-GNN printed "Logging before InitGoogleLogging()" with index_reduce's beta notice).
#include "llm4sbr/core/runtime.hpp"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <torch/torch.h>

#include <stdexcept>
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

namespace {
long minor_page_faults() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_minflt;
}

// Why these tests cannot watch glibc's heap keep or give back memory ("" when they can): AddressSanitizer's
// allocator replaces it, or configure_runtime left it alone (not glibc, or the user's MALLOC_* settings).
std::string heap_unobservable() {
#if defined(__SANITIZE_ADDRESS__)
  return "AddressSanitizer's allocator replaces glibc's";
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  return "AddressSanitizer's allocator replaces glibc's";
#endif
#endif
  if (!llm4sbr::configure_runtime(1).freed_memory_kept) return "not glibc, or MALLOC_*/GLIBC_TUNABLES set";
  return "";
}
}  // namespace

// The batch loop's case: a score matrix of 500 sessions x 12,101 items x 2 (48 MB) allocated and freed again and
// again. With glibc's defaults each one came back from the kernel as 11,800 fresh pages.
TEST(Runtime, FreedBlocksAreReusedWithoutPageFaults) {
  if (const auto why = heap_unobservable(); !why.empty()) GTEST_SKIP() << why;
  const auto sum_of_a_fresh_matrix = [] { return torch::ones({1000, 12101}).sum().item<float>(); };
  // The heap grows while glibc's aligned allocations still find no freed block of their size.
  for (int i = 0; i < 10; ++i) EXPECT_EQ(sum_of_a_fresh_matrix(), 1000.0f * 12101.0f);
  const auto before = minor_page_faults();
  for (int i = 0; i < 5; ++i) EXPECT_EQ(sum_of_a_fresh_matrix(), 1000.0f * 12101.0f);
  EXPECT_LT(minor_page_faults() - before, 2000) << "5 x 48 MB would be ~59,000 faults if given back each time";
}

// release_freed_memory gives back what the kept heap holds: 200 MB freed behind a block still in use (so that
// free() cannot trim the top) leave the resident set until the call.
TEST(Runtime, ReleaseFreedMemoryShrinksTheResidentSet) {
  if (const auto why = heap_unobservable(); !why.empty()) GTEST_SKIP() << why;
  auto freed = torch::ones({200, 1 << 18});  // 200 MB, below the kept-block threshold: from the heap
  const auto kept = torch::ones({1 << 10});  // above it in the heap
  freed = torch::Tensor();
  const auto released = llm4sbr::release_freed_memory();
  EXPECT_GT(released, std::size_t{150} << 20) << "released " << released << " bytes";
  EXPECT_EQ(kept.sum().item<float>(), 1024.0f);
}

// ensure_fast_blas's choice: Debian 12's OpenBLAS 0.3.21 picks SSE3 "Prescott" kernels on recent Xeons and its
// AVX2 kernels on AMD's AVX-512 CPUs (Zen 4); either is replaced by the fastest family the CPU runs, and an
// AVX-512 or a sufficient AVX2 pick is kept.
TEST(Runtime, FasterBlasCoreReplacesOnlySlowerKernels) {
  using llm4sbr::faster_blas_core;
  EXPECT_EQ(faster_blas_core("Prescott", "SkylakeX"), "SkylakeX");
  EXPECT_EQ(faster_blas_core("Prescott", "Haswell"), "Haswell");
  EXPECT_EQ(faster_blas_core("Zen", "SkylakeX"), "SkylakeX");
  EXPECT_EQ(faster_blas_core("Haswell", "SkylakeX"), "SkylakeX");
  EXPECT_EQ(faster_blas_core("Haswell", "Haswell"), "");
  EXPECT_EQ(faster_blas_core("ZEN", "Haswell"), "");  // OpenBLAS's names in any case
  EXPECT_EQ(faster_blas_core("Cooperlake", "SkylakeX"), "");
  EXPECT_EQ(faster_blas_core("SkylakeX", "SkylakeX"), "");
  EXPECT_EQ(faster_blas_core("Prescott", ""), "");  // nothing faster to run
  EXPECT_EQ(faster_blas_core("", "SkylakeX"), "");  // not OpenBLAS
}

// ScopedBlasThreads: one thread inside its scope, the count before it after, even when the scope is left by an
// exception; nothing changes when the count is already the one asked for.
TEST(Runtime, ScopedBlasThreadsRestoresTheCountItFound) {
  if (llm4sbr::blas_threads() == 0) GTEST_SKIP() << "not OpenBLAS: no thread count to set";
  const int before = llm4sbr::blas_threads();
  llm4sbr::set_blas_threads(2);
  {
    const llm4sbr::ScopedBlasThreads one(1);
    EXPECT_EQ(llm4sbr::blas_threads(), 1);
    {
      const llm4sbr::ScopedBlasThreads again(1);  // already 1: keeps it, restores nothing
      EXPECT_EQ(llm4sbr::blas_threads(), 1);
    }
    EXPECT_EQ(llm4sbr::blas_threads(), 1);
  }
  EXPECT_EQ(llm4sbr::blas_threads(), 2);
  try {
    const llm4sbr::ScopedBlasThreads one(1);
    throw std::runtime_error("left by an exception");
  } catch (const std::runtime_error&) {
  }
  EXPECT_EQ(llm4sbr::blas_threads(), 2);
  llm4sbr::set_blas_threads(before);
}
