// Sums in vector lanes for hand-written kernels, where float addition's order is fixed by the source.
#pragma once

#include <cstdint>

namespace llm4sbr {

/// Σ_{j < n} term(j) accumulated in T over 16 partial sums, lane l adding the terms j ≡ l (mod 16) in order,
/// then the lanes in order. Without -ffast-math the compiler neither vectorizes a single running sum nor
/// overlaps its adds (each waits for the last, ~4 cycles); 16 independent lanes it keeps in vector registers.
/// The order is fixed, so a sum is the same on every call and every ISA clone. Inlined, it takes the
/// instruction set of the kernel calling it.
template <typename T, typename Term>
[[gnu::always_inline]] inline T lane_sum(std::int64_t n, Term term) {
  constexpr std::int64_t kLanes = 16;
  T lanes[kLanes] = {};
  std::int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (std::int64_t l = 0; l < kLanes; ++l) lanes[l] += term(j + l);
  for (; j < n; ++j) lanes[j % kLanes] += term(j);
  T total = 0;
  for (const T lane : lanes) total += lane;
  return total;
}

}  // namespace llm4sbr
