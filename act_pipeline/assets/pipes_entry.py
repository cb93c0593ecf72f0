"""The training entry point under Dagster Pipes: ``act_pipeline.training.launch`` plus reporting.

``accelerate launch ... -m act_pipeline.assets.pipes_entry JOB.json`` (from
``act_pipeline/assets/launch.py``). Every process trains (``run_job``); only rank 0 opens Dagster
Pipes: its log lines stream to the run's log and the checkpoint's URI, content hash and global
step come back as materialization metadata. This is the Dagster layer's side of the entry point
(it imports ``dagster_pipes``, the small Pipes package); the core in
``act_pipeline/training/launch.py`` imports neither it nor ``dagster``.
"""

from __future__ import annotations

import os
import sys

from act_pipeline.training.launch import is_main_process, load_job, run_job


def metadata(res: dict) -> dict:
    """Materialization metadata for Pipes: scalars as they are, the rest as JSON (NaN/inf as null).

    >>> metadata({"uri": "/m", "global_step": 2, "zero_stage": None, "log_history": [{"loss": float("nan")}]})
    {'uri': {'raw_value': '/m', 'type': 'path'}, 'global_step': 2, 'zero_stage': {'raw_value': None, 'type': 'null'}, 'log_history': {'raw_value': [{'loss': None}], 'type': 'json'}}
    """
    from act_pipeline.files import finite

    md: dict = {}
    for k, v in finite(res).items():
        if k == "uri":
            md[k] = {"raw_value": v, "type": "path"}
        elif v is None or isinstance(v, (bool, int, float, str)):
            md[k] = v if v is not None else {"raw_value": None, "type": "null"}
        else:
            md[k] = {"raw_value": v, "type": "json"}
    return md


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m act_pipeline.assets.pipes_entry JOB.json", file=sys.stderr)
        return 2
    from dagster_pipes import DAGSTER_PIPES_CONTEXT_ENV_VAR, open_dagster_pipes

    if not is_main_process() or not os.environ.get(DAGSTER_PIPES_CONTEXT_ENV_VAR):
        # other ranks, or no Dagster around: the core entry point (rank 0 prints)
        from act_pipeline.training.launch import main as run_by_hand

        return run_by_hand(argv)
    job = load_job(argv[0])
    with open_dagster_pipes() as pipes:
        pipes.log.info(f"{job['stage']}: {os.environ.get('WORLD_SIZE', '1')} process(es), job {argv[0]}")
        res = run_job(job, log=pipes.log.info)
        pipes.report_asset_materialization(metadata=metadata(res), data_version=res["content_hash"][:16])
    return 0


if __name__ == "__main__":
    sys.exit(main())
