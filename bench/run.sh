#!/bin/sh
# `make bench`: yuanft against our PyTorch reference of the same model and LoRA
# (bench/torch_ref.py) on the same configs, under Debian's PyTorch 1.13
# (/usr/bin/python3) and the current PyTorch from PyPI (bench/venv, made once by
# bench/venv.sh). Prints a table of tokens/s and peak RSS with the ratios and
# writes it to bench/results.md. Logs of every command: bench/.work/log/.
#
# Each yuanft measurement is one function (yf_*); when a command does not exist
# yet or fails, its row says n/a and why, never a made-up number.
#
# Workloads (B batch, T tokens a row):
#   2-layer Yuan2-2B width (D 2048, H 32, I 8192, V 135040): train step with
#     LoRA r8/alpha 32/dropout 0.1 on the seven projections, B 1, T 384;
#     prefill of 384 tokens; decode of 32 tokens after it.
#   24-layer Yuan2-2B: train step B 6, T 384, gradient checkpointing, bf16.
#   golden tiny model (V 320, D 64, L 2): train B 4, T 64; prefill 64; decode 32.
#   constrained decoding: the full mask over the 135,040-row vocabulary a step (one core), and
#     the constraint's share of greedy extraction's wall time (the demo's model when present).
# Environment knobs:
#   BENCH_SKIP_24=1        leave out the 24-layer rows (the long part)
#   BENCH_TORCH_24_MAX_S   skip the 24-layer PyTorch run when its predicted time
#                          exceeds this many seconds (default 600)
#   BENCH_NO_VENV=1        do not create bench/venv (its rows become n/a)
#   BENCH_FRESH=1          re-create the yuanft model folders in bench/.work
#   BENCH_QUICK=1          only the tiny-model rows (a check of this script, a minute)
#   BENCH_ROUNDS=N         rounds of the 2-layer bf16 train step (default 5; see train_rounds)
#   BENCH_ISA=avx512|avx2  both sides held to one instruction set on any x86 CPU (an AMX one
#                          too): yuanft with YF_KERNELS=..., PyTorch with ONEDNN_MAX_CPU_ISA,
#                          ATEN_CPU_CAPABILITY and MKL_ENABLE_INSTRUCTIONS (its fp32 products are
#                          MKL's). Rows: the 2-layer step in interleaved rounds of yuanft exact
#                          (f32 model) and --bf16 (bf16 model) against PyTorch 2.15 fp32 and bf16
#                          autocast; prefill; decode; the 24-layer B=6 step (PyTorch: one timed
#                          step a dtype); kernels and memory bandwidth; the issue's targets
#                          (report.py isa-summary). Written to bench/results-ISA.md, not
#                          results.md. PyTorch 1.13 (whose oneDNN predates some of these caps),
#                          the tiny model and MPI are left out.
#   BENCH_TORCH_BF16=0|1   PyTorch's bf16 autocast rows (default 1; 0 with BENCH_ISA=avx2, where
#                          its LoRA step ran one core for over 13 minutes a round on a Zen 4: the
#                          rows then say n/a, and PyTorch's faster mode is its fp32)
#   BENCH_RECIPE=0         leave out the recipe-workload rows (docs/shared-prefix.md)
#   BENCH_ONLY_RECIPE=1    only the recipe-workload rows (table: bench/.work/results-recipe.md)
#   BENCH_RECIPE_ROUNDS=N  rounds of the 2-layer recipe rows (default 3)
#   BENCH_RECIPE_STEPS=N   2-layer recipe training steps, the first a warm-up (default 9)
#   BENCH_RECIPE_SHAPES=S  which recipe shapes: "2 24" (default; BENCH_SKIP_24=1 drops 24), "2", "24"
#   BENCH_SKIP_QUANT=1     leave out bench/quant.sh (quantized weights on the 24-layer shape, ~15 min)
set -u
cd "$(dirname "$0")/.." || exit 2
START=$(date +%s)
W=bench/.work
L=$W/log
mkdir -p "$L"
R=$W/results.jsonl
: > "$R"
PY=/usr/bin/python3
PYNEW=bench/venv/bin/python
YF=build/yuanft
# every core, as PyTorch's rows (torch.set_num_threads(nproc)), set explicitly
# so that yuanft's busy-CPU check never lowers it in the middle of the table
OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}
export OMP_NUM_THREADS
SHARED=${YF_SHARED:-../shared}
GOLD=$SHARED/golden/yuan-tiny
TORCH_24_MAX_S=${BENCH_TORCH_24_MAX_S:-600}
QUICK=${BENCH_QUICK:-0}
ISA=${BENCH_ISA:-}
OUT_MD=bench/results.md
if [ -n "$ISA" ]; then
  case "$ISA" in
    avx512) isa_flag=avx512f; T_ONEDNN=AVX512_CORE_FP16; T_ATEN=avx512; T_MKL=AVX512_E3 ;;
    avx2) isa_flag=avx2; T_ONEDNN=AVX2; T_ATEN=avx2; T_MKL=AVX2 ;;
    *) echo "bench: BENCH_ISA=$ISA: use avx512 or avx2" >&2; exit 2 ;;
  esac
  if ! grep -qw "$isa_flag" /proc/cpuinfo; then
    echo "bench: BENCH_ISA=$ISA but this CPU has no $isa_flag" >&2; exit 2
  fi
  # AVX512_CORE_FP16: every AVX-512 extension the CPU has (VNNI, BF16, FP16), no AMX;
  # MKL's AVX512_E3: AVX-512 with VNNI and BF16, no AMX
  export YF_KERNELS=$ISA ONEDNN_MAX_CPU_ISA=$T_ONEDNN DNNL_MAX_CPU_ISA=$T_ONEDNN ATEN_CPU_CAPABILITY=$T_ATEN \
    MKL_ENABLE_INSTRUCTIONS=$T_MKL
  OUT_MD=bench/results-$ISA.md
fi
TORCH_BF16=${BENCH_TORCH_BF16:-1}
[ "$ISA" = avx2 ] && TORCH_BF16=${BENCH_TORCH_BF16:-0}
TORCH_BF16_NA="left out: BENCH_TORCH_BF16=0 (with BENCH_ISA=avx2 by default: bf16 autocast without AVX512-BF16 ran over 13 minutes a round)"
# torch_skip DT: whether PyTorch's rows of dtype DT are left out
torch_skip() { [ "$1" = bf16 ] && [ "$TORCH_BF16" = 0 ]; }
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)

say() { echo "bench: $*" >&2; }
rep() { "$PY" bench/report.py "$@"; }
# run PREFIX TIMEOUT CMD...: output to PREFIX.out/.err; exit status, wall time, peak RSS to PREFIX.meta
run() { p=$1; t=$2; shift 2; rep run "$p" -- timeout "$t" "$@"; }
elapsed() { echo $(( $(date +%s) - START )); }
slug() { printf '%s' "$1" | tr -c 'a-zA-Z0-9-' '_'; }

# ---------------------------------------------------------------- PyTorch side

# torch_py_ok PY: does this interpreter have torch and numpy?
torch_py_ok() { [ -x "$1" ] && "$1" -c 'import torch, numpy' 2>/dev/null; }

# torch_selftest PY NAME: the reference must reproduce the golden files before we time it
torch_selftest() {
  if [ ! -d "$GOLD" ]; then echo "golden files not found ($GOLD)"; return; fi
  if "$1" bench/torch_ref.py --selftest --golden "$GOLD" > "$L/selftest-$2.out" 2>&1; then
    echo "selftest passed"
  else
    echo "selftest FAILED (see $L/selftest-$2.out)"
  fi
}

# torch_row PY NAME WORKLOAD DTYPE NOTE ARGS...: one measurement in a fresh process
torch_row() {
  py=$1; name=$2; wl=$3; dt=$4; note=$5; shift 5
  tag=torch-$name-$(slug "$wl-$dt")
  if torch_skip "$dt"; then
    rep row "$R" --workload "$wl" --impl "PyTorch ($name)" --dtype "$dt" --na "$TORCH_BF16_NA"
    return
  fi
  if ! torch_py_ok "$py"; then
    rep row "$R" --workload "$wl" --impl "PyTorch ($name)" --dtype "$dt" --na "$py has no torch"
    return
  fi
  say "$name: $wl ($dt) [$(elapsed) s]"
  run "$L/$tag" 1500 "$py" bench/torch_ref.py --dtype "$dt" "$@"
  rep row "$R" --workload "$wl" --impl "$name" --dtype "$dt" --torch "$L/$tag" --note "$note"
}

# torch_suite PY NAME SELFTEST_NOTE: every PyTorch measurement under one interpreter but the
# bf16 2-layer train step (train_rounds)
torch_suite() {
  py=$1; name=$2; st=$3
  for dt in bf16 fp32; do
    if [ "$QUICK" != 1 ]; then
      [ $dt = fp32 ] && torch_row "$py" "$name" "2-layer train B1 T384" $dt "$st" --config yuan2b-2layer --mode train --batch 1 --seq 384 --warmup 3 --steps 5
      torch_row "$py" "$name" "2-layer prefill T384" $dt "" --config yuan2b-2layer --mode prefill --seq 384 --warmup 1 --steps 3
      torch_row "$py" "$name" "2-layer decode 32 after 384" $dt "" --config yuan2b-2layer --mode decode --seq 384 --new-tokens 32 --warmup 1 --steps 2
    fi
    torch_row "$py" "$name" "tiny train B4 T64" $dt "$st" --config tiny --mode train --batch 4 --seq 64 --warmup 3 --steps 20
    torch_row "$py" "$name" "tiny prefill T64" $dt "" --config tiny --mode prefill --seq 64 --warmup 3 --steps 20
    torch_row "$py" "$name" "tiny decode 32 after 64" $dt "" --config tiny --mode decode --seq 64 --new-tokens 32 --warmup 2 --steps 5
  done
}

# torch_24 PY NAME: one warm-up step and one timed 24-layer step, only when predicted to fit
# the time budget. Prediction: 2 x (the 2-layer bf16 train step x 120) + 40 s of init. The FLOP
# ratio is ~40x (6x the tokens, ~6.6x the work a token with recomputation); measured on the
# shared 2-core machine: ~160x with PyTorch 1.13, ~75x with 2.15 (its first step 1.7x slower).
torch_24() {
  py=$1; name=$2; dt=${3:-bf16}; wl="24-layer train B6 T384 ckpt"
  if torch_skip "$dt"; then rep row "$R" --workload "$wl" --impl "PyTorch ($name)" --dtype "$dt" --na "$TORCH_BF16_NA"; return; fi
  torch_py_ok "$py" || { rep row "$R" --workload "$wl" --impl "PyTorch ($name)" --dtype "$dt" --na "$py has no torch"; return; }
  rounds="$L/torch-$name-train-round"
  [ -n "$ISA" ] && rounds="$L/torch-$name-$dt-train-round"
  # the median round of train_rounds' (isa_rounds') 2-layer step of this dtype
  s2=$("$PY" -c "import json,sys
v=[]
for p in sys.argv[1:]:
    try: lines=open(p).read().splitlines()
    except OSError: continue
    for l in lines:
        try: o=json.loads(l)
        except ValueError: continue
        if 'seconds_per_step' in o: v.append(o['seconds_per_step'])
v.sort()
print(v[len(v)//2] if v else '')" "$rounds"*.out 2>/dev/null | tail -1)
  pred=$("$PY" -c "import sys; s=sys.argv[1]; print(int(float(s)*240+40) if s else 99999)" "${s2:-}")
  if [ "$pred" -gt "$TORCH_24_MAX_S" ]; then
    rep row "$R" --workload "$wl" --impl "PyTorch ($name)" --dtype "$dt" \
      --na "skipped: predicted ${pred} s > ${TORCH_24_MAX_S} s (BENCH_TORCH_24_MAX_S)"
    return
  fi
  torch_row "$py" "$name" "$wl" "$dt" "predicted ${pred} s" --config yuan2b --mode train --batch 6 --seq 384 --grad-ckpt --warmup 1 --steps 1
}

# ---------------------------------------------------------------- yuanft side

# yf_has CMD: is the subcommand implemented (its --help succeeds)?
yf_has() { [ -x "$YF" ] && "$YF" "$1" --help > /dev/null 2>&1; }
yf_missing() { if [ -x "$YF" ]; then echo "yuanft $1 not available yet"; else echo "$YF not built"; fi; }

# yf_init CONFIG DIR DTYPE: a random model folder, kept between runs (BENCH_FRESH=1 re-creates)
yf_init() {
  cfg=$1; dir=$2; dt=$3
  stamp="$("$YF" --version 2>/dev/null) $(cksum < "$cfg") $dt"
  if [ "${BENCH_FRESH:-0}" != 1 ] && [ -f "$dir/.bench-stamp" ] && [ "$(cat "$dir/.bench-stamp")" = "$stamp" ]; then
    return 0
  fi
  yf_has init || return 1
  rm -rf "$dir"
  say "yuanft init $cfg -> $dir ($dt) [$(elapsed) s]"
  run "$L/init-$(basename "$dir")" 900 "$YF" init --config "$cfg" --output-dir "$dir" --dtype "$dt" || return 1
  echo "$stamp" > "$dir/.bench-stamp"
}

# yf_train_ok WORKLOAD DTYPE MODEL: can yuanft train run it? (if not, its n/a row is written)
yf_train_ok() {
  if ! yf_has train; then rep row "$R" --workload "$1" --impl yuanft --dtype "$2" --na "$(yf_missing train)"; return 1; fi
  if [ ! -f "$3/config.json" ]; then rep row "$R" --workload "$1" --impl yuanft --dtype "$2" --na "no model folder (yuanft init failed: $L/)"; return 1; fi
}

# yf_train_run TAG MODEL DATA B STEPS DTYPE [EXTRA...]: a LoRA training run of STEPS optimizer
# steps, logged to $L/TAG
yf_train_run() {
  tag=$1; model=$2; data=$3; b=$4; steps=$5; dt=$6; shift 6
  flag=""; [ "$dt" = bf16 ] && flag=--bf16
  rm -rf "$W/out/$tag"
  # shellcheck disable=SC2086
  run "$L/$tag" 1500 "$YF" train --model "$model" --data "$data" --output-dir "$W/out/$tag" \
    --max-steps "$steps" --per-device-train-batch-size "$b" --save-strategy no --logging-steps 1 \
    --no-shuffle --lora-r 8 --lora-alpha 32 --lora-dropout 0.1 $flag "$@"
}

# yf_train WORKLOAD MODEL DATA B STEPS DTYPE [EXTRA...]: one training run, one row
yf_train() {
  wl=$1; model=$2; data=$3; b=$4; steps=$5; dt=$6; shift 6
  yf_train_ok "$wl" "$dt" "$model" || return
  say "yuanft: $wl ($dt) [$(elapsed) s]"
  tag=yuanft-$(slug "$wl-$dt")
  yf_train_run "$tag" "$model" "$data" "$b" "$steps" "$dt" "$@"
  rep row "$R" --workload "$wl" --impl yuanft --dtype "$dt" --train "$L/$tag"
}

# yf_generate WORKLOAD_PREFILL WORKLOAD_DECODE MODEL DTYPE CONFIG PROMPT_LEN NEW: one greedy
# generation; its prefill and decode tokens/s (printed on stderr) make two rows
yf_generate() {
  wlp=$1; wld=$2; model=$3; dt=$4; cfgname=$5; plen=$6; new=$7
  tag=yuanft-gen-$(slug "$wlp-$dt")
  if ! yf_has generate; then
    for wl in "$wlp" "$wld"; do rep row "$R" --workload "$wl" --impl yuanft --dtype "$dt" --na "$(yf_missing generate)"; done
    return
  fi
  if [ ! -f "$model/config.json" ]; then
    for wl in "$wlp" "$wld"; do rep row "$R" --workload "$wl" --impl yuanft --dtype "$dt" --na "no model folder"; done
    return
  fi
  flag=""
  [ "$dt" = bf16 ] && "$YF" generate --help 2>&1 | grep -q -- '--bf16' && flag=--bf16
  ids=$("$PY" bench/torch_ref.py --config "$cfgname" --seq "$plen" --print-ids)
  say "yuanft: generate $plen + $new ($dt) [$(elapsed) s]"
  # a warm-up run first, as PyTorch's rows have a warm-up generation: the first process after
  # the others had read the 2-layer prefill at 440-830 tokens/s, the next ones at 2,250-2,530
  # (the model's pages and 2 MiB pages for its packs found cold, not the work itself)
  # shellcheck disable=SC2086
  run "$L/$tag-warmup" 900 "$YF" generate --model "$model" --prompt-ids "$ids" --max-new-tokens "$new" --json $flag
  # shellcheck disable=SC2086
  run "$L/$tag" 900 "$YF" generate --model "$model" --prompt-ids "$ids" --max-new-tokens "$new" --json $flag
  rep row "$R" --workload "$wlp" --impl yuanft --dtype "$dt" --generate "$L/$tag" --kind prefill --note "after 1 warm-up run"
  rep row "$R" --workload "$wld" --impl yuanft --dtype "$dt" --generate "$L/$tag" --kind decode --note "after 1 warm-up run"
}

# yf_mpi: data-parallel training, 1 process x 2 threads against 2 processes x 1 thread
# (placeholder until yuanft has MPI: detected by 'mpi' in yuanft train --help)
yf_mpi() {
  wl="MPI: 2-layer train B2 T384"
  if ! yf_has train || ! "$YF" train --help 2>&1 | grep -qi mpi || ! command -v mpirun > /dev/null; then
    for impl in "yuanft 1 process x 2 threads" "yuanft 2 processes x 1 thread"; do
      rep row "$R" --workload "$wl" --impl "$impl" --dtype bf16 --na "yuanft has no MPI support yet (or mpirun is missing)"
    done
    return
  fi
  say "yuanft: $wl [$(elapsed) s]"
  data=$W/data-2layer.safetensors
  run "$L/mpi-1x2" 1500 env OMP_NUM_THREADS=2 "$YF" train --model "$W/m-2layer-bf16" --data "$data" --output-dir "$W/out/mpi-1x2" \
    --max-steps 2 --per-device-train-batch-size 2 --save-strategy no --no-shuffle --bf16
  rep row "$R" --workload "$wl" --impl "yuanft 1 process x 2 threads" --dtype bf16 --train "$L/mpi-1x2"
  run "$L/mpi-2x1" 1500 mpirun --allow-run-as-root --oversubscribe -np 2 -x OMP_NUM_THREADS=1 \
    "$YF" train --model "$W/m-2layer-bf16" --data "$data" --output-dir "$W/out/mpi-2x1" \
    --max-steps 2 --per-device-train-batch-size 1 --save-strategy no --no-shuffle --bf16
  rep row "$R" --workload "$wl" --impl "yuanft 2 processes x 1 thread" --dtype bf16 --train "$L/mpi-2x1" \
    --note "per-process batch 1 (global 2)"
}

# yf_prepare: the token data of every workload and the 2-layer model folders
yf_prepare() {
  "$PY" bench/torch_ref.py --config yuan2b-2layer --batch 8 --seq 384 --write-data "$W/data-2layer.safetensors"
  "$PY" bench/torch_ref.py --config tiny --batch 128 --seq 64 --write-data "$W/data-tiny.safetensors"
  "$PY" bench/torch_ref.py --config yuan2b --batch 6 --seq 384 --write-data "$W/data-24layer.safetensors"
  if [ "$QUICK" != 1 ]; then
    yf_init bench/configs/yuan2b-2layer.json "$W/m-2layer-bf16" bf16
    yf_init bench/configs/yuan2b-2layer.json "$W/m-2layer-f32" f32
  fi
}

# train_rounds ST_DEBIAN ST_PYPI: the acceptance workload of issue #7, the 2-layer bf16 train
# step, in ROUNDS rounds: each round runs yuanft, then PyTorch 1.13, then the PyPI PyTorch,
# each in a fresh process, so that a slow or quick spell of this shared machine falls on all
# three alike (measured one after the other, minutes apart, PyTorch 1.13 alone read from 224
# to 282 tokens/s). Each row is the median round; its note lists every round.
ROUNDS=${BENCH_ROUNDS:-5}
train_rounds() {
  wl="2-layer train B1 T384"; m=$W/m-2layer-bf16
  targs="--config yuan2b-2layer --mode train --batch 1 --seq 384 --warmup 3 --steps 5"
  yf_ok=1; yf_train_ok "$wl" bf16 "$m" || yf_ok=0
  yl=""; dl=""; pl=""
  rm -f "$L"/*-train-round*.*   # an earlier run's rounds (it may have had more)
  for i in $(seq "$ROUNDS"); do
    if [ $yf_ok = 1 ]; then
      say "yuanft: $wl (bf16), round $i of $ROUNDS [$(elapsed) s]"
      yf_train_run "yuanft-train-round$i" "$m" "$W/data-2layer.safetensors" 1 6 bf16
      yl="$yl --train $L/yuanft-train-round$i"
    fi
    for side in Debian PyPI; do
      py=$PY; [ $side = PyPI ] && py=$PYNEW
      torch_py_ok "$py" || continue
      say "$side: $wl (bf16), round $i of $ROUNDS [$(elapsed) s]"
      # shellcheck disable=SC2086
      run "$L/torch-$side-train-round$i" 1500 "$py" bench/torch_ref.py --dtype bf16 $targs
      if [ $side = Debian ]; then dl="$dl --torch $L/torch-$side-train-round$i"; else pl="$pl --torch $L/torch-$side-train-round$i"; fi
    done
  done
  # shellcheck disable=SC2086
  [ $yf_ok = 1 ] && rep row "$R" --workload "$wl" --impl yuanft --dtype bf16 $yl
  for side in Debian PyPI; do
    py=$PY; l=$dl; st=$1
    [ $side = PyPI ] && py=$PYNEW && l=$pl && st=$2
    if [ -z "$l" ]; then
      rep row "$R" --workload "$wl" --impl "PyTorch ($side)" --dtype bf16 --na "$py has no torch"
    else
      # shellcheck disable=SC2086
      rep row "$R" --workload "$wl" --impl "$side" --dtype bf16 --note "$st" $l
    fi
  done
}

# isa_rounds ST_PYPI: BENCH_ISA's 2-layer step in ROUNDS rounds; each round runs yuanft exact
# (f32 model), yuanft --bf16 (bf16 model), PyTorch 2.15 fp32 and bf16 autocast, each in a
# fresh process (as train_rounds); each row the median round.
isa_rounds() {
  wl="2-layer train B1 T384"
  targs="--config yuan2b-2layer --mode train --batch 1 --seq 384 --warmup 3 --steps 5"
  rm -f "$L"/*-train-round*.*
  okx=1; yf_train_ok "$wl" fp32 "$W/m-2layer-f32" || okx=0
  okb=1; yf_train_ok "$wl" bf16 "$W/m-2layer-bf16" || okb=0
  yx=""; yb=""; px=""; pb=""
  for i in $(seq "$ROUNDS"); do
    for dt in fp32 bf16; do
      m=$W/m-2layer-bf16; ok=$okb
      [ $dt = fp32 ] && m=$W/m-2layer-f32 && ok=$okx
      [ "$ok" = 1 ] || continue
      say "yuanft: $wl ($dt, $ISA), round $i of $ROUNDS [$(elapsed) s]"
      yf_train_run "yuanft-$dt-train-round$i" "$m" "$W/data-2layer.safetensors" 1 6 $dt
      if [ $dt = fp32 ]; then yx="$yx --train $L/yuanft-$dt-train-round$i"; else yb="$yb --train $L/yuanft-$dt-train-round$i"; fi
    done
    torch_py_ok "$PYNEW" || continue
    for dt in fp32 bf16; do
      torch_skip $dt && continue
      say "PyPI: $wl ($dt, $ISA), round $i of $ROUNDS [$(elapsed) s]"
      # shellcheck disable=SC2086
      run "$L/torch-PyPI-$dt-train-round$i" 1500 "$PYNEW" bench/torch_ref.py --dtype $dt $targs
      if [ $dt = fp32 ]; then px="$px --torch $L/torch-PyPI-$dt-train-round$i"; else pb="$pb --torch $L/torch-PyPI-$dt-train-round$i"; fi
    done
  done
  # shellcheck disable=SC2086
  [ -n "$yx" ] && rep row "$R" --workload "$wl" --impl yuanft --dtype fp32 --note "exact, f32 model" $yx
  # shellcheck disable=SC2086
  [ -n "$yb" ] && rep row "$R" --workload "$wl" --impl yuanft --dtype bf16 --note "--bf16, bf16 model" $yb
  if [ -z "$px" ]; then
    for dt in fp32 bf16; do rep row "$R" --workload "$wl" --impl "PyTorch (PyPI)" --dtype $dt --na "$PYNEW has no torch"; done
  else
    # shellcheck disable=SC2086
    rep row "$R" --workload "$wl" --impl PyPI --dtype fp32 --note "$1" $px
    if [ -n "$pb" ]; then
      # shellcheck disable=SC2086
      rep row "$R" --workload "$wl" --impl PyPI --dtype bf16 --note "$1" $pb
    else
      rep row "$R" --workload "$wl" --impl "PyTorch (PyPI)" --dtype bf16 --na "$TORCH_BF16_NA"
    fi
  fi
}

# isa_suite ST_PYPI: BENCH_ISA's rows besides the rounds
isa_suite() {
  for dt in fp32 bf16; do
    m=$W/m-2layer-bf16; [ $dt = fp32 ] && m=$W/m-2layer-f32
    yf_generate "2-layer prefill T384" "2-layer decode 32 after 384" "$m" $dt yuan2b-2layer 384 32
    torch_row "$PYNEW" PyPI "2-layer prefill T384" $dt "" --config yuan2b-2layer --mode prefill --seq 384 --warmup 1 --steps 3
    torch_row "$PYNEW" PyPI "2-layer decode 32 after 384" $dt "" --config yuan2b-2layer --mode decode --seq 384 --new-tokens 32 --warmup 1 --steps 2
  done
  if [ "${BENCH_SKIP_24:-0}" != 1 ]; then
    yf_24
    torch_24 "$PYNEW" PyPI fp32
    torch_24 "$PYNEW" PyPI bf16
  fi
}

yf_suite() {
  for dt in bf16 fp32; do
    m=$W/m-2layer-bf16; tiny=$GOLD/bf16
    [ $dt = fp32 ] && m=$W/m-2layer-f32 && tiny=$GOLD
    if [ "$QUICK" != 1 ]; then
      [ $dt = fp32 ] && yf_train "2-layer train B1 T384" "$m" "$W/data-2layer.safetensors" 1 6 $dt
      yf_generate "2-layer prefill T384" "2-layer decode 32 after 384" "$m" $dt yuan2b-2layer 384 32
    fi
    # the golden tiny model: its fp32 weights, and the bf16-rounded copy for the bf16 rows
    yf_train "tiny train B4 T64" "$tiny" "$W/data-tiny.safetensors" 4 24 $dt
    yf_generate "tiny prefill T64" "tiny decode 32 after 64" "$tiny" $dt tiny 64 32
  done
  [ "$QUICK" != 1 ] && yf_mpi
}

# yf_serve: `yuanft serve` under 1, 4 and 16 concurrent clients (bench/serve_bench.sh) on the
# 2-layer bf16 model and on the demo model's shape (scripts/demo-config.json, its vocabulary
# pruned to the Resume NER corpus as make demo does; untrained: the speed is the same); the
# golden tiny model only with BENCH_QUICK=1
yf_serve() {
  tok=$SHARED/yuan/tokenizer.model
  {
    echo "| model | load | generated tokens/s | vs 1 client | time to first token p50 / p95 (ms) | time per token p50 / p95 (ms) | decode step / rows; prefill share of model time | errors |"
    echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    if [ "$QUICK" = 1 ]; then
      sh bench/serve_bench.sh "tiny (golden)" "$GOLD" "$L" --tokenizer "$tok"
    else
      say "yuanft serve: 2-layer bf16 [$(elapsed) s]"
      SERVE_ID_MAX=20000 sh bench/serve_bench.sh "2-layer bf16" "$W/m-2layer-bf16" "$L" --tokenizer "$tok" --bf16
      demo=$W/m-demo
      if [ ! -f "$demo/config.json" ] && [ -f "$SHARED/data/resume-ner/train.char.bmes" ]; then
        "$YF" data resume-ner --bmes "$SHARED/data/resume-ner/train.char.bmes" --output-file "$W/demo-train.jsonl" > "$L/demo-data.log" 2>&1
        "$YF" init --config scripts/demo-config.json --output-dir "$demo" --seed 1 --tokenizer "$tok" \
          --vocab-from "$W/demo-train.jsonl" --prompt-template none > "$L/demo-init.log" 2>&1
      fi
      say "yuanft serve: demo model [$(elapsed) s]"
      SERVE_ID_MAX=20000 sh bench/serve_bench.sh "demo (4 layers, D 256)" "$demo" "$L" --tokenizer "$tok"
    fi
  } > "$L/serve.md"
}

yf_24() {
  wl="24-layer train B6 T384 ckpt"
  if yf_init bench/configs/yuan2b.json "$W/m-24layer-bf16" bf16; then
    # two optimizer steps (~35 s each), the second timed, as PyTorch's 1 warm-up + 1 timed
    yf_train "$wl" "$W/m-24layer-bf16" "$W/data-24layer.safetensors" 6 2 bf16 --gradient-checkpointing
  else
    rep row "$R" --workload "$wl" --impl yuanft --dtype bf16 --na "$(yf_missing init) (or init failed: $L/)"
  fi
}

# ---------------------------------------------------------------- the recipe workload

# The fine-tuning recipe's real data (docs/shared-prefix.md): the 3,821 Resume NER training
# records tokenised with the résumé template, batches of 6 in a shuffled epoch's order, each
# padded to its own longest row; yuanft --shared-prefix auto against off and PyTorch with the HF
# Trainer's padded batches. Then extraction of the test résumés with the prefix cache on / off.
RECIPE_ROUNDS=${BENCH_RECIPE_ROUNDS:-3}
RECIPE_STEPS=${BENCH_RECIPE_STEPS:-9}
RECIPE_SHAPES=${BENCH_RECIPE_SHAPES:-2 24}
RDATA=$W/recipe-b6.safetensors
RTOK=$SHARED/yuan/tokenizer.model

# recipe_prepare: records, tokens, the sampled batches (RECIPE_STEPS: 1 warm-up + the timed) and the test inputs
recipe_prepare() {
  [ -f "$RTOK" ] || { echo "no $RTOK"; return 1; }
  { "$YF" data resume-ner --bmes "$SHARED/data/resume-ner/train.char.bmes" --output-file "$W/recipe-train.jsonl" &&
    "$YF" data tokenize --data "$W/recipe-train.jsonl" --tokenizer "$RTOK" --prompt-template resume \
      --output-file "$W/recipe-train.safetensors" &&
    "$PY" bench/torch_ref.py --recipe-batches "$W/recipe-train.safetensors" --write-data "$RDATA" --batch 6 --steps "$RECIPE_STEPS" > "$W/recipe-stats.json" &&
    "$YF" data resume-ner --bmes "$SHARED/data/resume-ner/test.char.bmes" --output-file "$W/recipe-test.jsonl" &&
    "$PY" -c "import json,sys
for l in open(sys.argv[1], encoding='utf-8'): print(json.loads(l)['input'])" "$W/recipe-test.jsonl" > "$W/recipe-test.txt"
  } > "$L/recipe-prepare.log" 2>&1 || { echo "preparing the recipe data failed (see $L/recipe-prepare.log)"; return 1; }
}

rstat() { "$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$W/recipe-stats.json" "$1"; }

# recipe_train WORKLOAD MODEL TORCH_CONFIG YF_STEPS TORCH_STEPS ROUNDS: auto, off and PyTorch (PyPI)
# taking turns in each round; every row: the padded tokens of the steps after the first / their
# seconds (the HF Trainer's count), and the recipe's 3 epochs projected from it
recipe_train() {
  wl=$1; m=$2; tcfg=$3; steps=$4; tsteps=$5; rounds=$6
  for mode in auto off; do yf_train_ok "$wl" bf16 "$m" || return; done
  ep=$(rstat epoch_padded_positions)
  al=""; ol=""; tl=""
  for i in $(seq "$rounds"); do
    for mode in auto off; do
      tag=recipe-$(slug "$wl")-$mode-r$i
      say "yuanft --shared-prefix $mode: $wl, round $i of $rounds [$(elapsed) s]"
      yf_train_run "$tag" "$m" "$RDATA" 6 "$steps" bf16 --gradient-checkpointing --shared-prefix $mode
      if [ $mode = auto ]; then al="$al --train $L/$tag"; else ol="$ol --train $L/$tag"; fi
    done
    if torch_py_ok "$PYNEW"; then
      tag=recipe-$(slug "$wl")-torch-r$i
      say "PyPI: $wl, round $i of $rounds [$(elapsed) s]"
      run "$L/$tag" 3000 "$PYNEW" bench/torch_ref.py --config "$tcfg" --mode train --dtype bf16 --batch 6 --grad-ckpt \
        --data "$RDATA" --warmup 1 --steps "$tsteps"
      tl="$tl --torch $L/$tag"
    fi
  done
  note="$(rstat timed_padded_positions) padded tokens timed, $(rstat timed_shared_positions) computed with the prefix shared"
  # shellcheck disable=SC2086
  rep row "$R" --workload "$wl" --impl "yuanft --shared-prefix auto" --dtype bf16 --warm --project "$ep" --note "$note" $al
  # shellcheck disable=SC2086
  rep row "$R" --workload "$wl" --impl "yuanft --shared-prefix off" --dtype bf16 --warm --project "$ep" $ol
  if [ -n "$tl" ]; then
    # shellcheck disable=SC2086
    rep row "$R" --workload "$wl" --impl "PyPI, padded batches" --dtype bf16 --project "$ep" $tl
  else
    rep row "$R" --workload "$wl" --impl "PyTorch (PyPI)" --dtype bf16 --na "$PYNEW has no torch"
  fi
}

# recipe_extract WORKLOAD MODEL N: extraction of the first N test résumés (template, greedy, 1 new
# token: the prefill is the work), the prefix cache on and off, after a warm-up run of 16
recipe_extract() {
  wl=$1; m=$2; n=$3
  if ! yf_has extract || [ ! -f "$m/config.json" ]; then
    rep row "$R" --workload "$wl" --impl yuanft --dtype bf16 --na "$(yf_missing extract) (or no model folder)"; return
  fi
  head -n "$n" "$W/recipe-test.txt" > "$W/recipe-test-$n.txt"
  head -n 16 "$W/recipe-test.txt" > "$W/recipe-test-16.txt"
  xa="--model $m --tokenizer $RTOK --prompt-template resume --max-new-tokens 1 --batch 16 --bf16"
  # shellcheck disable=SC2086
  run "$L/recipe-extract-warmup" 1800 "$YF" extract $xa --input "$W/recipe-test-16.txt" --prefix-cache off
  for c in on off; do
    tag=recipe-$(slug "$wl")-$c
    say "yuanft extract --prefix-cache $c: $wl [$(elapsed) s]"
    # shellcheck disable=SC2086
    run "$L/$tag" 3000 "$YF" extract $xa --input "$W/recipe-test-$n.txt" --prefix-cache $c
    rep row "$R" --workload "$wl" --impl "yuanft --prefix-cache $c" --dtype bf16 --generate "$L/$tag" --kind prefill \
      --prefill-time --note "$n résumés, batch 16"
  done
}

recipe_suite() {
  if ! msg=$(recipe_prepare); then
    rep row "$R" --workload "recipe workload" --impl yuanft --dtype bf16 --na "$msg"; return
  fi
  case " $RECIPE_SHAPES " in *" 2 "*)
    yf_init bench/configs/yuan2b-2layer.json "$W/m-2layer-bf16" bf16
    recipe_train "recipe 2-layer train B6 ckpt" "$W/m-2layer-bf16" yuan2b-2layer "$RECIPE_STEPS" $((RECIPE_STEPS - 1)) "$RECIPE_ROUNDS"
    recipe_extract "recipe extraction 2-layer, prefill" "$W/m-2layer-bf16" 96 ;;
  esac
  case " $RECIPE_SHAPES " in *" 24 "*)
    [ "${BENCH_SKIP_24:-0}" = 1 ] && return
    if yf_init bench/configs/yuan2b.json "$W/m-24layer-bf16" bf16; then
      # 1 warm-up and 1 timed step each (~a minute a step on 2 cores)
      recipe_train "recipe 24-layer train B6 ckpt" "$W/m-24layer-bf16" yuan2b 2 1 1
      recipe_extract "recipe extraction 24-layer, prefill" "$W/m-24layer-bf16" 48
    fi ;;
  esac
}

# ---------------------------------------------------------------- the run

say "start; load average $LOAD0 (the machine may be shared: numbers move with it)"
venv_note=""
if [ "${BENCH_NO_VENV:-0}" != 1 ]; then
  sh bench/venv.sh > "$L/venv.log" 2>&1 || venv_note="bench/venv could not be created (see $L/venv.log)"
else
  venv_note="BENCH_NO_VENV=1"
fi
[ -n "$venv_note" ] && say "$venv_note"

if [ "${BENCH_ONLY_RECIPE:-0}" = 1 ]; then
  recipe_suite
  { echo "# yuanft recipe-workload benchmarks"; echo
    echo "BENCH_ONLY_RECIPE=1 on $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git describe --always --dirty 2>/dev/null || echo '?');"
    echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; load average $LOAD0 at the start,"
    echo "$(cut -d' ' -f1-3 /proc/loadavg) at the end; PyTorch $("$PYNEW" -c 'import torch; print(torch.__version__)' 2>/dev/null || echo n/a) (bench/venv)."
    echo "Data: $(cat "$W/recipe-stats.json" 2>/dev/null)"; echo; } > "$L/head-recipe.md"
  rep table "$R" "$W/results-recipe.md" --head "$L/head-recipe.md"
  say "done in $(elapsed) s; table written to $W/results-recipe.md"
  exit 0
fi
yf_prepare
if [ -n "$ISA" ]; then
  say "BENCH_ISA=$ISA: YF_KERNELS=$YF_KERNELS ONEDNN_MAX_CPU_ISA=$ONEDNN_MAX_CPU_ISA ATEN_CPU_CAPABILITY=$ATEN_CPU_CAPABILITY MKL_ENABLE_INSTRUCTIONS=$MKL_ENABLE_INSTRUCTIONS"
  st_pypi=$(torch_selftest "$PYNEW" "PyPI"); say "PyPI: $st_pypi"
  isa_rounds "$st_pypi"
  isa_suite "$st_pypi"
else
  st_deb=$(torch_selftest "$PY" "Debian"); say "Debian: $st_deb"
  st_pypi=$(torch_selftest "$PYNEW" "PyPI"); say "PyPI: $st_pypi"
  [ "$QUICK" != 1 ] && train_rounds "$st_deb" "$st_pypi"
  yf_suite
  yf_serve
  torch_suite "$PY" "Debian" "$st_deb"
  torch_suite "$PYNEW" "PyPI" "$st_pypi"
  [ "${BENCH_RECIPE:-1}" = 1 ] && [ "$QUICK" != 1 ] && recipe_suite
  if [ "${BENCH_SKIP_24:-0}" != 1 ] && [ "$QUICK" != 1 ]; then
    yf_24
    torch_24 "$PY" "Debian"
    torch_24 "$PYNEW" "PyPI"
  fi
fi
# quantized weights against bf16, on the same 24-layer model folder
if [ -z "$ISA" ] && [ "${BENCH_SKIP_24:-0}" != 1 ] && [ "$QUICK" != 1 ] && [ "${BENCH_SKIP_QUANT:-0}" != 1 ]; then
  say "quantized weights (bench/quant.sh) [$(elapsed) s]"
  sh bench/quant.sh "$W/m-24layer-bf16" > /dev/null 2> "$L/quant.err" || echo "bench/quant.sh failed: $(tail -1 "$L/quant.err")" > "$L/quant.md"
else
  echo "n/a (BENCH_ISA, BENCH_SKIP_24, BENCH_QUICK or BENCH_SKIP_QUANT)" > "$L/quant.md"
fi

# tokenizer and kernel benchmarks, when their programs exist
if [ "$QUICK" = 1 ] || [ -n "$ISA" ]; then
  echo "n/a (BENCH_QUICK=1 or BENCH_ISA)" > "$L/tokenizer.md"
elif [ -f bench/tokenizer_bench.sh ]; then
  say "tokenizer bench [$(elapsed) s]"
  { echo "| what | yuanft | sentencepiece | speed-up |"; echo "| --- | ---: | ---: | ---: |"
    timeout 900 sh bench/tokenizer_bench.sh 2> "$L/tokenizer.err" || echo "tokenizer_bench.sh failed: $(tail -1 "$L/tokenizer.err")"; } > "$L/tokenizer.md"
else
  echo "n/a (bench/tokenizer_bench.sh not present yet)" > "$L/tokenizer.md"
fi
if [ "$QUICK" = 1 ]; then
  echo "n/a (BENCH_QUICK=1)" > "$L/kernels.md"
elif [ -x build/bench-kernels ]; then
  say "kernel bench [$(elapsed) s]"
  { echo '```'; timeout 600 build/bench-kernels --quick ${ISA:+--paths $ISA} 2>&1; echo '```'; } > "$L/kernels.md"
else
  echo "n/a (build/bench-kernels not built yet)" > "$L/kernels.md"
fi

# decoding reads every weight once a token: memory bandwidth bounds it
if [ "$QUICK" != 1 ] && [ -x build/bench-membw ]; then
  say "memory bandwidth [$(elapsed) s]"
  bw=$(build/bench-membw 1024 2>/dev/null | sed -n 's/.*"read_gb_s": \([0-9.]*\).*/\1/p')
  {
    echo "Measured read bandwidth (build/bench-membw, 1 GiB, all cores): ${bw:-n/a} GB/s; compare the bound"
    echo "with the decode rows of the table (batch 1: every token reads all the weights once)."
    echo
    echo "| model folder | weight bytes read a token | decode bound (tokens/s) |"
    echo "| --- | ---: | ---: |"
    for m in "$W"/*/; do
      [ -f "$m/model.safetensors" ] || continue
      bytes=$(stat -c %s "$m/model.safetensors")
      name=$(basename "$m")
      [ -n "$bw" ] && bound=$("$PY" -c "print(f'{$bw*1e9/$bytes:.1f}')") || bound=n/a
      echo "| $name | $bytes | $bound |"
    done
  } > "$L/membw.md"
else
  echo "n/a" > "$L/membw.md"
fi

# BENCH_ISA: the issue's targets against the rows
if [ -n "$ISA" ]; then
  set -- 
  for dt in bf16 fp32; do
    f=$W/m-2layer-$dt/model.safetensors; [ $dt = fp32 ] && f=$W/m-2layer-f32/model.safetensors
    [ -f "$f" ] && set -- "$@" --model-bytes "$dt=$(stat -c %s "$f")"
  done
  rep isa-summary "$R" --isa "$ISA" --kernels "$L/kernels.md" ${bw:+--membw-gb-s $bw} --threads "$OMP_NUM_THREADS" "$@" \
    > "$L/isa.md" 2> "$L/isa.err" || echo "n/a (report.py isa-summary failed: $(tail -1 "$L/isa.err"))" > "$L/isa.md"
fi

# constrained decoding (docs/constrained-decoding.md): the full mask over the real 135,040-row
# vocabulary a step, on one core, and the greedy path's share of extract's wall time
constrain_bench() {
  tok=$SHARED/yuan/tokenizer.model; ner=$SHARED/data/resume-ner
  [ -x build/bench-constrain ] || { echo "n/a (build/bench-constrain not built)"; return; }
  [ -f "$tok" ] && [ -f "$ner/test.char.bmes" ] || { echo "n/a ($tok or $ner/test.char.bmes not found)"; return; }
  for s in train dev test; do
    "$YF" data resume-ner --bmes "$ner/$s.char.bmes" --output-file "$W/ner-$s.jsonl" > /dev/null 2>&1 || { echo "n/a (yuanft data resume-ner failed)"; return; }
  done
  n=100; [ "$QUICK" = 1 ] && n=20
  core=""; command -v taskset > /dev/null && core="taskset -c 0"
  say "constrained decoding: the full mask [$(elapsed) s]"
  $core build/bench-constrain mask --tokenizer "$tok" --data "$W/ner-test.jsonl" --n $n > "$L/constrain-mask.jsonl" 2> "$L/constrain-mask.err" ||
    { echo "n/a (bench-constrain mask failed: $(tail -1 "$L/constrain-mask.err"))"; return; }
  # the demo's model when make demo has run, else one of its size with random weights
  demo=${DEMO_OUT:-out/demo}
  if [ -f "$demo/full/config.json" ]; then
    m=$demo/full; note="the demo's model ($demo/full + $demo/lora)"
    ad=""; [ -f "$demo/lora/adapter_config.json" ] && ad="--adapter $demo/lora"
  else
    m=$W/m-demo; ad=""; note="a demo-size model with random weights (make demo has not run): its answers are garbage, so constrained and unconstrained answers differ"
    if [ ! -f "$m/config.json" ]; then
      "$YF" init --config scripts/demo-config.json --output-dir "$m" --seed 1 --tokenizer "$tok" --prompt-template none \
        --vocab-from "$W/ner-train.jsonl,$W/ner-dev.jsonl,$W/ner-test.jsonl" > "$L/init-m-demo.out" 2>&1 ||
        { echo "n/a (yuanft init of the demo-size model failed: $L/init-m-demo.out)"; return; }
    fi
  fi
  rounds=3; [ "$QUICK" = 1 ] && rounds=1
  say "constrained decoding: extract, unconstrained and constrained, $rounds rounds [$(elapsed) s]"
  # shellcheck disable=SC2086
  build/bench-constrain extract --model "$m" $ad --tokenizer "$tok" --data "$W/ner-test.jsonl" --n 64 --batch 32 \
    --max-new-tokens 96 --rounds $rounds > "$L/constrain-extract.jsonl" 2> "$L/constrain-extract.err" ||
    { echo "n/a (bench-constrain extract failed: $(tail -1 "$L/constrain-extract.err"))"; return; }
  "$PY" - "$L/constrain-mask.jsonl" "$L/constrain-extract.jsonl" "$note" <<'PYEOF'
import json, sys
rows = [json.loads(l) for f in sys.argv[1:3] for l in open(f, encoding="utf-8") if l.strip()]
print("The résumé answer constraint over the real Yuan vocabulary (135,040 rows; goal: the full mask in ≤ 50 µs")
print("median a step on one core), along the gold answers of the first test records, each step timed 3 times:")
print()
print("| what (one core) | steps | median µs | p90 µs | max µs |")
print("| --- | ---: | ---: | ---: | ---: |")
for r in rows:
    if r["bench"] == "constrain-mask":
        print(f"| {r['what']} | {r['steps']} | {r['median_us']:.1f} | {r['p90_us']:.1f} | {r['max_us']:.1f} |")
print()
for r in rows:
    if r["bench"] == "constrain-vocab":
        print(f"Building the vocabulary's bytes and trie, once a model: {r['build_ms']:.0f} ms.")
        print()
for r in rows:
    if r["bench"] != "constrain-extract":
        continue
    print(f"Greedy extraction of {r['records']} test records (batch {r['batch']}, up to {r['max_new_tokens']} new tokens, "
          f"median of {r['rounds']} interleaved rounds) with {sys.argv[3]}: unconstrained {r['wall_none_s']:.2f} s "
          f"({r['tokens_none']} tokens), span-constrained {r['wall_spans_s']:.2f} s ({r['tokens_spans']} tokens, "
          f"{r['same_answers']} of {r['records']} answers the same ids); time in the constraint (vocabulary, each "
          f"input's index, the hook, less the argmax unconstrained greedy takes too) {r['constraint_s']*1000:.1f} ms = "
          f"**{r['overhead_pct']:.2f} %** of the constrained wall time (goal ≤ 2 %; {r['overhead_with_argmax_pct']:.2f} % "
          f"with that argmax counted in).")
PYEOF
}
if [ -z "$ISA" ] && [ -f bench/constrain_bench.c ]; then
  constrain_bench > "$L/constrain.md"
else
  echo "n/a" > "$L/constrain.md"
fi

T=$(elapsed)
{
  echo "# yuanft benchmarks"
  echo
  echo "\`make bench\` on $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git describe --always --dirty 2>/dev/null || echo '?') ($(git rev-parse --abbrev-ref HEAD 2>/dev/null))."
  echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores;"
  echo "load average $LOAD0 at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end; the whole run took $T s."
  echo "PyTorch: Debian $("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null || echo n/a) (/usr/bin/python3),"
  echo "PyPI $("$PYNEW" -c 'import torch; print(torch.__version__)' 2>/dev/null || echo "n/a: $venv_note") (bench/venv); both with torch.set_num_threads($(nproc)),"
  echo "bf16 = bf16 weights under torch.autocast('cpu', bfloat16) (faster than pure bf16 here), fp32 adapters."
  echo "Same random token ids for yuanft and PyTorch (random weights, N(0, 0.02)); tokens/s: train = B x T a step"
  echo "(PyTorch: the median timed step after warm-up), prefill = prompt tokens/s, decode = new tokens/s."
  if [ -n "$ISA" ]; then
    echo
    echo "**BENCH_ISA=$ISA**: both sides held to one instruction set: yuanft YF_KERNELS=$ISA; PyTorch"
    echo "ONEDNN_MAX_CPU_ISA=$ONEDNN_MAX_CPU_ISA, ATEN_CPU_CAPABILITY=$ATEN_CPU_CAPABILITY, MKL_ENABLE_INSTRUCTIONS=$MKL_ENABLE_INSTRUCTIONS."
    echo "yuanft fp32 = exact mode on the f32 model folder; bf16 = \`--bf16\` on the bf16 one."
  fi
  echo
} > "$L/head.md"
if [ -n "$ISA" ]; then
  rep table "$R" "$OUT_MD" --head "$L/head.md" --section "Targets (issue 23)=$L/isa.md" --section "Kernels (build/bench-kernels --quick --paths $ISA)=$L/kernels.md" --section "Decode against the memory-bandwidth bound=$L/membw.md"
else
  rep table "$R" "$OUT_MD" --head "$L/head.md" --section "Serving (bench/serve_bench.sh: streamed completions, 64-token prompts, 32 new tokens, --parallel 16)=$L/serve.md" --section "Tokenizer=$L/tokenizer.md" --section "Kernels (build/bench-kernels --quick)=$L/kernels.md" --section "Decode against the memory-bandwidth bound=$L/membw.md" --section "Constrained decoding (build/bench-constrain)=$L/constrain.md" --section "Quantized weights (bench/quant.sh)=$L/quant.md"
fi
say "done in $T s; table written to $OUT_MD"
