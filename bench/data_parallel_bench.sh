#!/usr/bin/env bash
# Data-parallel training on one machine, measured with the CLI a user runs: one full-Beauty training epoch
# (plus its evaluation) of MODEL in one process with every core, then with `--nproc N` for each N in NPROCS
# (Gloo on 127.0.0.1), in one run of this script so that the ratios are comparable. Prints the training rate,
# the all-reduce time a step and its share of the epoch, the bytes each rank sends a step, the wall time of
# the whole command, the test HR@20 (the same in every row for a plain backbone), and the time to write the
# resumable state.
#
#   bench/data_parallel_bench.sh                      # SR-GNN, NPROCS="2"
#   MODEL=gru4rec NPROCS="2 4" bench/data_parallel_bench.sh
#
# Needs: build/bin/llm4sbr and the Beauty data ($LLM4SBR_DATA_DIR).
set -euo pipefail

BUILD=${BUILD:-build}
MODEL=${MODEL:-srgnn}
NPROCS=${NPROCS:-2}
CLI=$BUILD/bin/llm4sbr
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

"$CLI" prepare --config configs/beauty.yaml --out "$WORK/prepared" > "$WORK/prepare.log" 2>&1

# One epoch with `$@` added; prints one row of the table.
measure() {
  local name=$1 out=$WORK/run-$1
  shift
  local start end
  start=$(date +%s.%N)
  "$CLI" --log-level debug train --data "$WORK/prepared" --out "$out" --set model="$MODEL" --set train.epochs=1 "$@" \
    > "$out.log" 2>&1
  end=$(date +%s.%N)
  local rate reduce share bytes hr state
  rate=$(grep -o 'epoch 1: loss [0-9.]*, [0-9]* samples/s' "$out.log" | grep -o '[0-9]* samples/s' | cut -d' ' -f1)
  reduce=$(grep -o 'all-reduce [0-9.]* ms a step' "$out.log" | cut -d' ' -f2 || true)
  share=$(grep -o '([0-9]*% of the epoch)' "$out.log" | tr -d '(' | cut -d' ' -f1 || true)
  bytes=$(grep -o '[0-9.]* MB a rank a step' "$out.log" | cut -d' ' -f1 || true)
  hr=$(grep -o 'test HR@20 [0-9.]*' "$out.log" | tail -1 | cut -d' ' -f3)
  state=$(grep -o 'state of epoch 1 written in [0-9.]* s' "$out.log" | cut -d' ' -f7)
  printf '| %s | %s | %s | %s | %s | %.1f | %s | %s |\n' "$name" "$rate" "${reduce:--}" "${share:--}" "${bytes:--}" \
    "$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')" "$hr" "$state"
}

echo "One full-Beauty epoch of $MODEL on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
echo
echo "| processes | train samples/s | all-reduce ms/step | share of epoch | MB/rank/step | command s | test HR@20 | state.pt write s |"
echo "|---|---|---|---|---|---|---|---|"
measure "1 (all cores)"
for n in $NPROCS; do measure "--nproc $n" --nproc "$n"; done
