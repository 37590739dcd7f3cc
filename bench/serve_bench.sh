#!/bin/sh
# The serving rows of `make bench`: `yuanft serve` under 1, 4 and 16 concurrent
# clients (build/bench-serve: streamed completions, distinct prompts of
# PROMPT_LEN token ids, MAX_TOKENS new tokens each), and the HTTP layer's
# per-request overhead. Prints Markdown table rows on stdout, the server's log
# to LOGDIR.
#
# usage: bench/serve_bench.sh NAME MODEL_DIR LOGDIR [serve options...]
# Knobs: SERVE_PROMPT_LEN (64), SERVE_MAX_TOKENS (32), SERVE_ID_MAX (prompt ids
# in [3, SERVE_ID_MAX): 320, what the smallest model takes), SERVE_REQUESTS (requests
# a client sends: 4 with 1 client, 4 with 4, 2 with 16), SERVE_OVERHEAD_N (50).
# The ratio row compares 16 clients with 1 client in the same run.
set -u
cd "$(dirname "$0")/.." || exit 2
name=$1; model=$2; logdir=$3; shift 3
PL=${SERVE_PROMPT_LEN:-64}
MT=${SERVE_MAX_TOKENS:-32}
ON=${SERVE_OVERHEAD_N:-50}
IM=${SERVE_ID_MAX:-320}
YF=build/yuanft
BS=build/bench-serve
mkdir -p "$logdir"
log=$logdir/serve-$(printf '%s' "$name" | tr -c 'a-zA-Z0-9-' '_').log
na() { echo "| $name | $1 | n/a: $2 | | | | | |"; }
# m NAME: a series of the server's /metrics now
m() { curl -s "http://127.0.0.1:$port/metrics" | awk -v n="yuanft_$1" '$1 == n { print $2 }'; }

if [ ! -x "$YF" ] || [ ! -x "$BS" ]; then na "all" "build/yuanft or build/bench-serve not built"; exit 0; fi
if [ ! -f "$model/config.json" ]; then na "all" "no model folder $model"; exit 0; fi
"$YF" serve --model "$model" --port 0 --parallel 16 --max-queue 64 --max-length $((PL + MT + 8)) "$@" 2> "$log" &
pid=$!
port=""
for _ in $(seq 600); do
  port=$(sed -n 's/.*listening on http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$log" | head -1)
  if [ -n "$port" ] && curl -sf "http://127.0.0.1:$port/health" > /dev/null 2>&1; then break; fi
  kill -0 $pid 2>/dev/null || break
  sleep 0.5
done
if ! kill -0 $pid 2>/dev/null || ! curl -sf "http://127.0.0.1:$port/health" > /dev/null 2>&1; then
  na "all" "the server did not come up: $(tail -1 "$log")"
  kill $pid 2>/dev/null; wait $pid 2>/dev/null
  exit 0
fi
# one warm-up request: the first products page the weights in
"$BS" load "$port" 1 1 "$PL" 4 base "$IM" > /dev/null 2>&1
base=""
for c in 1 4 16; do
  case $c in 1) r=${SERVE_REQUESTS:-4} ;; 4) r=${SERVE_REQUESTS:-4} ;; *) r=${SERVE_REQUESTS:-2} ;; esac
  # the server's own split of the model time over this load alone: decode
  # steps (seconds, count, rows: the tokens less each request's first, which
  # its prefill gives) and prefill
  d0=$(m decode_seconds_total); s0=$(m decode_steps_total); g0=$(m generated_tokens_total)
  p0=$(m prefill_seconds_total); q0=$(m requests_processed_total)
  out=$("$BS" load "$port" $c "$r" "$PL" "$MT" base "$IM" 2>&1 | tail -1)
  steps=$(awk -v d0="$d0" -v d1="$(m decode_seconds_total)" -v s0="$s0" -v s1="$(m decode_steps_total)" \
    -v g0="$g0" -v g1="$(m generated_tokens_total)" -v q0="$q0" -v q1="$(m requests_processed_total)" \
    -v p0="$p0" -v p1="$(m prefill_seconds_total)" 'BEGIN {
      s = s1 - s0; d = d1 - d0; p = p1 - p0; rows = (g1 - g0) - (q1 - q0)
      if (s > 0) printf "%.1f ms / %.1f rows; prefill %.0f%%", 1000 * d / s, rows / s, 100 * p / (p + d) }')
  tps=$(echo "$out" | sed -n 's/.*"tokens_per_s": \([0-9.]*\).*/\1/p')
  if [ -z "$tps" ]; then na "$c clients" "$out"; continue; fi
  [ $c = 1 ] && base=$tps
  g() { echo "$out" | sed -n "s/.*\"$1\": \([0-9.]*\).*/\1/p"; }
  ratio=""
  [ -n "$base" ] && ratio=$(awk -v a="$tps" -v b="$base" 'BEGIN { if (b > 0) printf "%.2fx", a / b }')
  echo "| $name | $c client$([ $c = 1 ] || echo s) x $r requests | $tps | $ratio | $(g ttft_p50_ms) / $(g ttft_p95_ms) | $(g tpot_p50_ms) / $(g tpot_p95_ms) | $steps | $(g errors) |"
done
ov=$("$BS" overhead "$port" "$ON" base 2>&1 | tail -1)
g() { echo "$ov" | sed -n "s/.*\"$1\": \([0-9.]*\).*/\1/p"; }
# the server's own count: parsing, tokenizing and writing a generation request (no socket time)
inside=$(curl -s "http://127.0.0.1:$port/metrics" | awk '$1 == "yuanft_http_overhead_seconds_mean" { printf "%.3f", $2 * 1000 }')
echo "| $name | HTTP overhead, $ON requests, a connection each | round trip - model time: mean $(g overhead_mean_ms) ms, p50 $(g overhead_p50_ms), p95 $(g overhead_p95_ms); GET /health p50 $(g health_p50_ms) ms; inside the server: ${inside:-?} ms | | | | | $(g errors) |"
kill -TERM $pid
wait $pid
echo "serve exit status $?" >> "$log"
