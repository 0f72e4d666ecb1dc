// The median of a benchmark's rounds: one slow moment of a shared machine moves a mean, not a median.
#pragma once

#include <algorithm>
#include <vector>

/// The middle value of v (the upper one of the two middle values for an even count); v must not be empty.
inline double median(std::vector<double> v) {
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
  return v[v.size() / 2];
}
