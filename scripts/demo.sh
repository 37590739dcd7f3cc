#!/bin/sh
# make demo: the résumé extraction task end to end on this machine, with no
# model weights to download: a small Yuan-architecture model is trained from
# scratch (full-parameter) on the Resume NER train split in the extraction
# format, LoRA-fine-tuned (r=8, the seven projections) for one more epoch,
# then it extracts the test split and scores it.
#
# Needs ../shared (the Yuan tokenizer and the Resume NER corpus; outside this
# workspace: tokenizer/tokenizer.model of the IEIT-Yuan/Yuan-2.0 repository
# and ResumeNER/ of the jiesutd/LatticeLSTM repository). Override with
# YF_SHARED=DIR. Output in out/demo (DEMO_OUT). Knobs: DEMO_CONFIG, DEMO_EPOCHS (full
# training epochs), DEMO_LORA_EPOCHS, DEMO_LIMIT (test records scored, 0 = all).
set -e
cd "$(dirname "$0")/.."
SHARED=${YF_SHARED:-../shared}
OUT=${DEMO_OUT:-out/demo}
EPOCHS=${DEMO_EPOCHS:-30}
LORA_EPOCHS=${DEMO_LORA_EPOCHS:-1}
LIMIT=${DEMO_LIMIT:-0}
CONFIG=${DEMO_CONFIG:-scripts/demo-config.json}
Y=build/yuanft
TOK=$SHARED/yuan/tokenizer.model
BMES=$SHARED/data/resume-ner
for f in "$TOK" "$BMES/train.char.bmes" "$BMES/test.char.bmes"; do
  [ -f "$f" ] || { echo "demo: $f not found (set YF_SHARED to the folder with yuan/ and data/resume-ner/)" >&2; exit 1; }
done
mkdir -p "$OUT"
t0=$(date +%s)
echo "== 1/5 data: Resume NER (BMES) -> {input, output} records"
for s in train dev test; do
  $Y data resume-ner --bmes "$BMES/$s.char.bmes" --output-file "$OUT/$s.jsonl" >/dev/null
done
wc -l "$OUT"/train.jsonl "$OUT"/test.jsonl | head -2
echo "== 2/5 model: a small Yuan (scripts/demo-config.json), vocabulary pruned to the corpus' ids"
rm -rf "$OUT/base" "$OUT/full" "$OUT/lora"
$Y init --config "$CONFIG" --output-dir "$OUT/base" --seed 1 --tokenizer "$TOK" \
   --vocab-from "$OUT/train.jsonl,$OUT/dev.jsonl,$OUT/test.jsonl" --prompt-template none
echo "== 3/5 full-parameter training from scratch: $EPOCHS epochs"
$Y train --model "$OUT/base" --data "$OUT/train.jsonl" --prompt-template none --output-dir "$OUT/full" \
   --full-finetune --group-by-length --num-train-epochs "$EPOCHS" --per-device-train-batch-size 32 --learning-rate 2e-3 \
   --warmup-ratio 0.03 --weight-decay 0.01 --logging-steps 20 --save-strategy epoch --seed 1 --bf16
echo "== 4/5 LoRA fine-tuning (r=8, alpha 32, dropout 0.1, the seven projections): $LORA_EPOCHS epoch"
$Y train --model "$OUT/full" --data "$OUT/train.jsonl" --prompt-template none --output-dir "$OUT/lora" \
   --group-by-length --num-train-epochs "$LORA_EPOCHS" --per-device-train-batch-size 16 --learning-rate 1e-3 \
   --lora-r 8 --lora-alpha 32 --lora-dropout 0.1 --logging-steps 20 --save-strategy epoch --seed 1 --bf16
echo "== 5/5 extraction of the test split and scoring"
$Y eval --model "$OUT/full" --adapter "$OUT/lora" --data "$OUT/test.jsonl" --prompt-template none \
   --max-new-tokens 96 --batch 32 --limit "$LIMIT" --report "$OUT/test-report.json" \
   --save-predictions "$OUT/test-predictions.jsonl" | tee "$OUT/test-scores.txt"
t1=$(date +%s)
echo
echo "adapter:     $OUT/lora (adapter_config.json + adapter_model.safetensors, PEFT format)"
echo "loss curves: $OUT/full/loss_curve.svg, $OUT/lora/loss_curve.svg"
echo "report:      $OUT/test-report.json; predictions: $OUT/test-predictions.jsonl"
echo "time:        $((t1 - t0)) s"
f1=$(awk '$1 == "micro" {printf "%.1f", $4 * 100}' "$OUT/test-scores.txt")
echo "demo micro-F1 (test): $f1"
