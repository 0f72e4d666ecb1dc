#!/usr/bin/env bash
# Saturation of a running `llm4sbr serve` with wrk (Debian package wrk): the real test sessions of a prepared
# dataset as raw ids, k = 20, explanations on, through CONNECTIONS keep-alive connections for SECONDS.
#
#   build/bin/llm4sbr serve --run runs/beauty --port 8080 &
#   bash bench/serve_wrk.sh 8080 runs/beauty/stages/prepare-<key> [CONNECTIONS=16] [SECONDS=10] [THREADS=1]
set -euo pipefail
port=$1 data=$2 connections=${3:-16} seconds=${4:-10} threads=${5:-1}
here=$(cd "$(dirname "$0")" && pwd)
bin=${BIN:-$here/../build/bin}
command -v wrk >/dev/null || { echo "serve_wrk: wrk is missing (apt-get install wrk)" >&2; exit 2; }
bodies=$(mktemp)
trap 'rm -f "$bodies"' EXIT
"$bin/serve_bench" --data "$data" --dump-bodies "$bodies"
echo "wrk -t$threads -c$connections -d${seconds}s --latency, $(wc -l < "$bodies") bodies"
BODIES=$bodies wrk -t"$threads" -c"$connections" -d"${seconds}s" --latency -s "$here/serve_wrk.lua" \
  "http://127.0.0.1:$port/v1/recommend"
