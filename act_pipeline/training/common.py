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
                log(f"step {state.global_step}/{total_steps} ({rate:.2f} steps/s)")

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
