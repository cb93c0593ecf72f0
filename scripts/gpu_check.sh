#!/usr/bin/env bash
# The one command for the lent GPU machine (nvidia-h200; no network):
#
#     bash scripts/gpu_check.sh            run with carry [".whl", ".gpu_model"]
#
# Installs the carried wheels (.whl/, built by scripts/gpu_wheels.sh) into /tmp/site, puts the repo
# and /tmp/site first on PYTHONPATH (the device keeps its own torch, accelerate, numpy, tokenizers,
# safetensors, huggingface_hub; transformers 5.24 from .whl replaces its 5.17) and runs
# scripts/gpu_check.py under a hard timeout. Results: $OUT/gpu_check.json and $OUT/gpu_check.log
# ($OUT: set by the device tool; elsewhere /tmp/gpu_check_out). Extra arguments go to gpu_check.py,
# e.g. `--cpu-dry-run` or `--steps env,nccl`; PYTHON=... picks the interpreter (default python3);
# GPU_CHECK_NO_WHEELS=1 skips the wheels (an interpreter that has every package, e.g. the project's .venv).
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
OUT=${OUT:-/tmp/gpu_check_out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
       HF_DATASETS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 DO_NOT_TRACK=1 ACCELERATE_DISABLE_RICH=1
SITE=${GPU_CHECK_SITE:-/tmp/site}
LOG="$OUT/gpu_check.log"
t0=$(date +%s)
{
    echo "=== gpu_check.sh $(date '+%F %T') on $(hostname); $($PY --version 2>&1) at $(command -v "$PY")"
    if [ -n "${GPU_CHECK_NO_WHEELS:-}" ]; then
        echo "GPU_CHECK_NO_WHEELS set: running on the interpreter's own packages"
    elif compgen -G ".whl/*.whl" >/dev/null; then
        echo "installing $(ls .whl/*.whl | wc -l) carried wheels ($(du -sh .whl | cut -f1)) into $SITE"
        rm -rf "$SITE"
        if $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl; then
            echo "wheels installed in $(( $(date +%s) - t0 ))s"
        else
            echo "FAIL wheels: pip install into $SITE failed (the steps run without them)"
        fi
    else
        echo "no .whl/ here: running on the interpreter's own packages"
    fi
} 2>&1 | tee -a "$LOG"
[ -z "${GPU_CHECK_NO_WHEELS:-}" ] && [ -d "$SITE" ] && export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
timeout -k 10 "${GPU_CHECK_TIMEOUT:-350}" $PY scripts/gpu_check.py --out "$OUT" "$@"
rc=$?
[ $rc = 124 ] && echo "FAIL gpu_check.py: killed at the ${GPU_CHECK_TIMEOUT:-350}s limit (partial results in $OUT/gpu_check.json)" | tee -a "$LOG"
echo "=== gpu_check.sh exit $rc after $(( $(date +%s) - t0 ))s" | tee -a "$LOG"
exit $rc
