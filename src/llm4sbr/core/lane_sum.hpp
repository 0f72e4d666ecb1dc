// Sums and maxima in vector lanes for hand-written kernels, where float addition's order is fixed by the source.
#pragma once

#include <cstdint>

namespace llm4sbr {

/// fold(init, term(0), term(1), ...) in 16 lanes: lane l folds the terms j ≡ l (mod 16) in order, from init,
/// then the lanes are folded in order. Without -ffast-math the compiler neither vectorizes a single running
/// sum (or maximum) nor overlaps its steps (each waits for the last, ~4 cycles for an add); 16 independent
/// lanes it keeps in vector registers. The order is fixed, so a result is the same on every call and every ISA
/// clone. Inlined, it takes the instruction set of the kernel calling it.
template <typename T, typename Term, typename Fold>
[[gnu::always_inline]] inline T lane_fold(std::int64_t n, T init, Term term, Fold fold) {
  constexpr std::int64_t kLanes = 16;
  T lanes[kLanes];
  for (T& lane : lanes) lane = init;
  std::int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (std::int64_t l = 0; l < kLanes; ++l) lanes[l] = fold(lanes[l], term(j + l));
  for (; j < n; ++j) lanes[j % kLanes] = fold(lanes[j % kLanes], term(j));
  T total = init;
  for (const T lane : lanes) total = fold(total, lane);
  return total;
}

/// Σ_{j < n} term(j) accumulated in T over 16 partial sums (lane_fold).
template <typename T, typename Term>
[[gnu::always_inline]] inline T lane_sum(std::int64_t n, Term term) {
  return lane_fold<T>(n, T{0}, term, [](T a, T b) { return a + b; });
}

/// max(lowest, max_{j < n} term(j)) over 16 partial maxima (lane_fold). NaN terms are skipped (b > a is false
/// for them): a caller that must not miss a NaN sees it in what it computes from the terms next.
template <typename T, typename Term>
[[gnu::always_inline]] inline T lane_max(std::int64_t n, T lowest, Term term) {
  return lane_fold<T>(n, lowest, term, [](T a, T b) { return b > a ? b : a; });
}

}  // namespace llm4sbr
