#!/usr/bin/env bash
# Stage 1 over HTTP, measured with the CLI a user runs: prompts/s of `llm4sbr infer` through one and
# through two local llama-server processes (the scale-out ratio), and the in-process llama.cpp backend on
# the same tiny model, threads and prompts (the HTTP backend's overhead). Same machine, one run.
#
#   bench/http_bench.sh                 # N=300 Beauty test samples x 2 views, 16 tokens each, 1 thread per server
#   N=1000 MAX_TOKENS=32 THREADS=1 bench/http_bench.sh
#
# Needs: build/bin/llm4sbr, build/bin/llama-server (ninja -C build llama-server), build/tiny-models,
# the Beauty data ($LLM4SBR_DATA_DIR). Every server listens on 127.0.0.1 only and is killed by PID at exit.
set -euo pipefail

BUILD=${BUILD:-build}
N=${N:-300}
MAX_TOKENS=${MAX_TOKENS:-16}
THREADS=${THREADS:-1}
SLOTS=${SLOTS:-4}
MODEL=${MODEL:-$BUILD/tiny-models/tiny-qwen2-chat.gguf}
CLI=$BUILD/bin/llm4sbr
SERVER=$BUILD/bin/llama-server
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do { kill -9 "$pid" && wait "$pid"; } 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# Starts a server on a port the kernel picks and sets URL once /health answers. Not to be called in a
# $(...) subshell: the PID must reach the cleanup of this shell.
start_server() {
  local log=$WORK/server-$1.log
  "$SERVER" -m "$MODEL" --host 127.0.0.1 --port 0 --no-webui -np "$SLOTS" -c $((SLOTS * 2048)) -t "$THREADS" \
    -tb "$THREADS" > "$log" 2>&1 &
  PIDS+=($!)
  URL=""
  for _ in $(seq 600); do
    URL=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$log" | head -1 | sed 's/listening on //') || true
    if [ -n "$URL" ] && curl -sf "$URL/health" > /dev/null; then return; fi
    sleep 0.1
  done
  echo "server $1 did not start:" >&2; tail -20 "$log" >&2; exit 1
}

# Runs infer into a fresh directory and prints "prompts seconds prompts/s".
run_infer() {
  local name=$1; shift
  local out=$WORK/$name
  local start end
  start=$(date +%s.%N)
  "$CLI" infer --data "$WORK/beauty" --split test --limit "$N" --out "$out" --set llm.max_tokens="$MAX_TOKENS" "$@" \
    > "$WORK/$name.log" 2>&1 || { tail -20 "$WORK/$name.log" >&2; exit 1; }
  end=$(date +%s.%N)
  local generated
  generated=$(grep -o '^[0-9]* generated now' "$WORK/$name.log" | cut -d' ' -f1)
  awk -v n="$generated" -v s="$start" -v e="$end" 'BEGIN { printf "%d %.2f %.2f\n", n, e - s, n / (e - s) }'
}

"$CLI" prepare --config configs/beauty.yaml --out "$WORK/beauty" > /dev/null 2>&1
start_server a; A=$URL
start_server b; B=$URL
HTTP="--set llm.http.concurrency=$SLOTS"

read -r n_in s_in r_in < <(run_infer inprocess --llm "llama:$MODEL" --set llm.threads="$THREADS" --set llm.parallel="$SLOTS")
read -r n_one s_one r_one < <(run_infer one --llm "openai:$A" $HTTP)
read -r n_two s_two r_two < <(run_infer two --llm "openai:$A,$B" $HTTP)

echo "command: N=$N MAX_TOKENS=$MAX_TOKENS THREADS=$THREADS SLOTS=$SLOTS bench/http_bench.sh  ($(nproc) cores)"
printf '%-34s %8s %9s %10s\n' "backend" "prompts" "seconds" "prompts/s"
printf '%-34s %8d %9.2f %10.2f\n' "in-process llama.cpp ($THREADS thr)" "$n_in" "$s_in" "$r_in"
printf '%-34s %8d %9.2f %10.2f\n' "openai: 1 llama-server ($THREADS thr)" "$n_one" "$s_one" "$r_one"
printf '%-34s %8d %9.2f %10.2f\n' "openai: 2 llama-servers ($THREADS thr each)" "$n_two" "$s_two" "$r_two"
awk -v one="$r_one" -v two="$r_two" -v inp="$r_in" 'BEGIN {
  printf "two servers / one server: %.2fx\n", two / one
  printf "HTTP (one server) / in-process: %.2fx (time per prompt: %+.0f%%)\n", one / inp, 100 * (inp / one - 1) }'
echo "per-endpoint summary of the two-server run:"
grep -A3 'endpoints:' "$WORK/two.log" | tail -3
