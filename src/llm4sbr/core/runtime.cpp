#include "llm4sbr/core/runtime.hpp"

#include <dlfcn.h>
#include <link.h>
#include <malloc.h>
#include <spdlog/spdlog.h>
#include <ATen/Parallel.h>
#include <torch/version.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <thread>

namespace llm4sbr {

namespace {

int find_blas(struct dl_phdr_info* info, size_t, void* data) {
  auto* found = static_cast<std::string*>(data);
  std::string name = info->dlpi_name ? info->dlpi_name : "";
  if (found->empty() && name.find("libblas") != std::string::npos) *found = name;
  return 0;
}

std::string loaded_blas_path() {
  std::string loaded;
  dl_iterate_phdr(find_blas, &loaded);
  if (loaded.empty()) return "";
  std::error_code ec;
  auto real = std::filesystem::canonical(loaded, ec);
  return ec ? loaded : real.string();
}

// LibTorch's TORCH_WARN goes to glog by default, which prints "Logging before InitGoogleLogging()" and a line
// in its own format (TAGNN and GCE-GNN trigger "index_reduce() is in beta"). Its warnings go to our log instead:
// notices about LibTorch's own API ("... is in beta") at debug level, since they say nothing about the run.
class LogWarnings : public c10::WarningHandler {
 public:
#if TORCH_VERSION_MAJOR >= 2
  void process(const c10::Warning& warning) override { log(warning.msg()); }
#else
  void process(const c10::SourceLocation&, const std::string& msg, const bool) override { log(msg); }
#endif

 private:
  static void log(const std::string& msg) {
    if (msg.find("is in beta") != std::string::npos) spdlog::debug("LibTorch: {}", msg);
    else spdlog::warn("LibTorch: {}", msg);
  }
};

std::string classify_blas(const std::string& path) {
  if (path.find("openblas") != std::string::npos) return "OpenBLAS";
  if (path.find("blis") != std::string::npos) return "BLIS";
  if (path.find("mkl") != std::string::npos) return "MKL";
  if (path.find("atlas") != std::string::npos) return "ATLAS";
  if (path.find("/blas/") != std::string::npos) return "reference BLAS (slow)";
  return "unknown";
}

// OpenBLAS's C API, looked up at run time so that any BLAS still links.
template <typename F>
F openblas_symbol(const char* name) {
  return reinterpret_cast<F>(dlsym(RTLD_DEFAULT, name));
}

std::string openblas_core() {
  auto corename = openblas_symbol<char* (*)()>("openblas_get_corename");
  return corename ? corename() : "";
}

// The fastest kernel family this CPU runs: SkylakeX where it has the AVX-512 subsets OpenBLAS's SkylakeX kernels
// use (F, BW, DQ, VL, CD; libgcc also checks that the OS saves the AVX-512 registers), else Haswell where it has
// AVX2 and FMA, else "".
std::string cpu_best_core() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512cd"))
    return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
  return "";
}

}  // namespace

std::string faster_blas_core(const std::string& openblas_core, const std::string& cpu_best) {
  const auto is_one_of = [&](std::initializer_list<const char*> names) {
    for (const char* c : names)
      if (strcasecmp(openblas_core.c_str(), c) == 0) return true;
    return false;
  };
  if (openblas_core.empty() || cpu_best.empty() || is_one_of({"SkylakeX", "Cooperlake", "SapphireRapids"})) return "";
  if (cpu_best == "Haswell" && is_one_of({"Haswell", "Zen", "Skylake"})) return "";  // already AVX2 kernels
  return cpu_best;
}

void ensure_fast_blas(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE") || std::getenv("LLM4SBR_BLAS_REEXEC")) return;
  const std::string core = openblas_core();
  const std::string better = faster_blas_core(core, cpu_best_core());
  if (better.empty()) return;
  setenv("OPENBLAS_CORETYPE", better.c_str(), 1);
  setenv("LLM4SBR_BLAS_REEXEC", "1", 1);
  execv("/proc/self/exe", argv);
  spdlog::warn("OpenBLAS uses its '{}' kernels and re-executing with OPENBLAS_CORETYPE={} failed: {}", core, better,
               std::strerror(errno));
}

namespace {

// The process's resident set in bytes, from /proc/self/statm (0 where there is none).
std::size_t resident_bytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  unsigned long size = 0, resident = 0;
  const bool read = std::fscanf(f, "%lu %lu", &size, &resident) == 2;
  std::fclose(f);
  return read ? resident * static_cast<std::size_t>(sysconf(_SC_PAGESIZE)) : 0;
}

}  // namespace

std::size_t release_freed_memory() {
#ifdef __GLIBC__
  const auto before = resident_bytes();
  malloc_trim(0);
  const auto after = resident_bytes();
  return before > after ? before - after : 0;
#else
  return 0;
#endif
}

// Looked up once: ScopedBlasThreads reads and sets the count on every pass of the LLM4SBR head's gates, and a
// dlsym is a string hash and a search of every loaded library's symbols.
void set_blas_threads(int threads) {
  static const auto set = openblas_symbol<void (*)(int)>("openblas_set_num_threads");
  if (set) set(threads);
}

int blas_threads() {
  static const auto get = openblas_symbol<int (*)()>("openblas_get_num_threads");
  return get ? get() : 0;
}

ScopedBlasThreads::ScopedBlasThreads(int threads) {
  const int current = blas_threads();
  if (current <= 0 || current == threads) return;
  set_blas_threads(threads);
  restore_ = current;
}

ScopedBlasThreads::~ScopedBlasThreads() {
  if (restore_ > 0) set_blas_threads(restore_);
}

namespace {

// LibTorch's CPU tensors come from malloc. glibc gives a block above its mmap threshold back to the kernel
// when it is freed (the threshold adapts, but to 32 MB at most) and trims the heap's top beyond 128 KB, so a
// loop that allocates the same score matrices every batch has their pages faulted in and zeroed anew each
// time: `evaluate` of SR-GNN on Beauty (batches of 500, 48 MB blocks) took 824k minor page faults and 6.8 s of
// system time in 16 s of CPU, against 61k and 0.9 s in 4.8 s with blocks up to 1 GB kept in the heap and
// the heap never trimmed. What a process frees stays its own until it exits (its RSS stays at its peak).
// A user's own MALLOC_* variables or GLIBC_TUNABLES are left to decide.
bool keep_freed_memory() {
#ifdef __GLIBC__
  for (const char* name : {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES"})
    if (std::getenv(name)) return false;
  constexpr int kKeptBlock = 1 << 30;  // bytes
  return mallopt(M_MMAP_THRESHOLD, kKeptBlock) == 1 && mallopt(M_TRIM_THRESHOLD, kKeptBlock) == 1;
#else
  return false;
#endif
}

}  // namespace

RuntimeInfo configure_runtime(int threads) {
  RuntimeInfo info;
  info.freed_memory_kept = keep_freed_memory();
  info.blas_library = loaded_blas_path();
  info.blas_kind = info.blas_library.empty() ? "unknown" : classify_blas(info.blas_library);
  info.blas_core = openblas_core();
  info.blas_threads = blas_threads();
  const bool blas_has_own_pool = info.blas_kind == "OpenBLAS" && info.blas_library.find("pthread") != std::string::npos;
  if (threads <= 0) threads = blas_has_own_pool ? 1 : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(threads);
  static LogWarnings log_warnings;
#if TORCH_VERSION_MAJOR >= 2
  c10::WarningUtils::set_warning_handler(&log_warnings);
#else
  c10::Warning::set_warning_handler(&log_warnings);
#endif
  info.intra_op_threads = at::get_num_threads();
  spdlog::info("compute: LibTorch {} intra-op thread(s); BLAS {} ({}{}{}){}", info.intra_op_threads, info.blas_kind,
               info.blas_library.empty() ? "not loaded" : info.blas_library,
               info.blas_threads > 0 ? fmt::format(", {} threads", info.blas_threads) : "",
               info.blas_core.empty() ? "" : ", kernels " + info.blas_core,
               info.freed_memory_kept ? "; freed memory kept in the heap" : "");
  if (info.blas_kind.rfind("reference", 0) == 0)
    spdlog::warn("libblas.so.3 is the reference BLAS, 30-60x slower than OpenBLAS; run scripts/install-deps.sh");
  return info;
}

}  // namespace llm4sbr
