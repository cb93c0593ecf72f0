"""Killing training mid-run (SIGKILL) and starting it again resumes from the last trainer checkpoint,
written every N steps (``save_steps``) or every N seconds (``save_every_s``)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROW = {"task": "put a mug in the sink.", "observation": "You see a sink 1.", "history": [],
       "admissible": ["go to sink 1", "look", "inventory"], "expert_action": "go to sink 1",
       "action_1": "go to sink 1", "action_2": "look", "expert_slot": 1}

SCRIPT = """
import json, sys
from act_pipeline.config import ACTConfig, ILConfig
from act_pipeline.training.act_grpo import train_act
from act_pipeline.training.sft import train_sft
kind, model, out, work, rows, save = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5]), json.loads(sys.argv[6])
if kind == "sft":
    train_sft(model, rows, out, ILConfig(max_steps=30, per_device_train_batch_size=2, **save), work_dir=work)
else:
    train_act(model, rows, out, ACTConfig(max_steps=16, per_device_train_batch_size=4,
                                          num_generations=4, max_completion_length=4, **save), work_dir=work)
"""
# every 2 steps, or every 0.3 s of training (a few steps of the tiny model)
SAVES = {"steps": {"save_steps": 2}, "seconds": {"save_every_s": 0.3}}


def complete_checkpoints(work: Path) -> list[int]:
    """Steps of the checkpoints in ``work`` a resume would accept (``checkpoint_complete``), in
    numeric order: a kill timed on ``trainer_state.json``'s mere existence can land before its text
    is written and leave none (then a fresh start is right)."""
    from act_pipeline.training.common import checkpoint_complete

    return sorted(int(c.name.split("-")[1]) for c in work.glob("checkpoint-*") if checkpoint_complete(c))


@pytest.mark.parametrize("every", list(SAVES))
@pytest.mark.parametrize("kind", ["sft", "act"])
def test_killed_training_resumes_to_the_same_final_step(tmp_path, tiny_model, kind, every):
    from act_pipeline.config import ACTConfig, ILConfig
    from act_pipeline.training.act_grpo import train_act
    from act_pipeline.training.sft import train_sft

    rows = [ROW, dict(ROW, action_1="look", action_2="go to sink 1", expert_slot=2)] * 4
    out, work = tmp_path / "model", tmp_path / "work"
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, kind, tiny_model, str(out), str(work), json.dumps(rows),
                             json.dumps(SAVES[every])],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not complete_checkpoints(work):
        assert proc.poll() is None, "training finished before it could be killed"
        assert time.time() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()  # no half-written final checkpoint
    killed_at = complete_checkpoints(work)[-1]  # numerically: checkpoint-10 sorts before checkpoint-8 as text

    if kind == "sft":
        res = train_sft(tiny_model, rows, out, ILConfig(max_steps=30, per_device_train_batch_size=2, **SAVES[every]),
                        work_dir=work, log=lambda m: None)
        total = 30
    else:
        res = train_act(tiny_model, rows, out, ACTConfig(max_steps=16, per_device_train_batch_size=4, num_generations=4,
                                                         max_completion_length=4, **SAVES[every]),
                        work_dir=work, log=lambda m: None)
        total = 16
    assert res["resumed_from"] is not None and Path(res["resumed_from"]).name == f"checkpoint-{killed_at}"
    assert killed_at < total and res["global_step"] == total  # same final step count as an uninterrupted run
    steps_logged = [h["step"] for h in res["log_history"] if "loss" in h]
    assert min(steps_logged) > killed_at  # the resumed run did not redo the finished steps
    assert (out / "model.safetensors").exists() and not work.exists()
