#!/bin/sh
# Data parallelism on one machine: the same training run (same global batch,
# same steps) as 1 process x 2 OpenMP threads and as 2 MPI ranks x 1 thread.
# Prints one Markdown table row:
# | model | mode, global batch | 1 proc x 2 thr | 2 ranks x 1 thr | speed-up | gradient all-reduce per step |
# usage (from the repo root):
#   sh bench/mpi_bench.sh MODEL_DIR DATA_FILE [GLOBAL_BATCH [STEPS [extra yuanft train options...]]]
#   GLOBAL_BATCH (4) must be even; STEPS (3) optimizer steps, timed by the trainer
#   (model loading excluded); extra options go to both runs (e.g. --full-finetune).
# Needs a build with MPI (make, mpicc found) and mpirun.
set -e
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n '2,11p' "$0" >&2; exit 2; }
MODEL=$1 DATA=$2 GB=4 STEPS=3
shift 2
if [ $# -gt 0 ]; then GB=$1; shift; fi
if [ $# -gt 0 ]; then STEPS=$1; shift; fi
[ -f "$MODEL/config.json" ] || { echo "mpi_bench: $MODEL/config.json not found" >&2; exit 1; }
[ -f "$DATA" ] || { echo "mpi_bench: $DATA not found" >&2; exit 1; }
[ $((GB % 2)) -eq 0 ] || { echo "mpi_bench: the global batch must be even (2 ranks)" >&2; exit 1; }
command -v mpirun >/dev/null || { echo "mpi_bench: mpirun not found (apt-get install openmpi-bin)" >&2; exit 1; }
[ -x build/yuanft ] || make -j2 all >/dev/null
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
COMMON="--model $MODEL --data $DATA --max-steps $STEPS --save-strategy no --logging-steps 0 --learning-rate 1e-4 --seed 1"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

# the machine-readable last line of a run: {"train_runtime": ..., ...}
field() { sed -n 's/.*"'"$2"'": \([0-9.e+-]*\).*/\1/p' "$1" | tail -1; }

# shellcheck disable=SC2086
OMP_NUM_THREADS=2 build/yuanft train $COMMON --output-dir "$TMP/one" --per-device-train-batch-size "$GB" "$@" \
    >"$TMP/one.log" 2>&1 || { cat "$TMP/one.log" >&2; exit 1; }
# YUANFT_DIST_PROFILE: a barrier before the gradient all-reduce, so its time is the transfer alone
# shellcheck disable=SC2086
mpirun --allow-run-as-root --oversubscribe --bind-to none -np 2 -x OMP_NUM_THREADS=1 -x YUANFT_DIST_PROFILE=1 \
    build/yuanft train $COMMON --output-dir "$TMP/two" --per-device-train-batch-size $((GB / 2)) "$@" \
    >"$TMP/two.log" 2>&1 || { cat "$TMP/two.log" >&2; exit 1; }

r1=$(field "$TMP/one.log" train_runtime)
r2=$(field "$TMP/two.log" train_runtime)
mb=$(field "$TMP/two.log" grad_allreduce_mb_per_step)
ar=$(field "$TMP/two.log" grad_allreduce_s_per_step)
wait=$(field "$TMP/two.log" rank_wait_s_per_step)
mode=LoRA
case " $* " in *" --full-finetune "*) mode="full" ;; esac
awk -v m="$(basename "$MODEL")" -v mode="$mode" -v gb="$GB" -v n="$STEPS" -v r1="$r1" -v r2="$r2" -v mb="$mb" -v ar="$ar" -v w="$wait" 'BEGIN {
    t1 = r1 / n; t2 = r2 / n
    printf("| %s | %s, global batch %d | %.3f s/step | %.3f s/step | %.2fx | %.2f MB in %.1f ms (%.1f%% of the step; rank wait %.1f ms) |\n",
           m, mode, gb, t1, t2, t1 / t2, mb, ar * 1000, 100 * ar / t2, w * 1000)
}'
