// Process-wide compute settings: which BLAS LibTorch really runs on, its kernels, and thread counts.
#pragma once

#include <cstddef>

#include <string>

namespace llm4sbr {

struct RuntimeInfo {
  int intra_op_threads = 1;  ///< LibTorch's own (OpenMP) threads
  int blas_threads = 0;      ///< OpenBLAS's threads (0 = unknown / not OpenBLAS)
  std::string blas_library;  ///< resolved path of the loaded libblas (e.g. .../openblas-pthread/libblas.so.3)
  std::string blas_kind;     ///< "OpenBLAS", "reference BLAS (slow)", "MKL", ... or "unknown"
  std::string blas_core;     ///< OpenBLAS kernel family in use ("SkylakeX", "Haswell", ...), "" if unknown
  bool freed_memory_kept = false;  ///< glibc told to keep freed blocks up to 1 GB in the heap (see configure_runtime)
};

/// Call first thing in main(). OpenBLAS 0.3.21 (Debian 12) does not know recent CPUs: on recent Xeons it
/// falls back to its SSE3 "Prescott" kernels (3-4x slower than its AVX-512 ones on the same cores), on AMD's
/// AVX-512 CPUs (Zen 4) to its AVX2 Haswell kernels (SR-GNN's training step 1.24x and its evaluation 1.27x
/// slower than with the SkylakeX kernels on this project's 2-core EPYC: bench/backbone_bench, alternated).
/// When OPENBLAS_CORETYPE is unset and the CPU runs a faster family than OpenBLAS picked (SkylakeX with
/// AVX-512, Haswell with AVX2), this sets OPENBLAS_CORETYPE to it and re-executes the program, because OpenBLAS
/// reads the variable only when it is loaded (child processes inherit it). A user's own OPENBLAS_CORETYPE is
/// always respected. Returns normally when nothing needs changing (or re-execution failed, which is logged).
void ensure_fast_blas(char** argv);

/// The OPENBLAS_CORETYPE that ensure_fast_blas re-executes with, or "" to keep OpenBLAS's own pick:
/// `openblas_core` is the family OpenBLAS picked (openblas_get_corename, "" if not OpenBLAS), `cpu_best` the
/// fastest the CPU runs ("SkylakeX", "Haswell" or ""). An AVX-512 pick is kept, and an AVX2 pick where the CPU
/// has nothing faster.
std::string faster_blas_core(const std::string& openblas_core, const std::string& cpu_best);

/// Sets LibTorch's intra-op threads and logs the compute setup; warns about the slow reference BLAS. With
/// glibc, and unless the user set MALLOC_* or GLIBC_TUNABLES, it also keeps freed blocks up to 1 GB in the heap
/// and never trims it: each batch's tensors otherwise come back from the kernel as fresh pages (evaluate of
/// SR-GNN on Beauty: 3.3x less CPU time, most of it page faults).
/// threads = 0 (the default) picks 1 LibTorch thread when OpenBLAS runs with its own thread pool: OpenBLAS
/// already spreads every matrix product over all cores, and LibTorch's OpenMP workers spinning beside it
/// cost 2.6x in SR-GNN training here (bench/backbone_bench: 3,591 vs 1,382 samples/s). Otherwise 0 means
/// all cores.
RuntimeInfo configure_runtime(int threads = 0);

/// Gives the heap's free pages back to the kernel (glibc's malloc_trim; a no-op elsewhere). configure_runtime
/// keeps freed memory so that each batch's tensors reuse warm pages; between stages whose working sets differ
/// (the intent stage's encoded texts, then the split intents training reads) the kept pages would add up:
/// `llm4sbr run` on Beauty peaked at 1.54 GB, the intents read after 1.2 GB of freed localization buffers.
/// Returns the bytes the process's resident set shrank by (0 if unknown).
std::size_t release_freed_memory();

/// Sets OpenBLAS's own thread count (a no-op with another BLAS). The service answers small batches, where
/// OpenBLAS's idle threads spinning in sched_yield cost more than they add.
void set_blas_threads(int threads);

/// OpenBLAS's thread count now (0 with another BLAS).
int blas_threads();

/// OpenBLAS on `threads` threads while this object lives, then the count it had (a no-op with another BLAS or
/// when the count is already `threads`). For a region of small products, e.g. [100, 100] x [100, 100], where
/// handing half of each to OpenBLAS's other thread and waiting for it costs more than that half (the LLM4SBR
/// head's DirectAU Grams). OpenBLAS's count is process-wide: not for a region that threads run concurrently
/// while the count differs from `threads` (the service runs OpenBLAS on one thread throughout).
class ScopedBlasThreads {
 public:
  explicit ScopedBlasThreads(int threads);
  ~ScopedBlasThreads();
  ScopedBlasThreads(const ScopedBlasThreads&) = delete;
  ScopedBlasThreads& operator=(const ScopedBlasThreads&) = delete;

 private:
  int restore_ = 0;  ///< the count to set back, 0 = nothing changed
};

}  // namespace llm4sbr
