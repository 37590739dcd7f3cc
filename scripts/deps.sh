#!/bin/sh
# Installs the Debian packages yuanft needs to build and test, once.
# Guarded: a second run only checks dpkg and returns at once.
# usage: scripts/deps.sh [build|test|bench|fuzz]
set -e
want="gcc make libc6-dev libcjson-dev libmicrohttpd-dev zlib1g-dev"
case "${1:-build}" in
  # python3-jsonschema: validates constrained generations against their schema (skipped without it);
  # chromium, chromium-driver, python3-selenium: the serve page's browser test (skipped without them);
  # fonts-wqy-microhei: Chinese glyphs in its screenshot
  test)  want="$want python3-numpy python3-sentencepiece python3-jsonschema libopenmpi-dev openmpi-bin chromium chromium-driver python3-selenium fonts-wqy-microhei" ;;
  # libopenblas0: python3-torch only recommends it; without it fp32 matmuls use the reference BLAS (a 2-layer train step: >8 min instead of ~4 s)
  # libFuzzer ships in clang's runtime package (Debian 12: libclang-rt-14-dev)
  fuzz)  want="$want clang libclang-rt-14-dev" ;;
  bench) want="$want python3-numpy python3-sentencepiece python3-torch libopenblas0 python3-venv libopenmpi-dev openmpi-bin" ;;
esac
missing=""
for p in $want; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps: installing$missing" >&2
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >/dev/null || true
$SUDO apt-get install -y -q --no-install-recommends $missing >/dev/null
