#!/bin/sh
# Runs the whole suite: every test on the optimised build, then the tests
# whose name contains "bad" (malformed input) again on the ASan/UBSan build.
# Ends with one line "N passed, N failed, N skipped" and exits non-zero on any failure.
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
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=0
log=$(mktemp)
st=0
build/yuanft-tests "$@" 2>&1 | tee "$log" | grep -v '^[0-9]* passed, ' ; 
line1=$(grep -E '^[0-9]+ passed, ' "$log" | tail -1)
[ -n "$line1" ] || { echo "test runner died (no summary line)"; line1="0 passed, 1 failed, 0 skipped"; }
line2="0 passed, 0 failed, 0 skipped"
if [ $# -eq 0 ] && [ -x build/asan/yuanft-tests ]; then
  echo "== bad-input tests under AddressSanitizer/UBSan =="
  YF_CLI=build/asan/yuanft build/asan/yuanft-tests bad 2>&1 | tee "$log" | grep -v '^[0-9]* passed, '
  line2=$(grep -E '^[0-9]+ passed, ' "$log" | tail -1)
  [ -n "$line2" ] || { echo "asan test runner died (no summary line)"; line2="0 passed, 1 failed, 0 skipped"; }
fi
rm -f "$log"
p=$(( $(echo "$line1" | cut -d' ' -f1) + $(echo "$line2" | cut -d' ' -f1) ))
f=$(( $(echo "$line1" | cut -d' ' -f3) + $(echo "$line2" | cut -d' ' -f3) ))
s=$(( $(echo "$line1" | cut -d' ' -f5) + $(echo "$line2" | cut -d' ' -f5) ))
echo "$p passed, $f failed, $s skipped"
[ "$f" -eq 0 ]
