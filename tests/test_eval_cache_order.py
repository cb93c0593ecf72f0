"""Seeds evaluated side by side: while another process scores the base model (its key's file lock
held), an evaluation scores its own arms first and then reads the base model's scores back, instead
of idling on the lock; the results keep the plan's order."""

import subprocess
import sys
import time

from act_pipeline.config import EvalConfig, ModelConfig
from act_pipeline.evaluation import run
from act_pipeline.evaluation.metrics import Metric

HOLDER = """
import fcntl, json, pathlib, sys, time
root, key, go = pathlib.Path(sys.argv[1]), sys.argv[2], pathlib.Path(sys.argv[3])
with open(root / f"{key}.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    (root / "held").write_text("1")
    deadline = time.time() + 10
    while not go.exists():  # 'scoring' until the test says the other arms are done
        if time.time() > deadline:  # an evaluation that waits on the lock first never says so:
            sys.exit(0)             # give up without scores (it then scores the base model itself)
        time.sleep(0.05)
    (root / f"{key}.json").write_text(json.dumps({"metrics": [{"name": "judgement_accuracy", "value": 0.25,
        "split": "valid_unseen", "n": 4, "seed": 0}], "trace": None}))
"""


def _plan():
    return run.eval_plan(ModelConfig(), EvalConfig(metrics="paired", thinking_arm=False), {"uri": "base", "hash": "b0"},
                         {"act_checkpoint": {"uri": "act", "hash": "a0"}, "il_baseline": {"uri": "il", "hash": "i0"}})


def test_an_arm_locked_elsewhere_is_read_back_after_the_others(tmp_path, monkeypatch):
    cache = run.EvalCache(tmp_path / "cache", "v1")
    cache.root.mkdir()
    plan, e = _plan(), EvalConfig(metrics="paired", thinking_arm=False)
    pairs, states = {"model_driven": [], "random_fill": []}, []
    base_key = cache.key(plan[0][1], plan[0][2], pairs, states, e, run.arm_metrics(plan[0][0], e))
    go = tmp_path / "go"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(cache.root), base_key, str(go)])
    try:
        deadline = time.time() + 30
        while not (cache.root / "held").exists():
            assert time.time() < deadline and holder.poll() is None, "the holder never took the lock"
            time.sleep(0.05)
        scored = []

        def fake_arm(i, plan, *args, **kwargs):  # the scoring itself is tested elsewhere: record the order
            arm = plan[i - 1][0]
            scored.append(arm)
            if len(scored) == 2:
                go.write_text("1")  # the other process finishes the base model after our two arms
            return [Metric("next_action_accuracy", 0.5, "valid_unseen", 2, 0)], None

        monkeypatch.setattr(run, "_evaluate_arm", fake_arm)
        logs = []
        results, traces = run.evaluate_arms(plan, pairs, states, "valid_unseen", 1, ModelConfig(), e, "alfworld",
                                            log=logs.append, cache=cache)
    finally:
        go.write_text("1")
        holder.wait(30)
    assert scored == ["act_checkpoint", "il_baseline"]  # the base model was never scored here
    assert list(results) == ["prompt_no_thinking", "act_checkpoint", "il_baseline"]  # the plan's order
    assert results["prompt_no_thinking"][0].value == 0.25  # read back: the other process's scores
    assert any("another process is scoring it" in m for m in logs)
    assert any("scored before on the same items" in m for m in logs)


def test_without_contention_the_plan_order_is_kept_and_scores_are_cached(tmp_path, monkeypatch):
    cache = run.EvalCache(tmp_path / "cache", "v1")
    scored = []
    monkeypatch.setattr(run, "_evaluate_arm", lambda i, plan, *a, **k: (
        scored.append(plan[i - 1][0]) or [Metric("x", 0.5, "s", 2, 0)], None))
    args = ({"model_driven": [], "random_fill": []}, [], "valid_unseen", 1, ModelConfig(), EvalConfig(metrics="paired", thinking_arm=False),
            "alfworld")
    run.evaluate_arms(_plan(), *args, log=lambda m: None, cache=cache)
    assert scored == ["prompt_no_thinking", "act_checkpoint", "il_baseline"]
    run.evaluate_arms(_plan(), *args, log=lambda m: None, cache=cache)
    assert len(scored) == 3  # the second evaluation read every arm back
