#!/usr/bin/env bash
# One `gpu` study in one command on a lent GPU machine (the device tool), from the repository root (issue 29):
#     run(command="bash bench/gpu_study.sh maskgit $OUT", carry=[".whl"], timeout_s=540)
# STUDY is maskgit, uvim-depth, uvim-panoptic, uvim-colorization or usage. It runs that study's command with
# `--preset ${PRESET:-gpu} --max_minutes ${MAX_MINUTES:-6.5}` in ${RUNS:-runs}/gpu-STUDY (checkpoints stay there: a second call on
# the same machine resumes) and leaves in OUTDIR what a committed study holds, as few files as the device tool brings
# back: log.txt, results.json and study.json to read at once, and STUDY.tar.gz, the run folder without its checkpoints
# (results, run.json, figures, derived files), to unpack into nbs/results/STUDY-gpu. Exit status: the command's (3: stopped
# at the time limit, resumable; 2: a usage error; 130: still running at STUDY_TIMEOUT seconds, 480 by default, and stopped
# there as by Ctrl-C, its records kept, so that the copy below runs within the device's limit). PRESET=smoke runs the same path
# on the CPU (tests/test_gpu_study.py).
set -o pipefail
cd "$(dirname "$0")/.." || exit 1
usage="usage: bash bench/gpu_study.sh STUDY OUTDIR (STUDY: maskgit, uvim-depth, uvim-panoptic, uvim-colorization, usage)"
study=$1 outdir=$2
[ $# -eq 2 ] && [ -n "$outdir" ] || { echo "gpu_study.sh: $usage" >&2; exit 2; }
case $study in
    maskgit) mod=generation prog=fsq-maskgit task=() ;;
    uvim-depth|uvim-panoptic|uvim-colorization) mod=uvim_study prog=fsq-uvim task=(--task "${study#uvim-}") ;;
    usage) mod=usage prog=fsq-usage task=() ;;
    *) echo "gpu_study.sh: unknown study '$study'; $usage" >&2; exit 2 ;;
esac
source bench/_gpu_env.sh || exit 1
mkdir -p "$outdir" || exit 1
run=${RUNS:-runs}/gpu-$study
args=(--preset "${PRESET:-gpu}" "${task[@]}" --out "$run" --max_minutes "${MAX_MINUTES:-6.5}" --no_progress)
{ command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv
  echo "\$ $prog ${args[*]}"; } 2>&1 | tee -a "$outdir/log.txt"
timeout -s INT -k 30 "${STUDY_TIMEOUT:-480}" python3 bench/_command.py "$mod" "$prog" "${args[@]}" 2>&1 | tee -a "$outdir/log.txt"
rc=$?
if [ -f "$run/results.json" ]; then
    cp "$run/results.json" "$run/study.json" "$outdir"/ 2>/dev/null
    tar -czf "$outdir/$study.tar.gz" -C "$run" --exclude=./stage1 --exclude=./stage2 --exclude=./.lock . || { [ $rc -eq 0 ] && rc=1; }
fi
ls -l "$outdir"
exit $rc
