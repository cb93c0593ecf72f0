#!/usr/bin/env bash
# Builds the two folders the GPU check (scripts/gpu_check.sh) carries to the lent GPU machine,
# which has no network: both ignored through .git/info/exclude (the common one: in a worktree
# `git rev-parse --git-path info/exclude` names the main repo's), never committed.
#
#   .whl/        the wheels the device lacks (cp312, manylinux x86_64), one version each. The
#                device keeps its own torch, accelerate, numpy, tokenizers, safetensors,
#                huggingface_hub; transformers 5.24 travels because the device's 5.17 has no
#                TrainingArguments(activation_checkpointing=...) (training/common.py's trainer_extras).
#                peft travels too: the device has one (version unknown) and trl imports it when present;
#                0.21.2 (the newest) imports cleanly with transformers 5.24 / trl 1.16.
#                deepspeed has only an sdist on PyPI: built here into a pure-Python wheel
#                (DS_BUILD_OPS=0: ops compile just in time where they are used).
#   .gpu_model/  the SmolLM2 tokenizer (3.5 MB); the check builds the tiny random Llama from it on
#                the device with act_pipeline.models.build_tiny_random (the smoke profile's model).
#
# Idempotent: downloads only what is missing, removes wheels not on the list.
# Usage (repo root, any worktree): bash scripts/gpu_wheels.sh      [PYTHON=... for the venv with torch]
set -euo pipefail
ROOT=$(git rev-parse --show-toplevel)
cd "$ROOT"
PY=${PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || PY=python3

EXCLUDE=$(cd "$ROOT" && realpath -m "$(git rev-parse --git-path info/exclude)")
mkdir -p "$(dirname "$EXCLUDE")"
for p in /.whl/ /.gpu_model/; do
    grep -qxF "$p" "$EXCLUDE" 2>/dev/null || echo "$p" >>"$EXCLUDE"
done

# name==version, as the local venv runs them (the test suite's versions)
WHEELS=(
    transformers==5.24.0
    trl==1.16.0
    datasets==5.2.0
    dill==0.4.1
    multiprocess==0.70.19
    fsspec==2026.9.0
    pydantic==2.14.4
    pydantic-core==2.50.5
    annotated-types==0.8.0
    typing-inspection==0.4.5
    typing-extensions==4.16.0
    duckdb==2.0.1
    dagster-pipes==1.13.27
    hjson==3.1.0
    peft==0.21.2
)
DEEPSPEED=0.19.8
PLAT=(--only-binary=:all: --python-version 3.12 --implementation cp
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64)

mkdir -p .whl
want=()
for spec in "${WHEELS[@]}"; do
    name=${spec%%==*}; ver=${spec##*==}
    stem="${name//-/_}-${ver}-"
    want+=("$stem")
    if ! compgen -G ".whl/${stem}*.whl" >/dev/null; then
        python3 -m pip download -q --no-deps "${PLAT[@]}" -d .whl "$spec"
    fi
done

stem="deepspeed-${DEEPSPEED}-"
want+=("$stem")
if ! compgen -G ".whl/${stem}*.whl" >/dev/null; then
    tmp=$(mktemp -d)
    python3 -m pip download -q --no-deps --no-binary=:all: -d "$tmp" "deepspeed==$DEEPSPEED"
    # setup.py imports torch (any build: no ops are compiled); the wheel is py3-none-any
    DS_BUILD_OPS=0 OMP_NUM_THREADS=1 "$PY" -m pip wheel -q --no-deps --no-build-isolation -w .whl "$tmp"/deepspeed-*.tar.gz
    rm -rf "$tmp"
fi

for f in .whl/*.whl; do
    keep=0
    for s in "${want[@]}"; do case "$(basename "$f")" in "$s"*) keep=1 ;; esac; done
    [ $keep = 1 ] || { echo "removing $f (not on the list)"; rm -f "$f"; }
done

# the tokenizer of the smoke profile's tiny model (converts the bundled SmolLM2 GGUF once if needed)
if [ ! -f .gpu_model/tokenizer.json ]; then
    rm -rf .gpu_model.partial && mkdir -p .gpu_model.partial
    "$PY" - <<'EOF'
import shutil
from pathlib import Path

from act_pipeline.config import load_config
from act_pipeline.models import resolve_base_model

cfg = load_config("configs/smoke.yaml")
tiny = Path(resolve_base_model(cfg.model, cfg.seed, log=print))
for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json"):
    if (tiny / name).exists():
        shutil.copy2(tiny / name, Path(".gpu_model.partial") / name)
EOF
    rm -rf .gpu_model && mv .gpu_model.partial .gpu_model
fi

ls -l .whl .gpu_model
du -ch .whl .gpu_model | tail -1
echo "ignored via $EXCLUDE:"; git check-ignore -v .whl .gpu_model || { echo "NOT IGNORED" >&2; exit 1; }
