// Process-wide compute settings: thread counts and which BLAS LibTorch really runs on.
#pragma once

#include <string>

namespace llm4sbr::train {

struct RuntimeInfo {
  int intra_op_threads;
  std::string blas_library;  ///< resolved path of the loaded libblas (e.g. .../openblas-pthread/libblas.so.3)
  std::string blas_kind;     ///< "OpenBLAS", "reference BLAS (slow)", "MKL", ... or "unknown"
};

/// Sets LibTorch's intra-op threads to `threads` (0 = all cores: Debian's LibTorch starts with 1 here),
/// logs the thread count and the BLAS in use, and warns when the slow reference BLAS is loaded
/// (scripts/install-deps.sh switches libblas.so.3 to OpenBLAS).
RuntimeInfo configure_runtime(int threads = 0);

}  // namespace llm4sbr::train
