#include "llm4sbr/core/hash.hpp"

#include <fmt/format.h>

#include <fstream>
#include <vector>

#include "llm4sbr/core/error.hpp"

namespace llm4sbr {

std::uint64_t fnv1a64(std::string_view bytes, std::uint64_t seed) {
  std::uint64_t h = seed;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

std::string hash_hex(std::string_view bytes) { return fmt::format("{:016x}", fnv1a64(bytes)); }

std::string hash_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw InputError(file.string(), 0, "", "cannot open file for hashing");
  std::uint64_t h = 0xcbf29ce484222325ULL;
  std::vector<char> buf(1 << 16);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    h = fnv1a64(std::string_view(buf.data(), static_cast<std::size_t>(in.gcount())), h);
  }
  return fmt::format("{:016x}", h);
}

}  // namespace llm4sbr
