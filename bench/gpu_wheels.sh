#!/usr/bin/env bash
# Fetch, on a machine with PyPI, the wheels that bench/gpu_run.sh installs on a lent GPU machine (whose image has
# torch, Triton, einops and NumPy but not these; it cannot reach PyPI). Pure-Python wheels for its Python 3.12,
# into .whl/ (ignored by git: add '/.whl/' to .git/info/exclude), about 1.4 MB; carry it: run(..., carry=[".whl"]).
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
WHEELS="vector-quantize-pytorch==1.32.0 einx==0.4.3 frozendict==2.5.1 loguru==0.7.3 torch-einops-utils==0.2.0
        einops==0.8.2 fastcore==1.14.5 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform any -d .whl $WHEELS
ls -l .whl
