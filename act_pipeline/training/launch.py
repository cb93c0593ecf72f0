"""The out-of-process training entry point: one JSON job in, one checkpoint out.

Run by ``accelerate launch --config_file configs/accelerate/<name>.yaml -m
act_pipeline.training.launch JOB.json`` (the Dagster asset does this through Dagster Pipes; see
``act_pipeline/assets/launch.py``), or by hand for debugging. Every process reads the same job
file; only the main process (rank 0) talks to Dagster: its log lines stream to the run's log and
the checkpoint's URI, content hash and global step come back as materialization metadata.

The job (plain JSON, no pickles)::

    {"stage": "act" | "il" | <a registered stage>,
     "init_model": "<HF folder>", "data_uri": "<Parquet file>",
     "filters": {"split": "train", "won": true},        # column == value, applied to the rows
     "out_dir": "<final checkpoint folder>", "work_dir": "<trainer checkpoints, for resuming>",
     "config": {...the stage's profile section...}, "training": {...the `training:` section...},
     "history_len": 3, "thinking": false, "trust_remote_code": false, "threads": 0,
     "card": {...model card fields...}}

Stages are plain functions registered with :func:`register_stage`; an RL stage plugs in the
same way. This module imports ``dagster_pipes`` (the small, dependency-free Pipes package), never
``dagster``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from act_pipeline.training.common import Log

StageFn = Callable[[dict, list[dict], Log], dict]
STAGES: dict[str, StageFn] = {}


def register_stage(name: str):
    """Register ``fn(job, rows, log) -> result`` (a dict with at least ``global_step``) as a stage."""

    def deco(fn: StageFn) -> StageFn:
        STAGES[name] = fn
        return fn

    return deco


def _training_cfg(job: dict):
    from act_pipeline.config import TrainingConfig, VLLMTrainConfig

    t = dict(job.get("training") or {})
    t["vllm"] = VLLMTrainConfig(**(t.get("vllm") or {}))
    return TrainingConfig(**t)


@register_stage("act")
def _act(job: dict, rows: list[dict], log: Log) -> dict:
    from act_pipeline.config import ACTConfig
    from act_pipeline.training.act_grpo import train_act

    return train_act(job["init_model"], rows, job["out_dir"], ACTConfig(**job["config"]), job.get("history_len", 3),
                     job.get("thinking", False), job.get("trust_remote_code", False), log=log, card=job.get("card"),
                     work_dir=job.get("work_dir"), training=_training_cfg(job))


@register_stage("il")
def _il(job: dict, rows: list[dict], log: Log) -> dict:
    from act_pipeline.config import ILConfig
    from act_pipeline.training.sft import train_sft

    return train_sft(job["init_model"], rows, job["out_dir"], ILConfig(**job["config"]), job.get("history_len", 3),
                     job.get("thinking", False), job.get("trust_remote_code", False), log=log, card=job.get("card"),
                     work_dir=job.get("work_dir"), training=_training_cfg(job))


@register_stage("rl")
def _rl(job: dict, rows: list[dict], log: Log) -> dict:
    from act_pipeline.config import RLConfig
    from act_pipeline.training.rl_grpo import train_rl

    return train_rl(job["init_model"], rows, job["out_dir"], RLConfig(**job["config"]), job.get("history_len", 3),
                    job.get("thinking", False), job.get("trust_remote_code", False), log=log, card=job.get("card"),
                    work_dir=job.get("work_dir"), training=_training_cfg(job))


def select_rows(rows: list[dict], filters: dict) -> list[dict]:
    """The rows whose columns equal every filter value.

    >>> select_rows([{"split": "train", "won": True}, {"split": "valid_unseen", "won": True},
    ...              {"split": "train", "won": False}], {"split": "train", "won": True})
    [{'split': 'train', 'won': True}]
    """
    return [r for r in rows if all(r.get(k) == v for k, v in filters.items())]


def load_job(path: str | os.PathLike) -> dict:
    job = json.loads(Path(path).read_text(encoding="utf-8"))
    missing = [k for k in ("stage", "init_model", "data_uri", "out_dir", "config") if k not in job]
    if missing:
        raise ValueError(f"{path}: job is missing {', '.join(missing)}")
    if job["stage"] not in STAGES:
        raise ValueError(f"{path}: unknown stage {job['stage']!r} (known: {', '.join(sorted(STAGES))})")
    return job


def run_job(job: dict, log: Log) -> dict:
    """Train one stage; returns its result plus the checkpoint's URI and content hash."""
    from act_pipeline.data.store import read_parquet
    from act_pipeline.training.models import dir_hash

    if job.get("threads"):
        import torch

        torch.set_num_threads(int(job["threads"]))
    rows = select_rows(read_parquet(job["data_uri"]).to_pylist(), job.get("filters") or {})
    res = STAGES[job["stage"]](job, rows, log)
    out = Path(job["out_dir"])
    res = {**res, "uri": str(out), "rows": len(rows)}
    if is_main_process():
        res["content_hash"] = dir_hash(out)
    return res


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def metadata(res: dict) -> dict:
    """Materialization metadata for Pipes: scalars as they are, the rest as JSON (NaN/inf as null).

    >>> metadata({"uri": "/m", "global_step": 2, "zero_stage": None, "log_history": [{"loss": float("nan")}]})
    {'uri': {'raw_value': '/m', 'type': 'path'}, 'global_step': 2, 'zero_stage': {'raw_value': None, 'type': 'null'}, 'log_history': {'raw_value': [{'loss': None}], 'type': 'json'}}
    """
    from act_pipeline.training.common import _finite

    md: dict = {}
    for k, v in _finite(res).items():
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
        print("usage: python -m act_pipeline.training.launch JOB.json", file=sys.stderr)
        return 2
    job = load_job(argv[0])
    if not is_main_process():
        run_job(job, log=lambda m: None)  # only rank 0 reports
        return 0
    from dagster_pipes import DAGSTER_PIPES_CONTEXT_ENV_VAR, open_dagster_pipes

    if not os.environ.get(DAGSTER_PIPES_CONTEXT_ENV_VAR):  # by hand: print, and the result as JSON
        res = run_job(job, log=lambda m: print(m, flush=True))
        print(json.dumps({k: v for k, v in res.items() if k != "log_history"}, default=str))
        return 0
    with open_dagster_pipes() as pipes:
        pipes.log.info(f"{job['stage']}: {os.environ.get('WORLD_SIZE', '1')} process(es), job {argv[0]}")
        res = run_job(job, log=pipes.log.info)
        pipes.report_asset_materialization(metadata=metadata(res), data_version=res["content_hash"][:16])
    return 0


if __name__ == "__main__":
    sys.exit(main())
