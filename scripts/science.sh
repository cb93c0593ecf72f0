#!/usr/bin/env bash
# The science result (README: Results), on this machine.
#   scripts/science.sh [--home DIR] [--jobs N=3]    configs/science.yaml on a fresh data root, then
#                                                   results/science/{latest.json,latest.md,*.png}
#   scripts/science.sh --tune LR[,LR...] [--home DIR]   configs/science-tune.yaml (the validation
#                                                   split, one seed) for each ACT learning rate
#                                                   → results/science/tuning.json
#   scripts/science.sh --tune-set 'act.learning_rate=3e-6 act.num_generations=2' [--tune-set ...] [--home DIR]
#                                                   the same, one run per candidate's profile fields
# ALFWORLD_DATA: the official ALFWorld data (default ../shared/alfworld when it is there).
set -euo pipefail
cd "$(dirname "$0")/.."
home=".act_home_science" tune="" sets=() jobs=3  # the 3 seeds at once (one torch thread each; IL in micro-batches of 2 fits 24 GiB)
while [ $# -gt 0 ]; do
  case "$1" in
    --home) home="$2"; shift 2 ;;
    --tune) tune="$2"; shift 2 ;;
    --tune-set) sets+=(--set "$2"); shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    *) echo "usage: scripts/science.sh [--home DIR] [--jobs N] [--tune LR,LR,... | --tune-set SETTINGS ...]" >&2; exit 2 ;;
  esac
done
if [ -z "${ALFWORLD_DATA:-}" ] && [ -d ../shared/alfworld ]; then export ALFWORLD_DATA="$PWD/../shared/alfworld"; fi
[ -n "${ALFWORLD_DATA:-}" ] || { echo "error: set ALFWORLD_DATA to the official ALFWorld data (the science profile plays the real games)" >&2; exit 2; }
scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false DAGSTER_HOME="${DAGSTER_HOME:-$PWD}"
if [ -n "$tune" ]; then
  exec python -m act_pipeline.science tune --home "${home}_tune" --rates "$tune"
fi
if [ ${#sets[@]} -gt 0 ]; then
  exec python -m act_pipeline.science tune --home "${home}_tune" "${sets[@]}"
fi
if [ -e "$home" ]; then
  echo "error: $home exists: the science run starts from a fresh data root (remove it, or pass --home)" >&2
  exit 2
fi
act-pipeline run --profile configs/science.yaml --home "$home" --jobs "$jobs" --model-steps "$jobs"
python -m act_pipeline.science publish --home "$home" --out results/science
