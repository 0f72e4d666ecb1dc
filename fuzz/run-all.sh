#!/usr/bin/env bash
# Runs every libFuzzer target of BUILD_DIR/bin for SECONDS each (`make fuzz`), seeded from the real data
# ($LLM4SBR_DATA_DIR, default ../shared/data) by fuzz/make-seeds.py. Inputs that found new coverage are kept
# in BUILD_DIR/corpus/<target> (a later run continues from them); a crashing input goes to
# BUILD_DIR/crashes/. Prints one line per target (executions, crash or not) and fails if any crashed.
#
# usage: fuzz/run-all.sh BUILD_DIR SECONDS [TARGET...]
# With FUZZ_RUNS=N in the environment each target runs N executions instead (SECONDS is then ignored), e.g.
# FUZZ_RUNS=1000000 for the million executions a release asks of every parser.
set -uo pipefail
build=$(cd "$1" && pwd)
seconds=$2
shift 2
root=$(cd "$(dirname "$0")/.." && pwd)
data=${LLM4SBR_DATA_DIR:-$root/../shared/data}

# Debian's python3 (numpy, yaml), whatever python3 comes first on PATH.
/usr/bin/python3 "$root/fuzz/make-seeds.py" "$data" "$root/configs" "$build/seeds" || exit 1
mkdir -p "$build/crashes" "$build/logs"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=($(cd "$build/bin" && ls fuzz_*))

# ASan keeps freed memory in a 256 MB quarantine to catch late use-after-free; a fuzz input allocates and frees
# in microseconds, and cycling through that much fresh memory doubled the time of the YAML targets (page
# faults, on every input). 16 MB still holds the frees of the last dozens of inputs.
export ASAN_OPTIONS=${ASAN_OPTIONS:-quarantine_size_mb=16}

failed=0
for name in "${targets[@]}"; do
  mkdir -p "$build/corpus/$name"
  log="$build/logs/$name.log"
  # -timeout: one input taking over 10 s is a hang; -rss_limit_mb: a parser must not blow up on a small file.
  if [ -n "${FUZZ_RUNS:-}" ]; then budget=(-runs="$FUZZ_RUNS"); else budget=(-max_total_time="$seconds"); fi
  "$build/bin/$name" "${budget[@]}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$build/crashes/$name-" "$build/corpus/$name" "$build/seeds/$name" >"$log" 2>&1
  rc=$?
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  if [ $rc -eq 0 ]; then
    printf '%-28s %12s executions, no crash\n' "$name" "${runs:-?}"
  else
    printf '%-28s %12s executions, FAILED (exit %d): see %s\n' "$name" "${runs:-?}" "$rc" "$log"
    failed=1
  fi
done
exit $failed
