// e^x for float loops the compiler should vectorize: std::exp is a call into libm, one value at a time.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>

namespace llm4sbr {

/// e^x in float, ~2 ulp: Cephes' expf, 2^n times a degree-5 minimax polynomial in r, x = n ln 2 + r with
/// |r| ≤ ln 2 / 2. Branch-free and without std::floor (GCC vectorizes floor only under -fno-trapping-math), so
/// that a loop of it vectorizes in the instruction set of the (cloned) kernel inlining it. x is clamped to
/// [−87, 88], where e^x is a normal float: below, the result is e^−87 ≈ 1.6e-38 instead of a subnormal or 0;
/// NaN gives NaN.
[[gnu::always_inline]] inline float vectorizable_exp(float x) {
  constexpr float kRound = 12582912.0F;  // 1.5 · 2^23: adding it rounds a float below 2^22 in magnitude to an integer
  x = std::min(std::max(x, -87.0F), 88.0F);
  const float shifted = x * 1.44269504088896341F + kRound;  // kRound + n, n = round(x / ln 2)
  const float n = shifted - kRound;
  const float r = x - n * 0.693359375F + n * 2.12194440e-4F;  // ln2 in two parts: r exact to float
  float p = 1.9875691500e-4F;
  p = p * r + 1.3981999507e-3F;
  p = p * r + 8.3334519073e-3F;
  p = p * r + 4.1665795894e-2F;
  p = p * r + 1.6666665459e-1F;
  p = p * r + 5.0000001201e-1F;
  const float e = p * r * r + r + 1.0F;
  // 2^n: n is the integer in shifted's low mantissa bits.
  const auto n_bits = std::bit_cast<std::int32_t>(shifted) - std::bit_cast<std::int32_t>(kRound);
  return e * std::bit_cast<float>(static_cast<std::uint32_t>(n_bits + 127) << 23);
}

}  // namespace llm4sbr
