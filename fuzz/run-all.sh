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
usage="usage: fuzz/run-all.sh BUILD_DIR SECONDS [TARGET...]"
[ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }
# A misspelled folder must stop here: with an empty $build the seeds, logs and crashes would go to /.
build=$(cd "$1" 2>/dev/null && pwd) ||
  { echo "run-all.sh: no build folder '$1' (make fuzz builds build-fuzz)" >&2; exit 2; }
[ -d "$build/bin" ] || { echo "run-all.sh: $build has no bin/ with fuzz targets (make fuzz builds them)" >&2; exit 2; }
seconds=$2
# The budget libFuzzer gets must be a count: it reads -max_total_time=0 as no limit at all.
if [ -n "${FUZZ_RUNS:-}" ]; then limit_name=FUZZ_RUNS limit=$FUZZ_RUNS; else limit_name=SECONDS limit=$seconds; fi
[[ "$limit" =~ ^[1-9][0-9]*$ ]] ||
  { echo "run-all.sh: $limit_name must be a whole number > 0, got '$limit'" >&2; exit 2; }
shift 2
root=$(cd "$(dirname "$0")/.." && pwd)
data=${LLM4SBR_DATA_DIR:-$root/../shared/data}

# Debian's python3 (numpy, yaml), whatever python3 comes first on PATH.
/usr/bin/python3 "$root/fuzz/make-seeds.py" "$data" "$root/configs" "$build/seeds" || exit 1
mkdir -p "$build/crashes" "$build/logs"
available=($(cd "$build/bin" && ls fuzz_* 2>/dev/null))
[ ${#available[@]} -gt 0 ] || { echo "run-all.sh: no fuzz_* target in $build/bin (make fuzz builds them)" >&2; exit 2; }
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${available[@]}")
for name in "${targets[@]}"; do
  [ -x "$build/bin/$name" ] || { echo "run-all.sh: no target '$name'; the targets are: ${available[*]}" >&2; exit 2; }
done

# ASan keeps freed memory in a 256 MB quarantine to catch late use-after-free; a fuzz input allocates and frees
# in microseconds, and cycling through that much fresh memory doubled the time of the YAML targets (page
# faults, on every input). 16 MB still holds the frees of the last dozens of inputs.
export ASAN_OPTIONS=${ASAN_OPTIONS:-quarantine_size_mb=16}

failed=0
for name in "${targets[@]}"; do
  mkdir -p "$build/corpus/$name" "$build/seeds/$name"  # a target make-seeds.py does not know starts from nothing
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
    input=$(grep -o 'Test unit written to .*' "$log" | tail -1 | sed 's/^Test unit written to //')
    printf '%-28s %12s executions, FAILED (exit %d): see %s%s\n' "$name" "${runs:-?}" "$rc" "$log" \
      "${input:+; the input: $input (replay: $build/bin/$name $input)}"
    failed=1
  fi
done
exit $failed
