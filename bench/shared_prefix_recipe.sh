#!/bin/sh
# The 2-layer recipe rows of docs/shared-prefix.md, short enough for a shared machine's lock:
# `yuanft train --shared-prefix auto` against `off` on the recipe's batches (LoRA r 8, alpha 32,
# dropout 0.1, bf16, B=6, checkpointing; 5 steps: 1 warm-up + 4 timed), the sides taking turns
# (odd rounds auto first, even rounds off first); optionally one PyTorch 2.15 step of the first
# batch; then `yuanft extract` of N test résumés with the prefix cache on and off, taking turns.
# usage (from the repo root, after `make bench` prepared bench/.work; under the lock):
#   flock /work/heavy.lock sh bench/shared_prefix_recipe.sh [ROUNDS] [N]
# knobs: YF (build/yuanft), TORCH_STEP=1 (one PyTorch step, bench/venv), OMP_NUM_THREADS (2:
# the same for every side, whatever the load when each starts). Prints one line a run; logs in
# bench/.work/recipe-quick/.
set -u
cd "$(dirname "$0")/.." || exit 2
ROUNDS=${1:-2}; N=${2:-48}
YF=${YF:-build/yuanft}; W=bench/.work; O=$W/recipe-quick
M=$W/m-2layer-bf16; D=$W/recipe-b6.safetensors; TOK=${SHARED:-../shared}/yuan/tokenizer.model
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
for f in "$M/config.json" "$D" "$W/recipe-test.txt" "$TOK"; do
  [ -f "$f" ] || { echo "missing $f: run make bench (or BENCH_ONLY_RECIPE=1 sh bench/run.sh) first" >&2; exit 2; }
done
mkdir -p "$O"
load() { cut -d' ' -f1-3 /proc/loadavg; }
echo "start $(date -u +%T) load $(load) commit $(git describe --always --dirty 2>/dev/null)"
train() { # MODE ROUND
  rm -rf "$O/out-$1-$2"
  /usr/bin/time -f "%e s %M KB" "$YF" train --model "$M" --data "$D" --output-dir "$O/out-$1-$2" --max-steps 5 \
    --per-device-train-batch-size 6 --save-strategy no --logging-steps 1 --no-shuffle --lora-r 8 --lora-alpha 32 \
    --lora-dropout 0.1 --bf16 --gradient-checkpointing --shared-prefix "$1" > "$O/train-$1-$2.out" 2> "$O/train-$1-$2.err"
  echo "train $1 r$2 $(date -u +%T) load $(load): $(tail -1 "$O/train-$1-$2.out") | $(tail -1 "$O/train-$1-$2.err")"
}
for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then train auto "$r"; train off "$r"; else train off "$r"; train auto "$r"; fi
done
if [ "${TORCH_STEP:-0}" = 1 ]; then
  timeout 600 bench/venv/bin/python bench/torch_ref.py --config yuan2b-2layer --mode train --dtype bf16 --batch 6 \
    --grad-ckpt --data "$D" --warmup 0 --steps 1 > "$O/torch.out" 2> "$O/torch.err"
  echo "torch $(date -u +%T): $(tail -1 "$O/torch.out")"
fi
head -n "$N" "$W/recipe-test.txt" > "$O/x$N.txt"; head -n 16 "$W/recipe-test.txt" > "$O/x16.txt"
XA="--model $M --tokenizer $TOK --prompt-template resume --max-new-tokens 1 --batch 16 --bf16"
# shellcheck disable=SC2086
"$YF" extract $XA --input "$O/x16.txt" --prefix-cache off > /dev/null 2> "$O/x-warm.err"
extract() { # on|off ROUND
  # shellcheck disable=SC2086
  /usr/bin/time -f "%e s %M KB" "$YF" extract $XA --input "$O/x$N.txt" --prefix-cache "$1" > "$O/x-$1-$2.out" 2> "$O/x-$1-$2.err"
  echo "extract $1 r$2 $(date -u +%T) load $(load): $(grep prefill "$O/x-$1-$2.err" | tail -1) | $(tail -1 "$O/x-$1-$2.err")"
}
for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then extract on "$r"; extract off "$r"; else extract off "$r"; extract on "$r"; fi
done
echo "end $(date -u +%T)"
