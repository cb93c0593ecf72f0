#!/usr/bin/env bash
# The main job on the embedded default: local DuckDB, local files, CPU, the bundled model.
#   scripts/run.sh [--profile configs/default.yaml] [--home DIR]
# ALFWORLD_DATA: your ALFWorld data folder (holding json_2.1.1/); unset = games generated offline.
set -euo pipefail
cd "$(dirname "$0")/.."
# a bad ALFWORLD_DATA fails here, in seconds, with the reason: before any installation (standard library only)
if [ -n "${ALFWORLD_DATA:-}" ]; then
  py=.venv/bin/python; [ -x "$py" ] || py=${PYTHON:-python3}
  PYTHONPATH="$PWD" "$py" -c 'import sys; from act_pipeline.envs.alfworld import check_data_env; sys.exit(check_data_env())'
fi
scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
export HF_HUB_OFFLINE=1 DAGSTER_HOME="${DAGSTER_HOME:-$PWD}"
exec act-pipeline run "$@"
