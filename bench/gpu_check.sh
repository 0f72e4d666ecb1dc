#!/usr/bin/env bash
# One pass over everything GPU-specific, for a CUDA machine with PyTorch: builds build-gpu/ (CUDA LibTorch,
# llama.cpp with CUDA), runs the GPU test set, times a full Beauty training epoch of every backbone (and
# LLM4SBR(SR-GNN)) with the GPU's utilisation, then the LLM stage on a Qwen2-7B-shaped model against
# llama-batched-bench. Each step is logged with its time; a failed step does not stop the next one, and no
# step starts after BUDGET seconds.
#
#   bench/gpu_check.sh [OUT_DIR]     # environment: PREFIX, DATA_DIR, BUDGET (s), SAMPLES, PARALLEL
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu-check}
mkdir -p "$OUT"
BUDGET=${BUDGET:-480}
START=$(date +%s)
export LLM4SBR_DATA_DIR=${DATA_DIR:-${LLM4SBR_DATA_DIR:-../shared/data}}
[ -z "${PREFIX:-}" ] || export LD_LIBRARY_PATH="$PREFIX/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export BUILD=${BUILD:-build-gpu}

elapsed() { echo $(( $(date +%s) - START )); }
# step NAME LIMIT_S COMMAND...: runs COMMAND, its output appended to $OUT/steps.log, unless the budget is spent.
step() {
  local name=$1 limit=$2; shift 2
  if [ "$(elapsed)" -ge "$BUDGET" ]; then echo "[$(elapsed) s] $name: skipped (budget of $BUDGET s spent)" | tee -a "$OUT/summary.txt"; return 0; fi
  local t0=$(date +%s) log="$OUT/step.tmp" from=$(cat "$OUT/dmon.txt" 2>/dev/null | wc -l)
  timeout "$limit" "$@" > "$log" 2>&1
  local rc=$?
  # The GPU's mean SM utilisation over the step's seconds (nvidia-smi dmon, when it runs).
  local util=$(tail -n +"$((from + 1))" "$OUT/dmon.txt" 2>/dev/null | awk '!/^#/ {s += $2; n++} END {if (n) printf ", GPU busy %.0f %% of %d s", s/n, n}')
  echo "[$(elapsed) s] $name: exit $rc in $(( $(date +%s) - t0 )) s$util" | tee -a "$OUT/summary.txt"
  { echo "===== $name (exit $rc)"; cat "$log"; } >> "$OUT/steps.log"
  grep -E "epoch 1:|ratio|tok/s|Passed|Failed|FAILED|error|Error" "$log" | tail -n 12 | sed "s/^/  $name| /"
  rm -f "$log"
  return 0
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc; nvcc --version | tail -2
  python3 -c 'import torch; print("torch", torch.__version__, torch.version.cuda)'; cmake --version | head -1; } \
  > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"

# The ~15 GB model is written while the build runs (disk and numpy, not the compilers' cores). LLAMA_CUDA=OFF
# skips the LLM stage (llama.cpp is then built for the CPU).
[ "${LLAMA_CUDA:-ON}" = OFF ] || ( t0=$(date +%s); python3 scripts/make-tiny-models.py /tmp/llm4sbr-models --qwen2-7b-shaped --llama-dir third_party/llama.cpp \
    > "$OUT/make-7b.log" 2>&1; echo "make-7b: exit $? in $(( $(date +%s) - t0 )) s" >> "$OUT/make-7b.log" ) &
MAKE7B=$!
step build 330 env CUDA_ARCH=${CUDA_ARCH:-90a} scripts/build-gpu.sh llm4sbr_cli llm4sbr_gpu_tests epoch_bench llama-batched-bench
step gpu-tests 120 bash -c "cd $BUILD && ctest -L gpu --output-on-failure --timeout 110"

nvidia-smi dmon -s u -d 1 > "$OUT/dmon.txt" 2>&1 &
DMON=$!
# SR-GNN plain and LLM4SBR(SR-GNN) (its titles intents made on the CPU first, then cached in runs/bench).
step epoch-srgnn 180 "$BUILD/bin/epoch_bench" --models srgnn --rows plain,head --device cuda
# The same epoch with each batch built by the training thread itself (the default on a GPU builds 2 ahead).
step epoch-srgnn-no-prefetch 120 "$BUILD/bin/epoch_bench" --models srgnn --rows plain --device cuda \
  --set train.prefetch_batches=0
if [ "${LLAMA_CUDA:-ON}" != OFF ]; then
wait "$MAKE7B"; cat "$OUT/make-7b.log" | tail -2 | tee -a "$OUT/summary.txt"
step infer-7b 200 env THREADS=16 BATCH=8192 bench/infer_vs_batched_bench.sh /tmp/llm4sbr-models/qwen2-7b-shaped.gguf \
  "${SAMPLES:-256}" "${PARALLEL:-128}" 32
fi
step epoch-others 300 "$BUILD/bin/epoch_bench" --models gru4rec,sasrec,tagnn,gcegnn,dhcn --rows plain --device cuda
kill "$DMON" 2>/dev/null
# GPU utilisation while the epochs and the LLM ran: dmon's "sm" column over the seconds the GPU was busy.
awk '!/^#/ && $2+0 > 0 {s += $2; n++} END {if (n) printf "GPU SM utilisation while busy: %.0f %% over %d one-second samples\n", s/n, n}' \
  "$OUT/dmon.txt" | tee -a "$OUT/summary.txt"
echo "total $(elapsed) s" | tee -a "$OUT/summary.txt"
