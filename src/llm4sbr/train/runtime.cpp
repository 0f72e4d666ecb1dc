#include "llm4sbr/train/runtime.hpp"

#include <link.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <filesystem>
#include <thread>

namespace llm4sbr::train {

namespace {

int collect_blas(struct dl_phdr_info* info, size_t, void* data) {
  auto* found = static_cast<std::string*>(data);
  std::string name = info->dlpi_name ? info->dlpi_name : "";
  if (found->empty() && name.find("libblas") != std::string::npos) *found = name;
  return 0;
}

std::string classify_blas(const std::string& path) {
  if (path.find("openblas") != std::string::npos) return "OpenBLAS";
  if (path.find("blis") != std::string::npos) return "BLIS";
  if (path.find("mkl") != std::string::npos) return "MKL";
  if (path.find("atlas") != std::string::npos) return "ATLAS";
  if (path.find("/blas/") != std::string::npos) return "reference BLAS (slow)";
  return "unknown";
}

}  // namespace

RuntimeInfo configure_runtime(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(threads);
  RuntimeInfo info;
  info.intra_op_threads = at::get_num_threads();
  std::string loaded;
  dl_iterate_phdr(collect_blas, &loaded);
  std::error_code ec;
  info.blas_library = loaded.empty() ? "not loaded" : std::filesystem::canonical(loaded, ec).string();
  if (ec) info.blas_library = loaded;
  info.blas_kind = loaded.empty() ? "unknown" : classify_blas(info.blas_library);
  spdlog::info("compute: {} intra-op threads, BLAS {} ({})", info.intra_op_threads, info.blas_kind, info.blas_library);
  if (info.blas_kind.rfind("reference", 0) == 0)
    spdlog::warn("libblas.so.3 is the reference BLAS, 30-60x slower than OpenBLAS; run scripts/install-deps.sh");
  return info;
}

}  // namespace llm4sbr::train
