"""Shared pieces of the training stages: rows -> prompts, run bookkeeping, saving."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

from act_pipeline.act.prompts import State

Log = Callable[[str], None]


def row_state(row: dict) -> State:
    """A :class:`State` from a trajectory / pair row (``history`` is a list of {action, observation})."""
    hist = [(h["action"], h["observation"]) for h in (row.get("history") or [])]
    return State(task=row["task"], observation=row["observation"], history=hist,
                 admissible=list(row["admissible"]))


def progress_callback(log: Log, total_steps: int, every: int = 5):
    """A transformers TrainerCallback that reports progress and keeps the log history."""
    from transformers import TrainerCallback

    class _Progress(TrainerCallback):
        def __init__(self):
            self.history: list[dict] = []
            self.t0 = time.time()

        def on_log(self, args, state, control, logs=None, **kw):
            if logs:
                self.history.append({"step": state.global_step, **logs})

        def on_step_end(self, args, state, control, **kw):
            if state.global_step % every == 0 or state.global_step == total_steps:
                rate = state.global_step / max(1e-9, time.time() - self.t0)
                last = self.history[-1] if self.history else {}
                shown = ", ".join(f"{k} {last[k]:.4g}" for k in ("reward", "loss") if isinstance(last.get(k), float))
                log(f"step {state.global_step}/{total_steps} ({rate:.2f} steps/s){'; ' + shown if shown else ''}")

    return _Progress()


def weights_finite(model) -> bool:
    import torch

    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def _finite(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    return v


def write_json(path: Path, data) -> None:
    """JSON with non-finite floats as null (valid JSON for every reader)."""
    Path(path).write_text(json.dumps(_finite(data), indent=2, default=str, sort_keys=True))


def checkpoint_args(work: Path, save_steps: int) -> dict:
    """Trainer arguments for resumable runs: keep the last trainer checkpoint in ``work``."""
    if save_steps > 0:
        return {"output_dir": str(work), "save_strategy": "steps", "save_steps": save_steps, "save_total_limit": 1}
    return {"output_dir": str(work), "save_strategy": "no"}


def train_and_save(trainer, tokenizer, out_dir: Path, work: Path, progress, card: dict | None, log: Log, what: str):
    """Train (resuming from the last checkpoint in ``work`` if a previous attempt left one),
    check the weights, and write the final folder atomically; ``work`` is removed on success."""
    import shutil

    from transformers.trainer_utils import get_last_checkpoint

    from act_pipeline.training.card import write_model_card
    from act_pipeline.training.models import atomic_dir

    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # progress goes to the log (Dagster's), not stdout
    last = get_last_checkpoint(str(work)) if Path(work).is_dir() else None
    if last:
        log(f"{what}: resuming from {last}")
    result = trainer.train(resume_from_checkpoint=last)
    if not weights_finite(trainer.model):
        raise FloatingPointError(f"{what} produced non-finite weights; checkpoint not saved")
    with atomic_dir(out_dir) as tmp:
        trainer.save_model(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        (tmp / "training_args.bin").unlink(missing_ok=True)  # a pickle: never ship it
        write_json(tmp / "train_log.json", progress.history)
        if card is not None:
            write_model_card(tmp, {**card, "global_step": result.global_step, "resumed_from": last})
    shutil.rmtree(work, ignore_errors=True)
    return result, last
