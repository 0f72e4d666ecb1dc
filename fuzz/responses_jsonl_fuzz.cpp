// libFuzzer target: responses.jsonl, read alone (read_response_file, as merge does) and opened as the
// resumable store (which also cuts a torn last line off the file, as infer does on a restart).
#include <cstdint>
#include <string_view>

#include "fuzz_support.hpp"
#include "llm4sbr/llm/response_store.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto file = llm4sbr::fuzz::scratch().write_one("responses.jsonl", data, size);
  llm4sbr::fuzz::refusals_only([&] { (void)llm4sbr::llm::read_response_file(file); });
  llm4sbr::fuzz::refusals_only([&] {
    llm4sbr::llm::ResponseStore store(file);
    for (const auto& [key, record] : store.records()) (void)store.has(key.first, key.second, record.prompt_hash);
  });
  return 0;
}
