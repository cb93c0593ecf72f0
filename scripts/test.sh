#!/usr/bin/env bash
# The test suite (set-up included). Extra arguments go to pytest, e.g. `scripts/test.sh -m slow`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
# tests use the real ALFWorld games beside the checkout unless ALFWORLD_DATA says otherwise; without
# either they play games generated offline (tests/alfworld_source.py)
if [ -z "${ALFWORLD_DATA:-}" ] && [ -d ../shared/alfworld/json_2.1.1 ]; then
  export ALFWORLD_DATA="$(cd ../shared/alfworld && pwd)"
fi
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" TOKENIZERS_PARALLELISM=false
# the default run: on ACT_TEST_WORKERS pytest-xdist workers (default 2, the cores this project is
# sized for; 0: in this one process), each test module whole on one worker (its module fixture runs
# once), modules handed out in collection order (tests/conftest.py puts the longest first); it
# prints its 30 slowest tests (where the time goes, in the CI log too)
if [ $# -eq 0 ]; then
  set -- -m "not slow" --durations=30 -n "${ACT_TEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder
fi
exec python -m pytest "$@"
