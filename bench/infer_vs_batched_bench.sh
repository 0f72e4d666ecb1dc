#!/usr/bin/env bash
# Stage 1 throughput: `llm4sbr infer` against llama.cpp's own llama-batched-bench on the same GGUF model,
# threads and parallel sequences, in one run. The comparable figure is decoded tokens per second (prompt
# tokens computed + tokens generated) on the same mix of work: prompt tokens that llm4sbr re-uses from the KV
# cache cost nothing and are not counted, so batched-bench runs with -npp = the prompt tokens llm4sbr
# computed per prompt (their mean) and -ntg = the tokens it generated per prompt. (Against batched-bench at
# the full prompt length the ratio would weigh our generation against its prompt processing, ~20x faster a
# token.) Usage (from the repository root, after `make build`):
#   bench/infer_vs_batched_bench.sh [MODEL.gguf] [SAMPLES] [PARALLEL] [MAX_TOKENS]
set -euo pipefail
BUILD=${BUILD:-build}
MODEL=${1:-$BUILD/tiny-models/tiny-qwen2-chat.gguf}
SAMPLES=${2:-200}
PARALLEL=${3:-8}
NTG=${4:-32}
THREADS=${THREADS:-$(nproc)}
BATCH=${BATCH:-2048}  # tokens per llama_decode call (llm.batch_tokens; batched-bench's -b)
DATA_DIR=${LLM4SBR_DATA_DIR:-../shared/data}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

ninja -C "$BUILD" llama-batched-bench llm4sbr_cli >/dev/null
BBB=$(find "$BUILD" -name llama-batched-bench -type f -perm -u+x | head -1)

echo "== llm4sbr infer: $SAMPLES Beauty test samples x 2 views, parallel $PARALLEL, max_tokens $NTG, threads $THREADS"
LLM4SBR_DATA_DIR=$DATA_DIR "$BUILD/bin/llm4sbr" prepare --dataset beauty --out "$WORK/prep" >/dev/null 2>&1
"$BUILD/bin/llm4sbr" infer --data "$WORK/prep" --llm "llama:$MODEL" --split test --limit "$SAMPLES" --out "$WORK/out" \
  --set llm.parallel="$PARALLEL" --set llm.max_tokens="$NTG" --set llm.threads="$THREADS" --set llm.batch_tokens="$BATCH" 2>&1 | tee "$WORK/infer.log" |
  grep -E "prompts in" || { cat "$WORK/infer.log"; exit 1; }
OURS=$(grep -oE "prompt\+answer tokens \([0-9.]+ tok/s\)" "$WORK/infer.log" | tail -1 | grep -oE "[0-9.]+ tok/s" | cut -d' ' -f1)
PROMPTS=$(grep -oE "\([0-9.]+ prompts/s\)" "$WORK/infer.log" | tail -1 | grep -oE "[0-9.]+")
# The work llm4sbr did per prompt: prompt tokens computed (all minus those re-used from the KV cache) and
# tokens generated, their means for batched-bench's -npp and -ntg.
REUSED=$(grep -oE "[0-9]+ prompt tokens re-used" "$WORK/infer.log" | tail -1 | cut -d' ' -f1)
read -r NPP NTG_DONE < <(python3 -c "
import json
recs=[json.loads(l) for l in open('$WORK/out/test/responses.jsonl')]
n=len(recs)
print(max(1, round((sum(r['prompt_tokens'] for r in recs) - $REUSED)/n)), max(1, round(sum(r['completion_tokens'] for r in recs)/n)))")

echo "== llama-batched-bench on the same work per prompt: npp $NPP (computed), ntg $NTG_DONE, npl $PARALLEL, threads $THREADS"
"$BBB" -m "$MODEL" -c $(( (NPP + NTG_DONE) * PARALLEL + 256 )) -b "$BATCH" -ub 512 -npp "$NPP" -ntg "$NTG_DONE" -npl "$PARALLEL" \
  -t "$THREADS" 2>/dev/null | tee "$WORK/bbb.txt" | grep -E "^\|" || { cat "$WORK/bbb.txt"; exit 1; }
# Last column of the result row: S t/s, total tokens (prompt + generated) per second.
THEIRS=$(grep -E "^\|[[:space:]]+$NPP[[:space:]]+\|" "$WORK/bbb.txt" | tail -1 | awk -F'|' '{gsub(/ /,"",$(NF-1)); print $(NF-1)}')

python3 - "$OURS" "$THEIRS" "$PROMPTS" <<'PY'
import sys
ours, theirs, prompts = map(float, sys.argv[1:4])
print(f"\nllm4sbr infer: {ours:.0f} decoded tok/s ({prompts:.1f} prompts/s); llama-batched-bench: {theirs:.0f} tok/s; "
      f"ratio {ours / theirs:.2f}")
PY
echo "command: bench/infer_vs_batched_bench.sh $MODEL $SAMPLES $PARALLEL $NTG  (THREADS=$THREADS BATCH=$BATCH)"
