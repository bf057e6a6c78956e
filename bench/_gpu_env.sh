# Sourced by bench/gpu_run.sh and bench/gpu_study.sh, from the repository root, on a lent GPU machine: installs the wheels
# in .whl/ (bench/gpu_wheels.sh fetches them: what the machine's image lacks) into $SITE without pip's index, and lets
# Python import fsq_lit from the working tree, unbuffered and offline. Returns 1 if the wheels do not install.
SITE=${SITE:-/tmp/site}
if compgen -G '.whl/*.whl' >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl || return 1
    export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
