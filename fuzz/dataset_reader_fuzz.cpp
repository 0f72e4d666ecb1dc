// libFuzzer target for one dataset reader, chosen at build time by LLM4SBR_FUZZ_DATASET (one executable per
// reader, see fuzz/CMakeLists.txt). The input holds the reader's files in the order of kFiles, cut at
// '\x1c'; files without a part are missing. The first byte chooses ReadOptions::skip_malformed, so that both
// the strict and the skipping paths are explored.
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "fuzz_support.hpp"
#include "llm4sbr/data/readers.hpp"

#ifndef LLM4SBR_FUZZ_DATASET
#error "define LLM4SBR_FUZZ_DATASET (a name read_dataset knows)"
#endif

namespace {

// The files each reader opens, in the order the seeds (fuzz/make-seeds.py) lay them out.
const std::map<std::string, std::vector<std::string>> kFiles = {
    {"generic", {"interactions.csv", "items.csv"}},
    {"ml-1m", {"ratings.dat", "movies.dat"}},
    {"ml-100k", {"u.data", "u.item", "u.genre"}},
    {"ml-latest-small", {"ratings.csv", "movies.csv"}},
    {"beauty",
     {"user_sequence.txt", "Beauty_item_org_rank.txt", "Beauty_time_org_rank.txt", "session_id_to_int.json",
      "item_id_to_int.json", "products_lookup.csv"}},
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  llm4sbr::data::ReadOptions opt;
  opt.skip_malformed = (data[0] & 1) != 0;
  const auto& dir = llm4sbr::fuzz::scratch();
  dir.write(kFiles.at(LLM4SBR_FUZZ_DATASET), llm4sbr::fuzz::split_files(data + 1, size - 1));
  llm4sbr::fuzz::refusals_only([&] { (void)llm4sbr::data::read_dataset(LLM4SBR_FUZZ_DATASET, dir.path(), opt); });
  return 0;
}
