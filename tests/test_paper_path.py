"""The paper path on CPU: the graph materialized with the paper profile's data and method settings —
its stratified pair cap, thinking, fill policy, the judgement probe, the `accelerate` launcher through
Dagster Pipes, evaluation at temperature 0.4 — but the tiny model, a handful of games and a few steps.

This is what keeps a GPU user's first run of `configs/paper-qwen3-8b.yaml` from failing silently:
held-out N > 0 everywhere, every task type in the training pairs, a probe curve, arms named by
what they ran. Only what cannot run here is changed (vLLM, GPUs, sizes), and the cap is scaled so
that it binds on a handful of games as 10,240 binds on the full train set.

The ScienceWorld chain is switched off here to keep the default suite near 20 minutes: its chain
runs in the smoke test with the same checks, and the cap's ScienceWorld case (its held-out split,
``test``, sorts after ``train``: the old cap filled up with held-out pairs) is pinned on the real
pair SQL by tests/test_pairs_cap.py.
"""

import json
import os
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from .conftest import REPO

PAPER = REPO / "configs" / "paper-qwen3-8b.yaml"
CAP = 20  # scaled: a handful of games gives ~100 training pairs; the paper's 10,240 of ~40,000


def _profile(tmp_path: Path) -> Path:
    d = yaml.safe_load(PAPER.read_text())
    method = {"policy": d["sampling"]["policy"], "thinking": d["model"]["thinking"],
              "launcher": d["training"]["launcher"], "eval_temperature": d["eval"]["temperature"]}
    assert method == {"policy": "free+random_fill", "thinking": True, "launcher": "accelerate",
                      "eval_temperature": 0.4}  # what this test keeps; fails if the paper profile changes
    d["name"] = "paper-path-cpu"
    d["threads"] = 1
    d["model"] = {"source": "tiny-random", "hidden_size": 64, "num_layers": 2, "num_heads": 4, "thinking": True}
    d["alfworld"].update(train_games=6, eval_state_games=2, max_expert_steps=30, history_len=2)
    d["sampling"] = {**{k: v for k, v in d["sampling"].items() if k not in
                        ("backend", "tensor_parallel_size", "gpu_memory_utilization")},
                     "max_new_tokens": 12, "batch_size": 32}
    d["pairs"]["max_pairs"] = CAP
    small = {"max_steps": 2, "per_device_train_batch_size": 4, "save_steps": 0, "bf16": False}
    d["act"].update(small, num_generations=4, max_completion_length=8, probe_every=1, probe_pairs=4,
                    probe_max_new_tokens=12)
    d["il"].update(small)
    d["rl"].update(small, num_generations=4, max_completion_length=8)
    # as the smoke profile: the paper's 3 alternatives and 512-token reflections (its evaluation budget is
    # 512 + eval.max_new_tokens per answer) cost minutes with nothing here checking the arm's size;
    # greedy reflections (the paper's temperature) are kept
    d["early_experience"].update(alternatives=1, max_new_tokens=8, batch_size=16)
    d["training"] = {"launcher": "accelerate", "accelerate_config": "configs/accelerate/cpu.yaml",
                     "num_processes": 1}
    d["eval"].update(heldout_pairs=8, heldout_states=8, games_valid_seen=1, games_valid_unseen=1, max_steps=2,
                     max_new_tokens=8, thinking_max_new_tokens=12, batch_size=16)
    d["scienceworld"]["enabled"] = False
    d["envs"].update(eval_workers=1, reset_timeout_s=300, step_timeout_s=60, max_rss_mb=4096)
    path = tmp_path / "paper-path.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory, alfworld_data):
    tmp = tmp_path_factory.mktemp("paper_path")
    home, dagster_home = tmp / "home", tmp / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    old = dict(os.environ)
    os.environ.update({"ALFWORLD_DATA": str(alfworld_data), "DAGSTER_HOME": str(dagster_home)})
    try:
        from act_pipeline.cli import main

        rc = main(["run", "--profile", str(_profile(tmp)), "--home", str(home)])
    finally:
        os.environ.clear()
        os.environ.update(old)
    assert rc == 0
    # by manifest name: "__".join(key.path) (alfworld__contrast_pairs, eval_report)
    manifests = {p.stem: json.loads(p.read_text()) for p in (home / "manifests").glob("*.json")}
    return {"home": home, "m": manifests}


def test_cap_keeps_every_heldout_pair_and_every_task_type(run):
    m, prefix, heldout = run["m"], "alfworld__", "valid_unseen"
    pairs = pq.read_table(m[f"{prefix}contrast_pairs"]["uri"]).to_pylist()
    train = [p for p in pairs if p["split"] == "train"]
    assert 0 < len(train) <= CAP and any(p["split"] == heldout for p in pairs)
    steps = pq.read_table(m[f"{prefix}expert_trajectories"]["uri"]).to_pylist()
    assert {s["task_type"] for s in steps if s["split"] == "train" and s["won"]} == {p["task_type"] for p in train}
    assert {p["origin"] for p in pairs} <= {"model", "model_constrained", "random_fill"}


def test_probe_curve_through_accelerate(run):
    curve = run["m"]["alfworld__act_checkpoint"]["judgement_curve"]  # came back from the training process through Pipes
    assert [c["step"] for c in curve] == [0, 1, 2] and all(c["n"] > 0 and c["split"] == "valid_unseen" for c in curve)


def test_arms_named_by_thinking_and_heldout_n_everywhere(run):
    rep = json.loads(Path(run["m"]["eval_report"]["report_json"]).read_text())
    for bench_results in (rep["results"],):
        assert {"prompt_thinking", "prompt_no_thinking"} <= set(bench_results)  # thinking model: both settings
        for arm, metrics in bench_results.items():
            thinks = {m["detail"]["thinking"] for m in metrics}
            assert thinks == {arm != "prompt_no_thinking"}, arm
            names = Counter(m["name"] for m in metrics)
            # the tiny random model names no admissible action: every held-out pair is a random fill,
            # reported apart; the model-driven headline says N = 0 rather than mixing them in
            assert names["judgement_accuracy"] == 1 and names["next_action_accuracy"] == 1
            for metric in metrics:
                if metric["name"] != "judgement_accuracy":
                    assert metric["n"] > 0, (arm, metric["name"], metric["split"])
                assert "truncation_rate" in metric["detail"]
    md = Path(run["m"]["eval_report"]["report_md"]).read_text()
    assert "Prompt w/ thinking (base model)" in md and "temperature 0.4" in md
    assert "How these numbers were made" in md and "Learning signal of the GRPO stages" in md
    assert "— (N=0)" in md  # the empty model-driven headline is said, not hidden or mixed with random fills
    arms = [ln.split(" |")[0].lstrip("| ") for ln in md.split("## The paper's numbers")[0].splitlines()
            if ln.startswith("| ") and "(N=" in ln]
    assert arms[:3] == ["Prompt w/o thinking (base model)", "Prompt w/ thinking (base model)", "ACT only"]
