"""The benchmark command runs end to end (``--quick``: tiny model, small inputs) and writes results
with the documented shape. Marked ``bench``; not collected by the default test run (``testpaths``
does not include benchmarks/). Run: ``python -m pytest benchmarks -m bench``."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.run import BENCHMARKS

REPO = Path(__file__).resolve().parent.parent
WAY_KEYS = {"label", "rate", "unit", "median_s", "seconds"}


@pytest.mark.bench
@pytest.mark.timeout(3900)  # past the subprocess's own 3600 s, so that one reports first
def test_quick_suite_writes_the_results(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if not env.get("ALFWORLD_DATA") and (REPO.parent / "shared" / "alfworld" / "json_2.1.1").is_dir():
        env["ALFWORLD_DATA"] = str(REPO.parent / "shared" / "alfworld")
    res = subprocess.run([sys.executable, "-m", "benchmarks.run", "--quick", "--out", str(tmp_path)], cwd=REPO,
                         env=env, capture_output=True, text=True, timeout=3600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    doc = json.loads((tmp_path / "latest.json").read_text())
    assert doc["quick"] is True
    for key in ("cpu_model", "logical_cpus", "torch", "transformers", "trl", "torch_threads", "date_utc", "git_commit"):
        assert doc["machine"].get(key) not in (None, ""), key
    assert {r["benchmark"] for r in doc["results"]} == set(BENCHMARKS)
    names = {r["name"] for r in doc["results"]}
    assert {"sampling", "rollouts", "grpo_step", "noop_rerun", "incremental_games", "pairs_build",
            "pairs_query", "prefill_b1", "prefill_b16", "tokens_b1", "tokens_b16", "data_scaling", "data_increment"} <= names
    for r in doc["results"]:
        assert "error" not in r, r
        assert WAY_KEYS <= set(r["a"]) and WAY_KEYS <= set(r["b"]), r["name"]
        assert r["met"] in (True, False, None) and r["goal"]
        assert r["ratio"] is None or r["ratio"] > 0
    by = {r["name"]: r for r in doc["results"]}
    for name in ("prefill_b1", "prefill_b16", "tokens_b1", "tokens_b16"):  # measured against a bound
        r = by[name]
        assert r["a"]["rate"] > 0 and r["b"]["rate"] > 0 and r["met"] is (r["ratio"] >= 0.6), name
        assert r["roofline"]["peak_GFLOPs"] > 0 and r["roofline"]["read_GBps"] > 0, name
        assert r["a"]["bound_by"] in ("compute", "memory bandwidth"), name
    assert by["tokens_b1"]["a"]["bound_by"] == "memory bandwidth"
    assert {x["lever"].split(" (")[0] for x in by["prefill_b1"]["before_after"]} >= {"attention implementation"}
    assert all(x["identical_greedy_tokens"] for r in by.values() for x in r.get("before_after", [])
               if "identical_greedy_tokens" in x)
    for name in ("sampling", "rollouts"):  # the pipeline's time against the least time of its own calls
        bound = by[name]["bound"]
        assert 0 < bound["fraction_of_bound"] and bound["decode_steps"] > 0 and bound["prefill_tokens"] > 0, name
        assert by[name]["met"] is (bound["fraction_of_bound"] >= 0.8) or name == "rollouts", name
    assert by["rollouts"]["bound"]["outside_generate_s"] > 0  # env time counted as measured
    assert by["rollouts"]["checks"]["identical_action_traces"] is True  # greedy: the same actions both ways
    assert by["rollouts"]["checks"]["identical_success_counts"] is True
    assert by["pairs_build"]["checks"]["same_pair_count"] is True
    assert 0 < by["incremental_games"]["fraction_resampled"] < 1
    assert by["noop_rerun"]["b"]["median_s"] > 0
    assert by["grpo_step"]["a"]["median_step_s"] > 0 and by["grpo_step"]["b"]["median_step_s"] > 0
    assert [s["scale"] for s in by["data_scaling"]["scales"]] == [1, 2, 4]  # --quick
    assert all(s["games_replayed"] == s["games"] > 0 for s in by["data_scaling"]["scales"])  # cold roots
    inc = by["data_increment"]["checks"]
    assert inc["games_replayed"] == 0 and inc["played_rows_unchanged"] is True and inc["rows_added"] > 0
    assert 0 < inc["states_sampled"] < inc["states"]  # only the imported states
    table = (tmp_path / "latest.md").read_text()
    assert "| benchmark | way A (baseline, or the bound) | way B (pipeline, or measured) |" in table
    assert all(f"| {n} |" in table for n in names)
