#!/bin/sh
# Runs the libFuzzer harnesses built by `make fuzz-build`, one after another,
# each for FUZZ_SECONDS (default 60).
#   usage: scripts/fuzz.sh [fuzz_NAME ...]        (default: every build/fuzz/fuzz_*)
# Seeds are copied from ../shared/golden (and ../shared/yuan, data/) into
# build/fuzz/corpus/NAME (outside git; it grows from run to run). A crash, a
# leak, an out-of-memory (-rss_limit_mb=2048) or a slow input (-timeout=10)
# is saved as fuzz/crashes/NAME-*: turn each into a regression test in
# tests/. Each run's log is build/fuzz/logs/NAME.log ($FUZZ_LOGDIR); the last line printed
# per harness gives executions, cov: (edges) and ft: (features).
# Knobs: FUZZ_SECONDS, FUZZ_JOBS_ARGS (extra libFuzzer flags), YF_SHARED.
cd "$(dirname "$0")/.." || exit 2
secs=${FUZZ_SECONDS:-60}
shared=${YF_SHARED:-../shared}
export YF_FUZZ_TOKENIZER="${YF_FUZZ_TOKENIZER:-$shared/yuan/tokenizer.model}"
# leaks are errors; UBSan findings stop the run (the harnesses are built with
# -fno-sanitize-recover=undefined as well)
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
logdir=${FUZZ_LOGDIR:-build/fuzz/logs}
mkdir -p build/fuzz/corpus "$logdir" fuzz/crashes

names="$*"
[ -n "$names" ] || names=$(cd build/fuzz && ls fuzz_* 2>/dev/null)
[ -n "$names" ] || { echo "fuzz: no harnesses in build/fuzz (run make fuzz-build)"; exit 2; }

# seed NAME FILE...: copies files into the corpus (content-named, so re-runs add nothing)
seed() {
  d=build/fuzz/corpus/$1
  shift
  mkdir -p "$d"
  for f in "$@"; do
    [ -f "$f" ] || continue
    h=$(sha1sum "$f" | cut -c1-16)
    [ -f "$d/seed-$h" ] || cp "$f" "$d/seed-$h"
  done
}

# seed_text NAME: each line of stdin (up to 400) as its own seed
seed_lines() {
  d=build/fuzz/corpus/$1
  mkdir -p "$d"
  i=0
  while IFS= read -r line && [ $i -lt 400 ]; do
    printf '%s' "$line" >"$d/line-$i"
    i=$((i + 1))
  done
}

prepare() {
  g=$shared/golden
  t=$(mktemp -d)
  case $1 in
    fuzz_safetensors) seed "$1" $(find "$g" -name '*.safetensors' -size -600k 2>/dev/null) ;;
    fuzz_zip) seed "$1" $(find "$g" -name 'pytorch_model.bin' 2>/dev/null) ;;
    fuzz_pickle)
      for f in $(find "$g" -name 'pytorch_model.bin' 2>/dev/null); do
        python3 -c 'import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
n = [i for i in z.namelist() if i.endswith("/data.pkl")][0]
open(sys.argv[2], "wb").write(z.read(n))' "$f" "$t/$(echo "$f" | tr /. __).pkl" 2>/dev/null
      done
      seed "$1" "$t"/*.pkl ;;
    fuzz_tokenizer_model)
      # a small BPE model (the real one, 2 MB, runs at ~20 executions/s):
      # <unk>, <s>, </s>, the 256 byte pieces, letters and merges, user-defined
      # and unused pieces, trainer_spec (BPE, byte_fallback), normalizer_spec
      python3 -c 'import struct, sys
def v(n):
    b = b""
    while True:
        c = n & 0x7F; n >>= 7
        b += bytes([c | (0x80 if n else 0)])
        if not n: return b
def f(num, data): return v(num << 3 | 2) + v(len(data)) + data
def piece(s, score, t): return f(1, f(1, s.encode()) + v(2 << 3 | 5) + struct.pack("<f", score) + v(3 << 3) + v(t))
out = piece("<unk>", 0, 2) + piece("<s>", 0, 3) + piece("</s>", 0, 3)
out += b"".join(piece("<0x%02X>" % i, 0, 6) for i in range(256))
words = ["▁", "a", "b", "c", "▁a", "ab", "abc", "▁ab", "张", "三", "张三"]
out += b"".join(piece(w, -i, 1) for i, w in enumerate(words))
out += piece("<sep>", 0, 4) + piece("<eod>", 0, 4) + piece("bc", -0.5, 5)
out += f(2, v(3 << 3) + v(2) + v(35 << 3) + v(1))
out += f(3, v(3 << 3) + v(1) + v(4 << 3) + v(1) + v(5 << 3) + v(1))
open(sys.argv[1], "wb").write(out)' "$t/small.model" && seed "$1" "$t/small.model" ;;
    fuzz_tokenizer_text)
      [ -f "$g/tokenizer/yuan-cases.jsonl" ] &&
        python3 -c 'import json, sys
for l in open(sys.argv[1], encoding="utf-8"):
    d = json.loads(l)
    print(d.get("text", l.strip()).replace("\n", " "))' "$g/tokenizer/yuan-cases.jsonl" 2>/dev/null | seed_lines "$1" ;;
    fuzz_config) seed "$1" $(find "$g" "$shared/yuan" -name 'config*.json' 2>/dev/null) ;;
    fuzz_adapter)
      for a in $(find "$g" -name adapter_config.json 2>/dev/null); do
        d=$(dirname "$a")
        { cat "$a"; printf '\n--yz--\n'; cat "$d/adapter_model.safetensors"; } >"$t/$(echo "$d" | tr /. __)"
      done
      seed "$1" "$t"/* ;;
    fuzz_jsonl | fuzz_answer)
      b=$shared/data/resume-ner/dev.char.bmes
      if [ -f "$b" ] && [ -x build/yuanft ]; then
        head -c 6000 "$b" | sed '$d' >"$t/part.bmes"
        build/yuanft data resume-ner --bmes "$t/part.bmes" --out "$t/part.jsonl" >/dev/null 2>&1
        if [ "$1" = fuzz_jsonl ]; then
          seed "$1" "$t/part.jsonl"
          head -n 3 "$t/part.jsonl" | seed_lines "$1"
        else
          python3 -c 'import json, sys
for l in open(sys.argv[1], encoding="utf-8"): print(json.loads(l)["output"])' "$t/part.jsonl" 2>/dev/null | seed_lines "$1"
        fi
      fi ;;
    fuzz_serve_request)
      # the first byte picks the endpoint: \000 completions, \001 chat, \002 extract
      printf '\000{"model": "base", "prompt": [1, 2, 3], "max_tokens": 4, "temperature": 0.7, "stop": ["a"], "stream": true, "stream_options": {"include_usage": true}}' >"$t/completion"
      printf '\000{"model": "lora", "prompt": "张伟，男", "seed": -1, "top_p": 0.9, "n": 1, "logprobs": null}' >"$t/completion-text"
      printf '\001{"model": "m", "messages": [{"role": "system", "content": "x"}, {"role": "user", "content": [{"type": "text", "text": "y"}]}], "max_completion_tokens": 8, "response_format": {"type": "json_schema", "json_schema": {"name": "a", "strict": true, "schema": {"type": "object"}}}}' >"$t/chat"
      printf '\002{"text": "常建良，男，1963年出生", "types": ["姓名", "ORG"], "adapter": "lora", "max_tokens": 64, "constrain": "schema"}' >"$t/extract"
      seed "$1" "$t"/* ;;
    fuzz_bmes)
      b=$shared/data/resume-ner/dev.char.bmes
      [ -f "$b" ] && for k in 0 1 2 3; do
        tail -n +$((k * 300 + 1)) "$b" | head -n 120 >"$t/part$k.bmes"
      done
      seed "$1" "$t"/*.bmes ;;
  esac
  rm -rf "$t"
  [ -n "$(ls build/fuzz/corpus/$1 2>/dev/null)" ] || echo "fuzz: $1: no seeds ($shared absent?): starting from nothing"
}

maxlen() {
  case $1 in
    fuzz_safetensors | fuzz_zip | fuzz_adapter) echo 1048576 ;;
    *) echo 65536 ;;
  esac
}

fail=0
for n in $names; do
  n=$(basename "$n")
  [ -x "build/fuzz/$n" ] || { echo "fuzz: build/fuzz/$n missing"; fail=1; continue; }
  mkdir -p "build/fuzz/corpus/$n"
  prepare "$n"
  log=$logdir/$n.log
  # shellcheck disable=SC2086
  "build/fuzz/$n" "build/fuzz/corpus/$n" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -max_len="$(maxlen "$n")" -print_final_stats=1 -artifact_prefix="fuzz/crashes/$n-" $FUZZ_JOBS_ARGS >"$log" 2>&1
  rc=$?
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 | sed 's/  */ /g')
  runs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
  if [ $rc -eq 0 ]; then
    echo "fuzz: $n: ok, ${secs}s, ${runs:-?} runs: $last"
  else
    fail=1
    echo "fuzz: $n: FAILED (exit $rc; see $log and fuzz/crashes/$n-*)"
    grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error)' "$log" | head -3
  fi
done
exit $fail
