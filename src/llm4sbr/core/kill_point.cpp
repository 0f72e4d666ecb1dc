#include "llm4sbr/core/kill_point.hpp"

#include <spdlog/spdlog.h>

#include <csignal>
#include <cstdlib>

namespace llm4sbr {

namespace {
const char* kill_target() {
  static const char* target = std::getenv("LLM4SBR_KILL_AT");
  return target;
}
}  // namespace

bool kill_points_armed() { return kill_target() != nullptr; }

bool kill_point_names_a_rank() {
  const char* target = kill_target();
  return target && std::string_view(target).find('@') != std::string_view::npos;
}

bool is_kill_point(std::string_view point) {
  const char* target = kill_target();
  return target && point == target;
}

void kill_point(std::string_view point) {
  if (!is_kill_point(point)) return;
  spdlog::default_logger()->flush();
  std::raise(SIGKILL);
}

}  // namespace llm4sbr
