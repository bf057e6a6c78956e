#!/usr/bin/env bash
# The GPU suite in one command on a lent GPU machine (the device tool), from the repository root:
#     run(command="bash bench/gpu_run.sh", carry=[".whl"], timeout_s=480)
# Extra arguments go to bench/gpu_suite.py (e.g. bash bench/gpu_run.sh --only fsq,limits); SUITE_TIMEOUT=seconds (420).
# Installs the wheels in .whl/ (fetched by bench/gpu_wheels.sh: what the machine's image lacks: vector-quantize-pytorch and its needs, fastcore,
# datasets and its needs) into /tmp/site without pip's index; fsq_lit imports from the working tree. The log
# ($OUT/gpu_suite.log) and the result files this run wrote (bench/results/<gpu>.json, .md and .png) are copied into $OUT.
set -o pipefail
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-/tmp/gpu_suite_out}
mkdir -p "$OUT"
source bench/_gpu_env.sh || exit 1
stamp=$(mktemp)
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu,memory.used --format=csv 2>&1 | tee "$OUT/gpu_suite.log"
timeout -k 10 "${SUITE_TIMEOUT:-420}" python3 bench/gpu_suite.py "$@" 2>&1 | tee -a "$OUT/gpu_suite.log"
rc=$?
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,memory.used --format=csv 2>&1 | tee -a "$OUT/gpu_suite.log"
find bench/results -maxdepth 1 -newer "$stamp" \( -name '*.json' -o -name '*.md' -o -name '*.png' \) -exec cp {} "$OUT"/ \;
rm -f "$stamp"; ls -l "$OUT"
exit $rc
