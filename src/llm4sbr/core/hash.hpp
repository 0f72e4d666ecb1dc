// Stable content hashes for stage caching (same input -> same hex string on every machine and run).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace llm4sbr {

/// FNV-1a 64-bit hash of bytes. Not cryptographic: used to key caches, never to secure anything.
std::uint64_t fnv1a64(std::string_view bytes, std::uint64_t seed = 0xcbf29ce484222325ULL);
/// 16 lowercase hex digits of fnv1a64.
std::string hash_hex(std::string_view bytes);
/// Hash of a file's bytes (streamed). Throws InputError if the file cannot be read.
std::string hash_file(const std::filesystem::path& file);

}  // namespace llm4sbr
