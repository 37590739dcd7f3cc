#!/bin/sh
# Does one LoRA dropout mask for a shared prefix (yuanft train --shared-prefix auto) change the
# loss curve beyond run-to-run noise? (docs/shared-prefix.md) A demo-sized model (scripts/demo-
# config.json) is trained briefly, full-parameter, on the Resume NER records with the résumé
# template; then LoRA runs (r 8, alpha 32, dropout 0.1, batch 6, the template: the recipe's
# setting) with --shared-prefix auto and off, for seeds 1..3 each. Prints the mean loss of every
# 50-step window of each run and compares |auto - off| (same seed) with |off - off| across seeds.
# usage (from the repo root, under the lock): flock /work/heavy.lock sh bench/shared_prefix_dropout.sh
set -eu
cd "$(dirname "$0")/.."
SHARED=${YF_SHARED:-../shared}
Y=build/yuanft
W=bench/.work/dropout
STEPS=${STEPS:-300}
mkdir -p "$W"
TOK=$SHARED/yuan/tokenizer.model
[ -f "$W/train.jsonl" ] || $Y data resume-ner --bmes "$SHARED/data/resume-ner/train.char.bmes" --output-file "$W/train.jsonl" > /dev/null
if [ ! -f "$W/full/config.json" ]; then
  rm -rf "$W/base" "$W/full"
  $Y init --config scripts/demo-config.json --output-dir "$W/base" --seed 1 --tokenizer "$TOK" \
    --vocab-from "$W/train.jsonl" --prompt-template resume > "$W/init.log" 2>&1
  $Y train --model "$W/base" --data "$W/train.jsonl" --output-dir "$W/full" --full-finetune --num-train-epochs 1 \
    --per-device-train-batch-size 32 --learning-rate 2e-3 --warmup-ratio 0.03 --save-strategy no --seed 1 --bf16 \
    > "$W/full.log" 2>&1
fi
for seed in 1 2 3; do
  for mode in auto off; do
    rm -rf "$W/lora-$mode-$seed"
    $Y train --model "$W/full" --data "$W/train.jsonl" --output-dir "$W/lora-$mode-$seed" --max-steps "$STEPS" \
      --per-device-train-batch-size 6 --learning-rate 1e-3 --lora-r 8 --lora-alpha 32 --lora-dropout 0.1 \
      --logging-steps 1 --save-strategy no --seed $seed --bf16 --shared-prefix $mode > "$W/lora-$mode-$seed.log" 2>&1
    echo "seed $seed $mode: $(tail -1 "$W/lora-$mode-$seed.log")"
  done
done
/usr/bin/python3 - "$W" <<'EOF'
import json, sys, statistics as st
W = sys.argv[1]
def curve(mode, seed):
    h = json.load(open(f"{W}/lora-{mode}-{seed}/trainer_state.json"))["log_history"]
    return [e["loss"] for e in h if "loss" in e]
c = {(m, s): curve(m, s) for m in ("auto", "off") for s in (1, 2, 3)}
win = 50
def windows(x):
    return [st.mean(x[i:i + win]) for i in range(0, len(x) - win + 1, win)]
for k, v in c.items():
    print(f"{k[0]:4} seed {k[1]}: window means " + " ".join(f"{w:.4f}" for w in windows(v)))
def dist(a, b):
    return st.mean(abs(x - y) for x, y in zip(windows(a), windows(b)))
same = [dist(c[("auto", s)], c[("off", s)]) for s in (1, 2, 3)]
seeds = [dist(c[(m, a)], c[(m, b)]) for m in ("off", "auto") for a, b in ((1, 2), (1, 3), (2, 3))]
print(f"|auto - off|, same seed, mean over windows: " + ", ".join(f"{x:.4f}" for x in same))
print(f"|seed a - seed b|, same mode: " + ", ".join(f"{x:.4f}" for x in seeds))
for m in ("auto", "off"):
    last = [windows(c[(m, s)])[-1] for s in (1, 2, 3)]
    print(f"last window, {m}: mean {st.mean(last):.4f} (seeds " + ", ".join(f"{x:.4f}" for x in last) + ")")
EOF
