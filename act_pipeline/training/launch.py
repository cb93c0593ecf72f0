"""The out-of-process training entry point: one JSON job in, one checkpoint out.

Run by ``accelerate launch --config_file configs/accelerate/<name>.yaml -m
act_pipeline.training.launch JOB.json`` by hand, or by the Dagster asset through Dagster Pipes
with ``-m act_pipeline.assets.pipes_entry JOB.json`` (see ``act_pipeline/assets/launch.py``). Every process reads the same job
file; only the main process (rank 0) talks to Dagster: its log lines stream to the run's log and
the checkpoint's URI, content hash and global step come back as materialization metadata (that
part lives in ``act_pipeline/assets/pipes_entry.py``: the core never imports dagster or dagster_pipes).

The job (plain JSON, no pickles)::

    {"stage": "act" | "il" | "rl" | "ee" | <a registered stage>,
     "init_model": "<HF folder>", "data_uri": "<Parquet file>",
     "filters": {"split": "train", "won": true},        # column == value, applied to the rows
     "out_dir": "<final checkpoint folder>", "work_dir": "<trainer checkpoints, for resuming>",
     "config": {...the stage's profile section...}, "training": {...the `training:` section...},
     "history_len": 3, "thinking": false, "trust_remote_code": false, "threads": 0,
     "card": {...model card fields...},
     "probe": {"split": "valid_unseen", "seed": 0}}      # act only: held-out pairs of data_uri to probe

Stages are plain functions registered with :func:`register_stage`; an RL stage plugs in the
same way.
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
    from act_pipeline.act.pairs import probe_pairs
    from act_pipeline.config import ACTConfig
    from act_pipeline.data.store import read_parquet
    from act_pipeline.training.act_grpo import train_act

    cfg = ACTConfig(**job["config"])
    heldout = None
    if job.get("probe") and cfg.probe_every > 0:  # the held-out pairs, from the job's own data file
        heldout = probe_pairs(read_parquet(job["data_uri"]).to_pylist(), job["probe"]["split"], cfg.probe_pairs,
                              job["probe"].get("seed", 0))
    return train_act(job["init_model"], rows, job["out_dir"], cfg, job.get("history_len", 3),
                     job.get("thinking", False), job.get("trust_remote_code", False), log=log, card=job.get("card"),
                     work_dir=job.get("work_dir"), training=_training_cfg(job), heldout=heldout)


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


@register_stage("ee")
def _ee(job: dict, rows: list[dict], log: Log) -> dict:
    """Early Experience (self-reflection): IL's SFT, with IL's settings (the same budget), on the
    expert steps with the model's reflections before each expert action."""
    from act_pipeline.config import ILConfig
    from act_pipeline.training.sft import reflection_dataset, train_sft

    return train_sft(job["init_model"], rows, job["out_dir"], ILConfig(**job["config"]), job.get("history_len", 3),
                     job.get("thinking", False), job.get("trust_remote_code", False), log=log, card=job.get("card"),
                     work_dir=job.get("work_dir"), training=_training_cfg(job), dataset=reflection_dataset)


# what each stage trains on: rows of its data file (ACT: pairs; IL and RL: expert steps; Early
# Experience: expert steps with reflections)
STAGE_FILTERS = {"act": {"split": "train"}, "il": {"split": "train", "won": True}, "rl": {"split": "train", "won": True},
                 "ee": {"split": "train", "won": True}}
# the profile section holding a stage's training settings, where it is not the stage's own name
STAGE_SECTIONS = {"ee": "il"}


def stage_section(stage: str) -> str:
    """
    >>> stage_section("ee"), stage_section("act")
    ('il', 'act')
    """
    return STAGE_SECTIONS.get(stage, stage)


def make_job(cfg, stage: str, history_len: int, init: dict, data: dict, out: Path, work: Path, card: dict,
             probe_split: str | None = None, seed: int | None = None) -> dict:
    """The job for ``stage`` from the profile ``cfg``: what both launchers run (:func:`run_job` in
    this process, or this JSON under ``accelerate launch``), so every training feature (probe,
    resume, model card) behaves the same either way. ``init``/``data`` are manifests (``uri``);
    ``seed`` (a training-seed partition) replaces the stage's own ``seed``."""
    d = cfg.to_dict()
    section = stage_section(stage)
    if seed is not None:
        d[section]["seed"] = seed
    job = {"stage": stage, "init_model": init["uri"], "data_uri": data["uri"], "filters": STAGE_FILTERS[stage],
           "out_dir": str(out), "work_dir": str(work), "config": d[section], "training": d["training"],
           "history_len": history_len, "thinking": cfg.model.thinking,
           "trust_remote_code": cfg.model.trust_remote_code, "threads": cfg.threads, "card": card}
    if stage == "act" and probe_split:  # the held-out pairs of the same file, selected as the evaluation does
        job["probe"] = {"split": probe_split, "seed": cfg.eval.seed}
    return job


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
    from act_pipeline.files import dir_hash

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


def main(argv: list[str] | None = None) -> int:
    """By hand (no Dagster): run the job, print progress and the result as JSON. Under Dagster the
    entry point is ``act_pipeline.assets.pipes_entry``, which wraps :func:`run_job` in Pipes."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m act_pipeline.training.launch JOB.json", file=sys.stderr)
        return 2
    job = load_job(argv[0])
    log = (lambda m: print(m, flush=True)) if is_main_process() else (lambda m: None)
    res = run_job(job, log=log)
    if is_main_process():
        print(json.dumps({k: v for k, v in res.items() if k != "log_history"}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
