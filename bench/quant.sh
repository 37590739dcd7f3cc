#!/bin/sh
# bench/quant.sh: quantized weights (docs/quantization.md) against bf16 in the same run, on the
# 24-layer Yuan2-2B shape (bench/configs/yuan2b.json, random weights): load time, decode tokens/s
# against the memory-bandwidth bound (measured read bandwidth / the weight bytes a token reads),
# the LoRA train step (B 6, T 384, gradient checkpointing) and its peak RSS; then the quality
# table (build/bench-quant-quality) and the kernels (build/bench-quant). `make bench` runs it
# (bench/run.sh, unless BENCH_SKIP_24 or BENCH_QUICK); alone: sh bench/quant.sh [MODEL_DIR].
# Writes bench/.work/log/quant.md (and prints it). Heavy (4.2 GB model, ~15 min): run it under
# flock /work/heavy.lock on a shared machine.
# Knobs: QUANT_ROUNDS (decode rounds, default 3), QUANT_SKIP_TRAIN=1, QUANT_SKIP_QUALITY=1,
# QUANT_SKIP_KERNELS=1, QUANT_SKIP_DECODE=1 (the decode rounds and yuanft quantize; their logs of an
# earlier run are reported again), QUANT_IDS (the prompt's ids; default: 64 of bench/torch_ref.py's),
# QUANT_VARIANTS (decode; default "bf16 int8 int8-head q4 q4-head i8x8 i8x8-head q4x8 q4x8-head": x8,
# --int8-activations), QUANT_TRAIN_VARIANTS
# (default "bf16 q4 q4-head"), QUANT_BW (GB/s: skips build/bench-membw).
set -u
cd "$(dirname "$0")/.." || exit 2
W=bench/.work
L=$W/log
mkdir -p "$L"
YF=build/yuanft
PY=/usr/bin/python3
M=${1:-$W/m-24layer-bf16}
DATA=$W/data-24layer.safetensors
ROUNDS=${QUANT_ROUNDS:-3}
OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}
export OMP_NUM_THREADS
say() { echo "bench/quant: $*" >&2; }
run() { p=$1; t=$2; shift 2; "$PY" bench/report.py run "$p" -- timeout "$t" "$@"; }

if [ ! -f "$M/config.json" ]; then
  say "yuanft init bench/configs/yuan2b.json -> $M (bf16)"
  rm -rf "$M"
  "$YF" init --config bench/configs/yuan2b.json --out "$M" --dtype bf16 > "$L/quant-init.log" 2>&1 || { say "init failed ($L/quant-init.log)"; exit 1; }
  # the stamp bench/run.sh's yf_init checks, so that make bench reuses the folder
  echo "$("$YF" --version 2>/dev/null) $(cksum < bench/configs/yuan2b.json) bf16" > "$M/.bench-stamp"
fi
[ "${QUANT_SKIP_TRAIN:-0}" = 1 ] || [ -f "$DATA" ] ||
  "$PY" bench/torch_ref.py --config yuan2b --batch 6 --seq 384 --write-data "$DATA"
ids=${QUANT_IDS:-$("$PY" bench/torch_ref.py --config yuan2b --seq 64 --print-ids)}

say "read bandwidth"
bw=${QUANT_BW:-$(build/bench-membw 1024 2>/dev/null | sed -n 's/.*"read_gb_s": \([0-9.]*\).*/\1/p')}

# decode: one greedy generation of 32 tokens after a 64-token prompt per variant, the variants
# taking turns round after round (a slow spell of the shared machine falls on all of them)
variants=${QUANT_VARIANTS:-bf16 int8 int8-head q4 q4-head i8x8 i8x8-head q4x8 q4x8-head}
flags() {
  case $1 in
    bf16) echo "" ;; int8) echo "--quantize int8" ;; int8-head) echo "--quantize int8 --quantize-head" ;;
    q4) echo "--quantize q4" ;; q4-head) echo "--quantize q4 --quantize-head" ;;
    i8x8) echo "--quantize int8 --int8-activations" ;; i8x8-head) echo "--quantize int8 --quantize-head --int8-activations" ;;
    q4x8) echo "--quantize q4 --int8-activations" ;; q4x8-head) echo "--quantize q4 --quantize-head --int8-activations" ;;
  esac
}
if [ "${QUANT_SKIP_DECODE:-0}" != 1 ]; then
rm -f "$L"/quant-gen-* "$L"/quant-store*
say "warm-up (the model's pages into the page cache)"
run "$L/quant-gen-warmup" 900 "$YF" generate --model "$M" --prompt-ids "$ids" --max-new-tokens 4 --json
for r in $(seq "$ROUNDS"); do
  for v in $variants; do
    say "decode $v, round $r of $ROUNDS"
    # shellcheck disable=SC2046
    run "$L/quant-gen-$v-$r" 900 "$YF" generate --model "$M" --prompt-ids "$ids" --max-new-tokens 32 --json $(flags "$v")
  done
done

# the weights stored quantized (yuanft quantize) and loaded from there
say "yuanft quantize (q4, head) and a load of its output"
rm -rf "$W/m-quant-q4-head"
run "$L/quant-store" 900 "$YF" quantize --model "$M" --output-dir "$W/m-quant-q4-head" --type q4 --quantize-head
run "$L/quant-gen-stored" 900 "$YF" generate --model "$W/m-quant-q4-head" --prompt-ids "$ids" --max-new-tokens 32 --json
fi

rm -f "$L"/quant-train-*
if [ "${QUANT_SKIP_TRAIN:-0}" != 1 ]; then
  for v in ${QUANT_TRAIN_VARIANTS:-bf16 q4 q4-head}; do
    say "train step $v"
    rm -rf "$W/out/quant-train-$v"
    # shellcheck disable=SC2046
    run "$L/quant-train-$v" 1500 "$YF" train --model "$M" --data "$DATA" --output-dir "$W/out/quant-train-$v" \
      --max-steps 2 --per-device-train-batch-size 6 --save-strategy no --logging-steps 1 --no-shuffle \
      --lora-r 8 --lora-alpha 32 --lora-dropout 0.1 --bf16 --gradient-checkpointing $(flags "$v")
  done
fi
rm -f "$L/quant-quality.out"
if [ "${QUANT_SKIP_QUALITY:-0}" != 1 ]; then
  say "quality (build/bench-quant-quality)"
  build/bench-quant-quality > "$L/quant-quality.out" 2> "$L/quant-quality.err"
fi
rm -f "$L/quant-kernels.out"
if [ "${QUANT_SKIP_KERNELS:-0}" != 1 ]; then
  say "kernels (build/bench-quant)"
  build/bench-quant --reps 5 --bw "${bw:-0}" > "$L/quant-kernels.out" 2>&1
fi

"$PY" - "$L" "${bw:-0}" "$ROUNDS" "$variants" > "$L/quant.md" <<'PY'
import json, re, statistics, sys
L, bw, rounds, variants = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split()
def read(p):
    try: return open(p, encoding="utf-8", errors="replace").read()
    except OSError: return ""
def meta(p):
    try: return json.loads(read(p + ".meta"))
    except ValueError: return {}
def gen(p):
    t = read(p + ".err")
    ld = re.search(r"loaded in ([0-9.]+) s; weights read a token ([0-9.]+) MB \(([0-9.]+) MB", t)
    dec = re.search(r"decode: .*\(([0-9.]+) tokens/s\)", t)
    if not (ld and dec) or meta(p).get("rc") != 0: return None
    return dict(load=float(ld.group(1)), mb=float(ld.group(2)), tps=float(dec.group(1)), rss=meta(p).get("peak_rss_mb"))
print(f"Measured read bandwidth (build/bench-membw, 1 GiB, all threads): {bw:.2f} GB/s. Bound: bandwidth / the "
      "weight bytes a token reads. Decode: 32 tokens after a 64-token prompt, greedy, one sequence; "
      f"median of {rounds} rounds, the variants taking turns in each round.\n")
print("| 24-layer Yuan2-2B | load s | weights a token (MB) | decode tokens/s | vs bf16 | bound tokens/s | of bound | peak RSS (MiB) | rounds |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
base = None
for v in variants:
    got = [gen(f"{L}/quant-gen-{v}-{r}") for r in range(1, rounds + 1)]
    ok = [g for g in got if g]
    if not ok:
        print(f"| {v} | n/a | | | | | | | failed: see {L}/quant-gen-{v}-1.err |"); continue
    tps = statistics.median(g["tps"] for g in ok)
    mb = ok[0]["mb"]
    load = statistics.median(g["load"] for g in ok)
    if v == "bf16": base = tps
    bound = bw * 1e3 / mb if bw else 0
    rel = f"{tps / base:.2f}×" if base else "n/a"
    pct = f"{100 * tps / bound:.0f}%" if bound else "n/a"
    rss = max((g["rss"] or 0) for g in ok)
    print(f"| {v} | {load:.2f} | {mb:,.1f} | {tps:.2f} | {rel} | {bound:.2f} | {pct} | {rss:,.0f} | "
          + ", ".join(f"{g['tps']:.2f}" for g in ok) + " |")
st = gen(f"{L}/quant-gen-stored")
qs = re.search(r"loaded and quantized in ([0-9.]+) s, ([0-9.]+) s in all", read(f"{L}/quant-store.out"))
if st and qs:
    print(f"\nyuanft quantize (q4, head): loaded and quantized in {qs.group(1)} s, written in {qs.group(2)} s in all; "
          f"its output loads in {st['load']:.2f} s and decodes at {st['tps']:.2f} tokens/s (one run).")
tr = []
for v in ("bf16", "q4", "q4-head"):
    objs = [json.loads(l) for l in read(f"{L}/quant-train-{v}.out").splitlines() if l.strip().startswith("{") and "train_tokens_per_second" in l]
    if objs:
        o = objs[-1]
        tr.append((v, o.get("steady_tokens_per_second", o["train_tokens_per_second"]), meta(f"{L}/quant-train-{v}").get("peak_rss_mb")))
    elif read(f"{L}/quant-train-{v}.err"):
        tr.append((v, None, None))
if tr:
    print("\nLoRA train step (r 8, the seven projections, dropout 0.1), B 6, T 384, gradient checkpointing, --bf16, "
          "2 steps: the second timed.\n")
    print("| 24-layer Yuan2-2B | tokens/s | vs bf16 | peak RSS (MiB) |\n| --- | ---: | ---: | ---: |")
    b = next((t for v, t, _ in tr if v == "bf16"), None)
    for v, t, rss in tr:
        if t is None: print(f"| {v} | n/a | | | "); continue
        print(f"| {v} | {t:.1f} | {t / b:.2f}× | {rss:,.0f} |" if b else f"| {v} | {t:.1f} | n/a | {rss:,.0f} |")
q = read(f"{L}/quant-quality.out").strip()
if q: print("\n### Quality (build/bench-quant-quality)\n\n" + q)
k = read(f"{L}/quant-kernels.out").strip()
if k: print("\n### Kernels (build/bench-quant --reps 5)\n\n```\n" + k + "\n```")
PY
cat "$L/quant.md"
