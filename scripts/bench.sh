#!/usr/bin/env bash
# The benchmark suite (not part of the test run): writes benchmarks/results/latest.json and latest.md.
# Arguments go to `python -m benchmarks.run`, e.g. `scripts/bench.sh --quick` or `--only sampling,pairs`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
python -c "import pyinstrument" 2>/dev/null || python -m pip install -q -c .venv/constraints.txt -e '.[bench]'
if [ -z "${ALFWORLD_DATA:-}" ] && [ -d ../shared/alfworld/json_2.1.1 ]; then
  export ALFWORLD_DATA="$(cd ../shared/alfworld && pwd)"
fi
# one thread by default: the machine is shared, and every ratio is taken at the same setting
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" TOKENIZERS_PARALLELISM=false
exec python -m benchmarks.run "$@"
