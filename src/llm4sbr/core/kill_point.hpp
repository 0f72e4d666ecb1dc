// Test hooks for the kill tests (tests/e2e/resume_e2e_test.cpp, kill_anywhere_e2e_test.cpp): when
// $LLM4SBR_KILL_AT names a point of a run, the process kills itself with SIGKILL there, as a crash, an OOM kill
// or `kill -9` would, so that a test can stop a run at a moment too short to hit from outside. The points:
// "write:NAME" (every file written through AtomicFile: the whole content is in its temporary file, not yet
// renamed to NAME), "answer:N" (half of the N-th answer line of a responses.jsonl written), and training's
// "train:E:B", "eval:E", "state:E" (train/resume.hpp).
#pragma once

#include <string_view>

namespace llm4sbr {

/// Whether $LLM4SBR_KILL_AT is set at all: hooks that must format their point test this first, so that they
/// cost one comparison in a normal run.
bool kill_points_armed();

/// Whether the point $LLM4SBR_KILL_AT names ends in "@RANK", the rank of a distributed job to kill: hooks that
/// run on every rank then append their own.
bool kill_point_names_a_rank();

/// Whether `point` is the one $LLM4SBR_KILL_AT names (for a hook that does something half-way first).
bool is_kill_point(std::string_view point);

/// Kills the process with SIGKILL (flushing the log first) when `point` is the one $LLM4SBR_KILL_AT names;
/// returns otherwise.
void kill_point(std::string_view point);

}  // namespace llm4sbr
