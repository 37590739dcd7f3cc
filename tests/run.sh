#!/bin/sh
# Runs the whole suite: every test on the optimised build, then every test
# again on the ASan/UBSan build (YF_ASAN_TESTS=bad: only the bad-input ones),
# where an AddressSanitizer error, a leak, or any UBSan finding fails the test,
# then each libFuzzer harness for FUZZ_SMOKE_SECONDS (3) when `make fuzz-build`
# has built them (clang present). Ends with one line "N passed, N failed,
# N skipped" and exits non-zero on any failure.
# The golden tests need ../shared (or $YF_SHARED): without it they are skipped,
# except in CI (CI=true), where a missing reference folder fails the run.
cd "$(dirname "$0")/.." || exit 2
shared=${YF_SHARED:-../shared}
if [ ! -d "$shared" ]; then
  if [ "${CI:-}" = true ]; then
    echo "ERROR: CI=true and $shared is absent: the golden tests cannot run (set YF_SHARED to the shared folder)" >&2
    exit 1
  fi
  echo "WARNING: $shared is absent: golden tests will be SKIPPED" >&2
fi
# The sanitizers fail tests: UBSan stops at the first finding (the test then
# exits non-zero); LeakSanitizer checks every test's process (harness.c) and
# every CLI run it starts; allocations fail (NULL, then yuanft's exit 3) past
# 8 GiB, and a process past 6 GiB of RSS is killed: the memory limit of the
# `bad` tests under ASan, whose shadow memory rules out ulimit -v.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:allocator_may_return_null=1:max_allocation_size_mb=8192:hard_rss_limit_mb=6144"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
log=$(mktemp)
st=0
build/yuanft-tests "$@" 2>&1 | tee "$log" | grep -v '^[0-9]* passed, ' ; 
line1=$(grep -E '^[0-9]+ passed, ' "$log" | tail -1)
[ -n "$line1" ] || { echo "test runner died (no summary line)"; line1="0 passed, 1 failed, 0 skipped"; }
line2="0 passed, 0 failed, 0 skipped"
line3="0 passed, 0 failed, 0 skipped"
if [ $# -eq 0 ] && [ -x build/asan/yuanft-tests ]; then
  t0=$(date +%s)
  echo "== ${YF_ASAN_TESTS:-every} test under AddressSanitizer/UBSan =="
  # shellcheck disable=SC2086
  YF_CLI=build/asan/yuanft build/asan/yuanft-tests ${YF_ASAN_TESTS:-} 2>&1 | tee "$log" | grep -v '^[0-9]* passed, '
  line2=$(grep -E '^[0-9]+ passed, ' "$log" | tail -1)
  [ -n "$line2" ] || { echo "asan test runner died (no summary line)"; line2="0 passed, 1 failed, 0 skipped"; }
  echo "(sanitizer run: $(( $(date +%s) - t0 )) s)"
fi
if [ $# -eq 0 ]; then
  if ls build/fuzz/fuzz_* >/dev/null 2>&1; then
    echo "== libFuzzer harnesses, ${FUZZ_SMOKE_SECONDS:-3} s each =="
    FUZZ_SECONDS=${FUZZ_SMOKE_SECONDS:-3} FUZZ_LOGDIR=build/fuzz/smoke sh scripts/fuzz.sh >"$log" 2>&1
    cat "$log"
    fp=$(grep -c ': ok, ' "$log")
    ff=$(grep -c ': FAILED\|missing' "$log")
    line3="$fp passed, $ff failed, 0 skipped"
  else
    echo "== libFuzzer harnesses: not built (no clang): skipped =="
  fi
fi
rm -f "$log"
sum() { echo $(( $(echo "$line1" | cut -d' ' -f"$1") + $(echo "$line2" | cut -d' ' -f"$1") + $(echo "$line3" | cut -d' ' -f"$1") )); }
p=$(sum 1)
f=$(sum 3)
s=$(sum 5)
echo "$p passed, $f failed, $s skipped"
[ "$f" -eq 0 ]
