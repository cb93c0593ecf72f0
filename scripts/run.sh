#!/usr/bin/env bash
# The main job on the embedded default: local DuckDB, local files, CPU, the bundled model.
#   scripts/run.sh [--profile configs/default.yaml] [--home DIR]
# ALFWORLD_DATA: your ALFWorld data folder (holding json_2.1.1/); unset = games generated offline.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
export HF_HUB_OFFLINE=1 DAGSTER_HOME="${DAGSTER_HOME:-$PWD}"
exec act-pipeline run "$@"
