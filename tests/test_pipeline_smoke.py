"""The whole asset graph, materialized for real through the main command with the smoke profile.

Real ALFWorld games, the real planner expert, a tiny random Llama with the SmolLM2 tokenizer,
real TRL GRPO and SFT, a real DuckDB warehouse and a real Dagster instance (in a temp dir).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from act_pipeline.envs.actions import normalize_action

from .conftest import SMOKE, most_at_once, overlap, restored, run_main, step_spans
from .conftest import dagster_home as make_dagster_home

# ALFWorld's chain (keys alfworld/<asset>, manifests alfworld__<asset>.json), by key as a user string
ASSETS = ["base_model", *(f"alfworld/{a}" for a in (
    "games", "imported_expert_steps", "expert_trajectories", "sampled_alternatives", "contrast_pairs", "act_checkpoint",
    "il_policy", "il_baseline", "rl_policy", "rl_baseline", "alternative_outcomes", "reflections", "early_experience",
    "evaluation")), "eval_report"]
# the smoke profile enables ScienceWorld: its chain (manifests scienceworld__<asset>.json)
SW_ASSETS = ["games", "expert_trajectories", "sampled_alternatives", "contrast_pairs", "act_checkpoint", "il_policy",
             "il_baseline", "rl_policy", "rl_baseline", "alternative_outcomes", "reflections", "early_experience",
             "evaluation"]


def _manifest(home: Path, key: str) -> dict:
    """What the JSON IO manager wrote for ``key`` (``alfworld/contrast_pairs`` -> alfworld__contrast_pairs.json)."""
    return json.loads((home / "manifests" / f"{key.replace('/', '__')}.json").read_text())


@pytest.fixture(scope="module")
def run(tmp_path_factory, alfworld_data):
    import dagster as dg

    home = tmp_path_factory.mktemp("act_home")
    dagster_home = make_dagster_home(tmp_path_factory)
    # two steps at a time, each in its own process (Dagster's multiprocess executor), on any machine
    rc = run_main(["run", "--profile", str(SMOKE), "--home", str(home), "--jobs", "2"],
                  ALFWORLD_DATA=str(alfworld_data), DAGSTER_HOME=str(dagster_home))
    assert rc == 0
    manifests = {a: _manifest(home, a) for a in ASSETS + [f"scienceworld/{a}" for a in SW_ASSETS]}
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        (run_id,) = [r.run_id for r in instance.get_runs()]
    return {"home": home, "dagster_home": dagster_home, "m": manifests, "data": alfworld_data, "run_id": run_id}


def test_independent_steps_ran_side_by_side(run):
    """--jobs 2: steps with no path between them in the graph ran at the same time, each in its own
    process; never more than 2 at once, nor more model steps (tagged act-pipeline/gpu) than --model-steps."""
    import dagster as dg

    from act_pipeline.assets.common import GPU_TAG
    from act_pipeline.cli import concurrency, downstream

    with dg.DagsterInstance.from_config(str(run["dagster_home"])) as instance:
        spans = step_spans(instance, run["run_id"])
        started = instance.all_logs(run["run_id"], of_type=dg.DagsterEventType.STEP_WORKER_STARTED)
        workers = {r.step_key for r in started}
        plan = instance.get_execution_plan_snapshot(instance.get_run_by_id(run["run_id"]).execution_plan_snapshot_id)
    assert len(spans) >= len(ASSETS) + len(SW_ASSETS) and workers == set(spans)  # every step its own process
    upstream = {s.key: {h.step_key for i in s.inputs for h in i.upstream_output_handles} for s in plan.steps}
    side_by_side = [(a, b) for a in spans for b in spans if a < b and overlap(spans[a], spans[b])]
    assert side_by_side, spans
    for a, b in side_by_side:  # Dagster ran nothing before what it reads
        assert b not in downstream([a], upstream) and a not in downstream([b], upstream), (a, b)
    assert most_at_once(spans.values()) == 2
    model = {s.key for s in plan.steps if GPU_TAG in s.tags}
    assert {"alfworld__act_checkpoint", "alfworld__evaluation"} <= model
    assert most_at_once([spans[k] for k in model if k in spans]) <= concurrency(2, 0)[1]


def test_every_asset_materialized_in_the_instance(run):
    import dagster as dg

    with dg.DagsterInstance.from_config(str(run["dagster_home"])) as instance:
        for a in ASSETS + [f"scienceworld/{a}" for a in SW_ASSETS]:
            ev = instance.get_latest_materialization_event(dg.AssetKey(a.split("/")))
            assert ev is not None, a
            meta = ev.asset_materialization.metadata
            assert "uri" in meta or "report" in meta, a


def test_expert_trajectories_one_row_per_step(run):
    steps = pq.read_table(run["m"]["alfworld/expert_trajectories"]["uri"]).to_pylist()
    games = pq.read_table(run["m"]["alfworld/games"]["uri"]).to_pylist()
    played = {g["game_id"] for g in games if "train" in g["roles"] or "heldout_states" in g["roles"]}
    assert {s["game_id"] for s in steps} == played
    by_game = {}
    for s in steps:
        by_game.setdefault((s["split"], s["game_id"]), []).append(s)
    for rows in by_game.values():
        assert [r["step"] for r in rows] == list(range(len(rows)))  # contiguous, one row per step
        assert all(r["expert_action"] in r["admissible"] for r in rows)
        assert all(r["task"] and r["observation"] for r in rows)
    assert all(s["won"] for s in steps)  # the planner expert wins these games
    assert {s["split"] for s in steps} == {"train", "valid_unseen"}
    assert len({s["state_id"] for s in steps}) == len(steps)


def test_alternatives_and_pairs(run):
    alts = pq.read_table(run["m"]["alfworld/sampled_alternatives"]["uri"]).to_pylist()
    k = 4
    model_rows = [a for a in alts if a["origin"] == "model"]
    assert len(model_rows) == k * run["m"]["alfworld/sampled_alternatives"]["states"]
    # the smoke profile's policy free+constrained_fill: every unparsable / inadmissible free sample
    # is replaced by a draw from the model's own distribution over the admissible actions
    assert {a["origin"] for a in alts} <= {"model", "model_constrained"}
    pairs = pq.read_table(run["m"]["alfworld/contrast_pairs"]["uri"]).to_pylist()
    assert pairs and {p["origin"] for p in pairs} <= {"model", "model_constrained"}
    shares = run["m"]["alfworld/contrast_pairs"]["origins"]  # reported per split, with N
    assert sum(v["n"] for by in shares.values() for v in by.values()) == len(pairs)
    for p in pairs:
        assert normalize_action(p["alternative"]) != normalize_action(p["expert_action"])
        assert p["alternative"] in p["admissible"]
        assert {p["action_1"], p["action_2"]} == {p["expert_action"], p["alternative"]}
        assert (p["action_1"] if p["expert_slot"] == 1 else p["action_2"]) == p["expert_action"]
    assert len({(p["state_id"], p["alternative"]) for p in pairs}) == len(pairs)  # no duplicates
    for split in ("train", "valid_unseen"):
        sp = [p for p in pairs if p["split"] == split]
        ones = sum(p["expert_slot"] == 1 for p in sp)
        assert abs(ones - len(sp) / 2) <= 0.5, (split, ones, len(sp))


def test_warehouse_views_are_queryable(run):
    con = duckdb.connect(str(run["home"] / "warehouse.duckdb"), read_only=True)
    try:
        n_pairs = con.execute("SELECT count(*) FROM alfworld_contrast_pairs").fetchone()[0]
        n_steps = con.execute("SELECT count(*) FROM alfworld_expert_trajectories").fetchone()[0]
        bad = con.execute("SELECT count(*) FROM alfworld_contrast_pairs "
                          "WHERE lower(alternative) = lower(expert_action)").fetchone()[0]
    finally:
        con.close()
    assert n_pairs == run["m"]["alfworld/contrast_pairs"]["rows"]
    assert n_steps == run["m"]["alfworld/expert_trajectories"]["rows"]
    assert bad == 0


def _changed_tensors(before: str | Path, after: str | Path) -> list[str]:
    """Names of the tensors that differ between two model folders' safetensors files (same names required)."""
    import torch
    from safetensors.torch import load_file

    def load(folder):
        out = {}
        for f in sorted(Path(folder).glob("*.safetensors")):
            out.update(load_file(f))
        assert out, f"no safetensors weights in {folder}"
        return out

    a, b = load(before), load(after)
    assert a.keys() == b.keys(), sorted(a.keys() ^ b.keys())
    return sorted(k for k in a if not torch.equal(a[k], b[k]))


@pytest.mark.parametrize("asset", ["act_checkpoint", "il_policy", "il_baseline", "rl_policy", "rl_baseline",
                                   "early_experience"])
def test_checkpoints_load_and_generate(run, asset):
    import torch

    from act_pipeline.models import load_model

    m = run["m"][f"alfworld/{asset}"]
    path = Path(m["uri"])
    assert (path / "model.safetensors").exists()
    assert not list(path.glob("*.bin")) and not list(path.glob("*.pt"))  # no pickles shipped
    model, tok = load_model(str(path))
    enc = tok("Task: put a mug in the sink", return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[1] == enc["input_ids"].shape[1] + 4 or out[0, -1] == tok.eos_token_id
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert m["global_step"] == 4  # the smoke profile's max_steps
    init = ("base_model" if asset in ("act_checkpoint", "il_baseline", "rl_baseline", "early_experience")
            else "alfworld/act_checkpoint")
    # training changed the weights (the tensors, not a folder hash that config files change too) where it
    # had something to learn from: SFT always; GRPO unless every group's rewards were equal (zero advantages:
    # no update, and the manifest's learning_signal says so; the tiny random model's usual case)
    changed = _changed_tensors(run["m"][init]["uri"], path)
    signal = m.get("learning_signal", {}).get("frac_groups_equal_reward", 0.0) < 1.0
    if asset.startswith("il_") or asset == "early_experience" or signal:
        assert changed, f"{asset}: no tensor differs from its initial weights ({init})"
    else:
        assert not changed, f"{asset}: weights changed without a learning signal: {changed[:5]}"
    card = json.loads((path / "model_card.json").read_text())  # lineage travels with the folder
    assert card["asset"] == f"alfworld/{asset}"
    assert card["parents"]["init"]["hash"] == run["m"][init]["hash"]
    data = {"act_checkpoint": "contrast_pairs", "early_experience": "reflections"}.get(asset, "expert_trajectories")
    assert card["parents"][data]["hash"] == run["m"][f"alfworld/{data}"]["hash"]
    assert set(m["parents"]) == {"init", data} and m["parents"]["init"]["hash"] == run["m"][init]["hash"]
    assert card["packages"]["alfworld"] and card["code_version"] and card["global_step"] == 4


def test_report_has_every_metric_with_split_n_seed(run):
    rep = json.loads(Path(run["m"]["eval_report"]["report_json"]).read_text())
    # every arm of the paper's Table 1, the prompt arms named by the thinking setting they ran with
    assert set(rep["results"]) == {"prompt_no_thinking", "prompt_thinking", "act_checkpoint", "il_baseline",
                                   "early_experience", "il_policy", "rl_baseline", "rl_policy"}
    for arm, metrics in rep["results"].items():
        got = {(m["name"], m["split"]) for m in metrics}
        assert got == {("judgement_accuracy", "valid_unseen"), ("next_action_accuracy", "valid_unseen"),
                       ("success_rate", "valid_seen"), ("success_rate", "valid_unseen")}, arm
        for m in metrics:
            assert m["n"] > 0 and m["seed"] == 0 and 0.0 <= m["value"] <= 1.0
            assert len(m["outcomes"]) == m["n"] and sum(m["outcomes"]) == round(m["value"] * m["n"])
            lo, hi = m["ci95"]
            assert lo <= m["value"] <= hi  # the 95 % bootstrap interval brackets the value
            assert sum(g["n"] for g in m["by_task_type"].values()) == m["n"]
    success = [m for m in rep["results"]["prompt_no_thinking"] if m["name"] == "success_rate"]
    assert all(m["detail"]["thinking"] for m in rep["results"]["prompt_thinking"])
    assert not any(m["detail"]["thinking"] for m in rep["results"]["prompt_no_thinking"])
    assert {m["n"] for m in success} == {2}  # games_valid_seen / games_valid_unseen in the profile
    md = Path(run["m"]["eval_report"]["report_md"]).read_text()
    assert "N=" in md and "seed" in md.lower()
    assert "The paper's numbers, for reference (not ours)" in md and "91.43" in md
    assert "by task type" in md and "Side by side" in md
    assert "How these numbers were made" in md and "model_constrained" in md and "truncated" in md
    for arm in ("act_checkpoint", "rl_policy", "rl_baseline"):  # every GRPO stage says whether it had a signal
        assert 0.0 <= run["m"][f"alfworld/{arm}"]["learning_signal"]["frac_groups_equal_reward"] <= 1.0
    curve = run["m"]["alfworld/act_checkpoint"]["judgement_curve"]  # probed every 2 of 4 ACT steps
    assert [c["step"] for c in curve] == [0, 2, 4] and all(c["n"] == 8 and c["split"] == "valid_unseen" for c in curve)
    assert "Judgement accuracy over ACT training" in md and (Path(run["m"]["eval_report"]["uri"]) / "judgement_curve.png").exists()
    html = Path(run["m"]["eval_report"]["report_html"]).read_text()
    assert html.startswith("<!doctype html>") and "<table>" in html and 'src="report.png"' in html
    png = Path(run["m"]["eval_report"]["plot"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the report's flat metrics: every key carries its benchmark; ALFWorld's are its evaluation's, prefixed
    flat = run["m"]["eval_report"]["metrics"]
    assert {k.split("/")[0] for k in flat} == {"alfworld", "scienceworld"}
    alf = run["m"]["alfworld/evaluation"]["metrics"]
    assert "act_checkpoint/judgement_accuracy/valid_unseen" in alf
    assert {k: v for k, v in flat.items() if k.startswith("alfworld/")} == {f"alfworld/{k}": v for k, v in alf.items()}


def test_scienceworld_chain_and_its_grid(run):
    """ScienceWorld's own chain: gold-path experts on train variations, held-out test-variation
    states and pairs, its own checkpoints, next-action accuracy in the report beside the paper's."""
    m = {a: run["m"][f"scienceworld/{a}"] for a in SW_ASSETS}
    steps = pq.read_table(m["expert_trajectories"]["uri"]).to_pylist()
    assert {s["split"] for s in steps} == {"train", "test"} and all(s["won"] for s in steps)
    assert {s["task_type"] for s in steps} == {"find-non-living-thing"}
    train_games = {s["game_id"] for s in steps if s["split"] == "train"}
    assert len(train_games) == 2 and not train_games & {s["game_id"] for s in steps if s["split"] == "test"}
    for s in steps:  # at most max_admissible actions listed, the expert's among them
        assert len(s["admissible"]) <= 16 and s["expert_action"] in s["admissible"]
    pairs = pq.read_table(m["contrast_pairs"]["uri"]).to_pylist()
    assert {p["split"] for p in pairs} == {"train", "test"}
    assert all(p["alternative"] in p["admissible"] for p in pairs)
    for asset in ("act_checkpoint", "il_policy", "il_baseline", "rl_policy", "rl_baseline"):
        card = json.loads((Path(m[asset]["uri"]) / "model_card.json").read_text())
        data = {"act_checkpoint": "contrast_pairs", "early_experience": "reflections"}.get(asset, "expert_trajectories")
        assert card["parents"][data]["hash"] == m[data]["hash"], asset  # trained on ScienceWorld's own data
        init = m["act_checkpoint"] if asset in ("il_policy", "rl_policy") else run["m"]["base_model"]
        assert card["parents"]["init"]["hash"] == init["hash"], asset
        assert m[asset]["hash"] != run["m"][f"alfworld/{asset}"]["hash"]  # not the ALFWorld checkpoint
    rep = json.loads(Path(run["m"]["eval_report"]["report_json"]).read_text())
    sw = rep["scienceworld"]["results"]
    assert set(sw) == set(rep["results"])  # the same Table-1 arms
    n_test_states = sum(s["split"] == "test" for s in steps)
    for arm, metrics in sw.items():
        got = {(x["name"], x["split"]): x for x in metrics}
        assert set(got) == {("next_action_accuracy", "test"), ("judgement_accuracy", "test")}, arm
        assert got[("next_action_accuracy", "test")]["n"] == min(16, n_test_states)
    md = Path(run["m"]["eval_report"]["report_md"]).read_text()
    assert "## ScienceWorld" in md and "48.69%" in md  # the paper's IL w/ ACT ScienceWorld number, beside ours
    assert (Path(run["m"]["eval_report"]["uri"]) / "report_scienceworld.png").exists()
    curve = m["act_checkpoint"]["judgement_curve"]  # ScienceWorld's ACT probed on its own held-out test pairs
    assert curve and all(c["split"] == "test" for c in curve)
    assert "Judgement accuracy over ACT training — ScienceWorld" in md
    assert (Path(run["m"]["eval_report"]["uri"]) / "judgement_curve_scienceworld.png").exists()
    assert any(k.startswith("scienceworld/il_policy/next_action_accuracy/test") for k in run["m"]["eval_report"]["metrics"])


def _cli(run, *args, profile=SMOKE) -> subprocess.CompletedProcess:
    # the games of the first run (official or generated: the session's, not the environment's)
    env = dict(os.environ, DAGSTER_HOME=str(run["dagster_home"]), ACT_HOME=str(run["home"]),
               ALFWORLD_DATA=str(run["data"]))
    return subprocess.run([sys.executable, "-m", "act_pipeline.cli", "run", "--profile", str(profile), *args],
                          env=env, capture_output=True, text=True, timeout=900)


def test_rerun_with_nothing_changed_recomputes_nothing(run):
    res = _cli(run)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "every asset is fresh, nothing to do" in res.stdout
    seconds = float(res.stdout.split("nothing to do (")[1].split(" s")[0])
    assert seconds <= 10
    assert "report:" in res.stdout  # still says where the report is


def test_changing_eval_config_reruns_only_evaluation(run, tmp_path):
    # its own copy of the run: the other tests see the first run's data root and instance, in any order
    with restored(run["home"], run["dagster_home"]):
        _eval_change_reruns_only_evaluation(run, tmp_path)


def _eval_change_reruns_only_evaluation(run, tmp_path):
    profile = tmp_path / "smoke-eval-changed.yaml"
    profile.write_text(SMOKE.read_text().replace("  max_steps: 3\n", "  max_steps: 2\n"))
    assert profile.read_text() != SMOKE.read_text()
    before = {a: run["m"][a]["hash"] for a in ASSETS}
    res = _cli(run, "--jobs", "1", profile=profile)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "one step at a time, in this process" in res.stdout
    _evaluations_one_after_another(run, res.stdout)
    fresh_line = [ln for ln in res.stdout.splitlines() if ln.startswith("act-pipeline: fresh, not recomputed:")][0]
    fresh = set(fresh_line.split("not recomputed: ", 1)[1].split(", "))
    for a in ASSETS[:-2] + [f"scienceworld/{a}" for a in SW_ASSETS[:-1]]:
        assert a in fresh, a  # checkpoints and data untouched
    assert not fresh & {"alfworld/evaluation", "scienceworld/evaluation", "eval_report"}
    after = {a: _manifest(run["home"], a) for a in ASSETS}
    assert {a: after[a]["hash"] for a in ASSETS[:-2]} == {a: before[a] for a in ASSETS[:-2]}
    rep = json.loads(Path(after["eval_report"]["report_json"]).read_text())
    assert rep["meta"]["max_steps"] == 2


def _evaluations_one_after_another(run, stdout: str) -> None:
    """--jobs 1: the two benchmarks' evaluations (independent steps) ran one after the other, in process."""
    import dagster as dg

    run_id = stdout.split("act-pipeline: run ", 1)[1].split()[0]
    with dg.DagsterInstance.from_config(str(run["dagster_home"])) as instance:
        spans = step_spans(instance, run_id)
        assert not instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_WORKER_STARTED)  # no step processes
    assert {"alfworld__evaluation", "scienceworld__evaluation", "eval_report"} <= set(spans)
    assert not overlap(spans["alfworld__evaluation"], spans["scienceworld__evaluation"]), spans
    assert most_at_once(spans.values()) == 1


def test_stage3_from_an_act_checkpoint_equal_to_the_base_model_is_not_trained_again(run, tmp_path):
    """ACT at learning rate 0 saves the base model's tensors, so IL and RL from its checkpoint are the
    trainings IL and RL from the base model did: the run links those checkpoints (the same content
    hash, the same files) under each arm's own model card instead of training again
    (``act_pipeline.training.cache``)."""
    from act_pipeline.training.cache import model_identity

    with restored(run["home"], run["dagster_home"]):
        profile = tmp_path / "smoke-act-lr0.yaml"
        profile.write_text(SMOKE.read_text().replace("\nact:\n", "\nact:\n  learning_rate: 0.0\n", 1))
        assert profile.read_text() != SMOKE.read_text()
        res = _cli(run, "--jobs", "2", profile=profile)
        assert res.returncode == 0, res.stderr[-2000:]
        base = _manifest(run["home"], "base_model")
        for bench in ("alfworld", "scienceworld"):
            m = {a: _manifest(run["home"], f"{bench}/{a}")
                 for a in ("act_checkpoint", "il_policy", "il_baseline", "rl_policy", "rl_baseline")}
            assert m["act_checkpoint"]["hash"] != run["m"][f"{bench}/act_checkpoint"]["hash"]  # ACT trained again
            assert model_identity(m["act_checkpoint"]["uri"]) == model_identity(base["uri"])  # ... to the base model
            for arm, same in (("il_policy", "il_baseline"), ("rl_policy", "rl_baseline")):
                assert m[arm]["uri"] != run["m"][f"{bench}/{arm}"]["uri"]  # rematerialized (its parent changed)
                assert m[arm]["hash"] == m[same]["hash"] and m[arm]["uri"] != m[same]["uri"]
                a, b = Path(m[arm]["uri"]), Path(m[same]["uri"])
                assert (a / "model.safetensors").stat().st_ino == (b / "model.safetensors").stat().st_ino
                card = json.loads((a / "model_card.json").read_text())
                assert card["reused_from"] == str(b) and card["asset"] == f"{bench}/{arm}"
                assert card["parents"]["init"]["uri"] == m["act_checkpoint"]["uri"]  # its own lineage


def test_lineage_chain_from_policy_back_to_games(run, capsys, alfworld_data):
    from act_pipeline.cli import main

    assert main(["lineage", run["m"]["alfworld/il_policy"]["uri"]]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"alfworld/il_policy: {run['m']['alfworld/il_policy']['uri']}")
    for a in ["act_checkpoint", "contrast_pairs", "sampled_alternatives", "expert_trajectories", "games",
              "imported_expert_steps"]:
        a = f"alfworld/{a}"
        assert f"{a}: {run['m'][a]['uri']}" in out, a  # every link of the chain, by URI
    assert (out.index("alfworld/act_checkpoint: ") < out.index("alfworld/contrast_pairs: ")
            < out.index("alfworld/sampled_alternatives: "))
    assert str(alfworld_data) in out  # the games' source
    assert run["m"]["alfworld/contrast_pairs"]["hash"][:12] in out


def _tree(home: Path) -> dict:
    """Every file under the data root (bar the Dagster-side lock) with its size and mtime."""
    return {str(p.relative_to(home)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(home.rglob("*")) if p.is_file() and not p.name.endswith(".lock")}


@pytest.mark.parametrize("bad", [
    b'{"game_id": "g/t1", "task_type": "t", "task": "x", "step": 0}\n',                      # missing fields
    b'{"game_id": "../../etc/t1", "task_type": "t", "task": "x", "step": 0, "observation": "o", '
    b'"admissible": ["look"], "expert_action": "look"}\n',                                    # path escape
], ids=["missing-field", "path-escape"])
def test_bad_import_leaves_every_table_and_checkpoint_as_it_was(run, tmp_path, bad):
    f = tmp_path / "bad.jsonl"
    f.write_bytes(bad)
    before = _tree(run["home"])
    with duckdb.connect(str(run["home"] / "warehouse.duckdb"), read_only=True) as con:
        counts = con.sql("SELECT count(*) FROM alfworld_contrast_pairs").fetchall()
    env = dict(os.environ, DAGSTER_HOME=str(run["dagster_home"]), ACT_HOME=str(run["home"]))
    res = subprocess.run([sys.executable, "-m", "act_pipeline.cli", "import-expert", str(f), "--profile", str(SMOKE)],
                         env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2
    assert f"{f}:1: field `" in res.stderr  # file, line, field
    assert _tree(run["home"]) == before  # nothing written, nothing replaced
    with duckdb.connect(str(run["home"] / "warehouse.duckdb"), read_only=True) as con:
        assert con.sql("SELECT count(*) FROM alfworld_contrast_pairs").fetchall() == counts


def test_early_experience_data_and_arm(run):
    """The alternatives were executed in the games (every branch with a status), the base model reflected
    at every state IL trains on (the same data budget), and the arm reasons before its actions."""
    from act_pipeline.training.card import stage_of

    for bench in ("alfworld", "scienceworld"):
        outcomes = pq.read_table(run["m"][f"{bench}/alternative_outcomes"]["uri"]).to_pylist()
        assert outcomes and {o["status"] for o in outcomes} <= {"ok", "desync", "fault", "error", "no_game"}
        assert all((o["next_observation"] is not None) == (o["status"] == "ok") for o in outcomes)
        refl = pq.read_table(run["m"][f"{bench}/reflections"]["uri"]).to_pylist()
        steps = pq.read_table(run["m"][f"{bench}/expert_trajectories"]["uri"]).to_pylist()
        assert sorted(r["state_id"] for r in refl) == sorted(s["state_id"] for s in steps
                                                            if s["split"] == "train" and s["won"])
        ok = {o["state_id"] for o in outcomes if o["status"] == "ok" and o["is_expert"]}
        assert {r["state_id"] for r in refl if r["grounded"]} == ok
        assert all(len(r["alternatives"]) <= 1 for r in refl)  # early_experience.alternatives
    alf = pq.read_table(run["m"]["alfworld/alternative_outcomes"]["uri"]).to_pylist()
    assert any(o["status"] == "ok" and not o["is_expert"] for o in alf)  # ALFWorld replays are deterministic
    ee = run["m"]["alfworld/early_experience"]
    card = json.loads((Path(ee["uri"]) / "model_card.json").read_text())
    assert stage_of(card) == "ee" and set(card["config"]) >= {"il", "early_experience"}
    assert card["parents"]["reflections"]["grounded"] == run["m"]["alfworld/reflections"]["grounded"]
    rep = json.loads(Path(run["m"]["eval_report"]["report_json"]).read_text())
    assert all(m["detail"]["thinking"] for m in rep["results"]["early_experience"] if m["name"] != "judgement_accuracy")
    md = Path(run["m"]["eval_report"]["report_md"]).read_text()
    assert "| Early Experience (self-reflection) | " in md.split("## The paper's numbers")[0]
