// libFuzzer's start-up hook, shared by every target: the parsers' warnings (skipped rows) are silenced, since
// logging would dominate the time of a fuzz run.
#include <spdlog/spdlog.h>

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);
  return 0;
}
