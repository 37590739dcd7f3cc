#!/bin/sh
# Creates bench/venv with the current PyTorch release from PyPI (and numpy), for the second
# PyTorch column of `make bench`. Guarded: once bench/venv imports torch, it returns at once
# (delete bench/venv to pick up a newer release).
#
# PyPI serves only the default Linux wheel, which bundles CUDA: about 540 MB to download and
# about 5.4 GB installed with its nvidia-* dependencies (the wheel cannot be imported without
# them). The CPU-only wheels live on download.pytorch.org, which is not used here. The CUDA
# parts are simply unused on a CPU machine.
# usage (from the repo root): sh bench/venv.sh
set -e
cd "$(dirname "$0")/.."
V=bench/venv
if [ -x "$V/bin/python" ] && "$V/bin/python" -c 'import torch, numpy' 2>/dev/null; then
  exit 0
fi
echo "venv: installing the current PyTorch from PyPI into $V (~540 MB download, ~5.4 GB on disk; once)" >&2
rm -rf "$V"
/usr/bin/python3 -m venv "$V"
"$V/bin/pip" install -q --disable-pip-version-check torch numpy
"$V/bin/python" -c 'import torch; print("venv: torch", torch.__version__)' >&2
