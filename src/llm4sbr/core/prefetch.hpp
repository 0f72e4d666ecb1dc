// Software prefetch for kernels that read rows scattered over tables larger than the cache.
#pragma once

#include <cstdint>

namespace llm4sbr {

/// Asks the CPU to bring the cache lines of `n` values from `row` (64-byte lines) before they are read: for
/// rows whose addresses come from an index array, which the hardware prefetcher cannot guess. A hint only: it
/// never faults and never changes a value. Inlined, it takes the instruction set of the kernel calling it.
template <typename T>
inline void prefetch_row(const T* row, std::int64_t n) {
  const auto* bytes = reinterpret_cast<const char*>(row);
  for (std::int64_t b = 0; b < n * static_cast<std::int64_t>(sizeof(T)); b += 64) __builtin_prefetch(bytes + b);
}

}  // namespace llm4sbr
