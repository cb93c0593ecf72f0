"""The benchmark command runs end to end (``--quick``: tiny model, small inputs) and writes results
with the documented shape. Marked ``bench``; not collected by the default test run (``testpaths``
does not include benchmarks/). Run: ``python -m pytest benchmarks -m bench``."""

import json
import os
import subprocess
import sys
import time
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
            "pairs_query", "constrained_scoring", "prefill_b1", "prefill_b16", "tokens_b1", "tokens_b16", "data_scaling", "data_increment",
            "sft_roofline", "grpo_roofline", "default_run"} <= names
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
    for name in ("tokens_b1", "tokens_b16"):  # a decoding step's products alone, plain and MKL-packed
        f = by[name]["matmul_floor"]
        assert f["plain"]["linears"] == f["packed"]["linears"] > 2 and f["plain"]["rows"] == by[name]["batch"], name
        assert f["plain"]["seconds"] > f["plain"]["head_s"] > 0 and f["products_share"] > 0, name
        assert f["packed"]["max_abs_diff"] < 1e-3 and isinstance(f["packed"]["identical"], bool), name
    assert {x["lever"].split(" (")[0] for x in by["prefill_b1"]["before_after"]} >= {"attention implementation"}
    assert all(x["identical_greedy_tokens"] for r in by.values() for x in r.get("before_after", [])
               if "identical_greedy_tokens" in x)
    for name in ("sampling", "rollouts"):  # the pipeline's time against the least time of its own calls
        bound = by[name]["bound"]
        assert 0 < bound["fraction_of_bound"] and bound["decode_steps"] > 0 and bound["prefill_tokens"] > 0, name
        assert by[name]["met"] is (bound["fraction_of_bound"] >= 0.8) or name == "rollouts", name
    sc = by["constrained_scoring"]  # the token tree against the padded batch, and against its bound
    assert sc["checks"]["max_abs_score_diff"] < 1e-4 and sc["checks"]["identical_draws"] is True
    assert sc["tokens"]["tree_nodes"] < sc["tokens"]["padded_batch"] and sc["met"] is (sc["bound"]["fraction_of_bound"] >= 0.8)
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
    for name in ("sft_roofline", "grpo_roofline"):
        r = by[name]
        assert r["matmul_peak"]["peak_GFLOPs"] == max(r["matmul_peak"]["GFLOPs"].values()) > 0
        assert 0 < r["matmul_params"] <= r["total_params"]  # the Linear weights (a tied LM head once)
        assert set(r["roofline_fraction"]) >= {"plain_trl", "pipeline"} and all(f > 0 for f in r["roofline_fraction"].values())
        assert r["met"] is (r["roofline_fraction"]["pipeline"] >= 0.5)
        assert r["checks"]["same_tokens_trained"] is True
        assert r["before_after"]
    sft = by["sft_roofline"]
    assert sft["padding_share"]["pipeline_padding_free"] == 0 < sft["padding_share"]["pipeline"]
    assert sft["checks"]["identical_losses_plain_trl"] is True and sft["checks"]["max_abs_loss_diff_padding_free"] < 1e-5
    assert by["grpo_roofline"]["checks"]["ref_model_loaded_at_beta_0"] is False
    d = by["default_run"]  # the smoke profile end to end, --jobs as many as cores
    assert d["profile"] == "configs/smoke.yaml" and d["jobs"] >= 1 and d["wall_min"] > 0
    assert set(d["goals"]) == {"wall_minutes<=15", "written<=5GB"} and d["met"] == all(d["goals"].values())
    assert d["b"]["disk"]["written_bytes"] > 0 and d["b"]["disk"]["left_bytes"] > 0
    steps = {s["step"]: s for s in d["stages"]["steps"]}
    assert {"alfworld__games", "eval_report"} <= set(steps) and all(s["minutes"] >= 0 for s in steps.values())
    assert d["stages"]["wait_chain"][-1] == "eval_report" and d["stages"]["sum_step_min"] > 0
    assert 0 < d["stages"]["span_min"] <= d["wall_min"] and len(d["load_avg"]["start"]) == 3
    assert (tmp_path / "default_run.log").read_text().count("succeeded in") == 1
    table = (tmp_path / "latest.md").read_text()
    assert "| benchmark | way A (baseline, or the bound) | way B (pipeline, or measured) |" in table
    assert all(f"| {n} |" in table for n in names)


def test_stage_times_read_a_runs_steps_from_its_instance(tmp_path):
    """bench_default's per-step minutes come from the Dagster instance of the run (two ops, one
    reading the other); cheap, not marked ``bench``."""
    import dagster as dg

    from benchmarks.bench_default import stage_times

    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")

    @dg.op
    def first():
        time.sleep(0.3)
        return 1

    @dg.op
    def second(x):
        return x + 1

    @dg.job
    def two():
        second(first())

    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert two.execute_in_process(instance=instance).success
    st = stage_times(tmp_path)
    assert [s["step"] for s in st["steps"]] == ["first", "second"] and len(st["runs"]) == 1
    assert st["steps"][0]["start_s"] == 0 and st["steps"][0]["minutes"] >= 0.3 / 60 - 1e-3
    assert st["steps"][1]["start_s"] >= st["steps"][0]["end_s"] and st["wait_chain"] == ["first", "second"]
    assert st["span_min"] >= st["sum_step_min"] - 0.01 and st["no_step_min"] >= 0


def test_run_group_kills_the_whole_group_on_timeout(tmp_path):
    from benchmarks.bench_default import run_group

    pid_file = tmp_path / "child"
    with pytest.raises(subprocess.TimeoutExpired):  # the grandchild sleeps on after its parent would
        run_group(["bash", "-c", f"sleep 60 & echo $! > {pid_file}; wait"], 2)
    pid = int(pid_file.read_text())
    time.sleep(0.5)
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    assert run_group([sys.executable, "-c", "raise SystemExit(3)"], 30) == 3
