// libFuzzer target: the .npy reader (header checks, then the data of a float32 or int64 array).
#include <cstdint>
#include <string_view>

#include "fuzz_support.hpp"
#include "llm4sbr/core/npy.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto file = llm4sbr::fuzz::scratch().write_one("array.npy", data, size);
  llm4sbr::fuzz::refusals_only([&] {
    const auto header = llm4sbr::read_npy_header(file);
    if (header.dtype == llm4sbr::NpyDtype::kFloat32) (void)llm4sbr::read_npy_float32(file);
    else (void)llm4sbr::read_npy_int64(file);
  });
  return 0;
}
