"""Training out of process: ``accelerate launch`` through Dagster Pipes.

With ``training.launcher: accelerate`` a training asset writes its job as JSON beside the
checkpoint it will produce and runs::

    python -m accelerate.commands.launch --config_file configs/accelerate/<name>.yaml \\
        --num_processes N --main_process_port <free> -m act_pipeline.assets.pipes_entry JOB.json

under ``PipesSubprocessClient``. The entry point (``act_pipeline/assets/pipes_entry.py`` around the core's ``act_pipeline/training/launch.py``) opens Dagster
Pipes on rank 0: its log lines appear in this run's log as they happen, and the checkpoint's URI,
content hash and global step come back as materialization metadata, which this side checks
against the folder before passing the manifest downstream.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import dagster as dg

import act_pipeline
from act_pipeline.config import PipelineConfig, accelerate_config_path
from act_pipeline.files import write_json


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accelerate_command(cfg: PipelineConfig, job_path: Path) -> list[str]:
    t = cfg.training
    return [sys.executable, "-m", "accelerate.commands.launch",
            "--config_file", str(accelerate_config_path(t)),
            "--num_processes", str(t.num_processes),
            "--main_process_port", str(free_port()),
            "-m", "act_pipeline.assets.pipes_entry", str(job_path)]


def child_env(cfg: PipelineConfig) -> dict[str, str]:
    """The training processes import this same act_pipeline (its folder first on PYTHONPATH)."""
    src = str(Path(act_pipeline.__file__).resolve().parent.parent)
    path = [src] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != src]
    env = {"PYTHONPATH": os.pathsep.join(path), "TOKENIZERS_PARALLELISM": "false"}
    if cfg.threads:
        env["OMP_NUM_THREADS"] = str(cfg.threads)
    return env


def _value(v):
    return getattr(v, "value", v)


def launch_training(context: dg.AssetExecutionContext, cfg: PipelineConfig, job: dict) -> dict:
    """Run one training job with ``accelerate launch`` through Dagster Pipes; returns the stage's
    result (as the in-process ``train_*`` functions do) read from the Pipes metadata."""
    out = Path(job["out_dir"])
    job_path = out.parent / "job.json"
    job_path.parent.mkdir(parents=True, exist_ok=True)
    write_json(job_path, job)
    cmd = accelerate_command(cfg, job_path)
    context.log.info(f"launching {job['stage']}: {' '.join(cmd)}")
    client = dg.PipesSubprocessClient(env=child_env(cfg))
    invocation = client.run(context=context, command=cmd,
                            extras={"job": str(job_path), "stage": job["stage"]})
    reported = {k: _value(v) for k, v in invocation.get_materialize_result().metadata.items()}
    if "uri" not in reported or "content_hash" not in reported:
        raise dg.Failure(f"the training process reported no checkpoint (metadata: {sorted(reported)})")
    if Path(reported["uri"]).resolve() != out.resolve():
        raise dg.Failure(f"the training process reported {reported['uri']}, expected {out}")
    from act_pipeline.files import dir_hash

    if dir_hash(out) != reported["content_hash"]:
        raise dg.Failure(f"{out} does not match the content hash the training process reported")
    history = reported.get("log_history")
    if history is None:
        history = json.loads((out / "train_log.json").read_text())
    return {**{k: v for k, v in reported.items() if k not in ("uri", "rows")}, "log_history": history,
            "launcher": "accelerate (reported through Dagster Pipes)", "accelerate_config": str(accelerate_config_path(cfg.training)),
            "job": str(job_path)}
