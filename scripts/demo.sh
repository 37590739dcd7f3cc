#!/bin/sh
# make demo: the résumé extraction task end to end on this machine, with no
# model weights to download: a small Yuan-architecture model is trained from
# scratch (full-parameter) on the Resume NER train split in the extraction
# format, evaluated on the dev split after every epoch from DEMO_EVAL_DELAY on
# (the constrained extraction F1 of the dev sentences: eval_f1) and ended with
# the best epoch's weights (--load-best-model-at-end); then it extracts the
# test split and scores it, unconstrained and with constrained decoding.
# The defaults were chosen on dev F1 among the runs in docs/demo.md; the
# test split picks nothing.
#
# Needs ../shared (the Yuan tokenizer and the Resume NER corpus; outside this
# workspace: tokenizer/tokenizer.model of the IEIT-Yuan/Yuan-2.0 repository
# and ResumeNER/ of the jiesutd/LatticeLSTM repository). Override with
# YF_SHARED=DIR. Output in out/demo (DEMO_OUT). Knobs: DEMO_CONFIG,
# DEMO_EPOCHS (training epochs), DEMO_AUGMENT (mention-replacement variants a
# training sentence, data resume-ner --augment; 0 = none), DEMO_LR, DEMO_BATCH,
# DEMO_SEED, DEMO_METRIC (eval_f1, eval_loss, or none: keep the last epoch),
# DEMO_EVAL_DELAY (first epoch evaluated), DEMO_EVAL_LIMIT (dev sentences
# extracted for eval_f1, 0 = all),
# DEMO_LORA_EPOCHS (a LoRA stage after the full training; 0 = none),
# DEMO_LIMIT (test records scored, 0 = all).
set -e
cd "$(dirname "$0")/.."
SHARED=${YF_SHARED:-../shared}
OUT=${DEMO_OUT:-out/demo}
EPOCHS=${DEMO_EPOCHS:-21}
AUGMENT=${DEMO_AUGMENT:-0}
LR=${DEMO_LR:-1.5e-3}
BATCH=${DEMO_BATCH:-16}
SEED=${DEMO_SEED:-1}
METRIC=${DEMO_METRIC:-eval_f1}
EVAL_DELAY=${DEMO_EVAL_DELAY:-10}
EVAL_LIMIT=${DEMO_EVAL_LIMIT:-0}
LORA_EPOCHS=${DEMO_LORA_EPOCHS:-0}
LIMIT=${DEMO_LIMIT:-0}
CONFIG=${DEMO_CONFIG:-scripts/demo-config.json}
Y=build/yuanft
TOK=$SHARED/yuan/tokenizer.model
BMES=$SHARED/data/resume-ner
for f in "$TOK" "$BMES/train.char.bmes" "$BMES/dev.char.bmes" "$BMES/test.char.bmes"; do
  [ -f "$f" ] || { echo "demo: $f not found (set YF_SHARED to the folder with yuan/ and data/resume-ner/)" >&2; exit 1; }
done
mkdir -p "$OUT"
t0=$(date +%s)
echo "== 1/5 data: Resume NER (BMES) -> {input, output} records (train: + $AUGMENT mention-replacement variants a sentence)"
$Y data resume-ner --bmes "$BMES/train.char.bmes" --output-file "$OUT/train.jsonl" --augment "$AUGMENT" --seed "$SEED" >/dev/null
for s in dev test; do
  $Y data resume-ner --bmes "$BMES/$s.char.bmes" --output-file "$OUT/$s.jsonl" >/dev/null
done
wc -l "$OUT"/train.jsonl "$OUT"/dev.jsonl "$OUT"/test.jsonl | head -3
echo "== 2/5 model: a small Yuan ($CONFIG), vocabulary pruned to the corpus' ids"
rm -rf "$OUT/base" "$OUT/full" "$OUT/lora"
$Y init --config "$CONFIG" --output-dir "$OUT/base" --seed "$SEED" --tokenizer "$TOK" \
   --vocab-from "$OUT/train.jsonl,$OUT/dev.jsonl,$OUT/test.jsonl" --prompt-template none
echo "== 3/5 full-parameter training from scratch: $EPOCHS epochs, model selection on dev ($METRIC from epoch $EVAL_DELAY)"
SELECT=""
if [ "$METRIC" != none ]; then
  SELECT="--eval-data $OUT/dev.jsonl --eval-strategy epoch --eval-delay $EVAL_DELAY --metric-for-best-model $METRIC
          --load-best-model-at-end --per-device-eval-batch-size 32 --eval-limit $EVAL_LIMIT --eval-max-new-tokens 128
          --constrain spans --save-total-limit 2"
fi
# shellcheck disable=SC2086
$Y train --model "$OUT/base" --data "$OUT/train.jsonl" --prompt-template none --output-dir "$OUT/full" \
   --full-finetune --group-by-length --num-train-epochs "$EPOCHS" --per-device-train-batch-size "$BATCH" --learning-rate "$LR" \
   --warmup-ratio 0.03 --weight-decay 0.01 --logging-steps 50 --save-strategy epoch --seed "$SEED" --bf16 $SELECT
MODEL="--model $OUT/full"
if [ "$LORA_EPOCHS" != 0 ]; then
  echo "== 4/5 LoRA fine-tuning (r=8, alpha 32, dropout 0.1, the seven projections): $LORA_EPOCHS epochs"
  $Y train --model "$OUT/full" --data "$OUT/train.jsonl" --prompt-template none --output-dir "$OUT/lora" \
     --group-by-length --num-train-epochs "$LORA_EPOCHS" --per-device-train-batch-size 16 --learning-rate 1e-3 \
     --lora-r 8 --lora-alpha 32 --lora-dropout 0.1 --logging-steps 50 --save-strategy no --seed "$SEED" --bf16
  MODEL="$MODEL --adapter $OUT/lora"
else
  echo "== 4/5 (no LoRA stage: DEMO_LORA_EPOCHS=0)"
fi
echo "== 5/5 extraction of the test split and scoring: unconstrained, then constrained decoding"
# shellcheck disable=SC2086
$Y eval $MODEL --data "$OUT/test.jsonl" --prompt-template none --max-new-tokens 128 --batch 32 --limit "$LIMIT" --bf16 \
   --constrain none --save-predictions "$OUT/test-predictions-free.jsonl" > "$OUT/test-scores-free.txt"
# shellcheck disable=SC2086
$Y eval $MODEL --data "$OUT/test.jsonl" --prompt-template none --max-new-tokens 128 --batch 32 --limit "$LIMIT" --bf16 \
   --constrain spans --report "$OUT/test-report.json" --save-predictions "$OUT/test-predictions.jsonl" \
   | tee "$OUT/test-scores.txt"
t1=$(date +%s)
# "micro P R F1 ..." and the answer counts of one scoring
summary() {
  awk '$1 == "micro" {f = $4 * 100}
       /unparsable answers/ {for (i = 1; i < NF; i++) if ($i == "unparsable") {u = $(i + 2); sub(",", "", u)}}
       /not found in the input/ {n = $NF}
       END {printf "%.1f (unparsable answers %s, predicted strings not found in the input %s)", f, u, n}' "$1"
}
echo
echo "model:       $OUT/full (the best epoch on dev by $METRIC: trainer_state.json best_model_checkpoint)"
echo "loss curves: $OUT/full/loss_curve.svg"
echo "report:      $OUT/test-report.json; predictions: $OUT/test-predictions.jsonl (free: test-predictions-free.jsonl)"
echo "time:        $((t1 - t0)) s"
echo "test micro-F1 unconstrained: $(summary "$OUT/test-scores-free.txt")"
echo "test micro-F1 constrained:   $(summary "$OUT/test-scores.txt")"
f1=$(awk '$1 == "micro" {printf "%.1f", $4 * 100}' "$OUT/test-scores.txt")
echo "demo micro-F1 (test): $f1"
