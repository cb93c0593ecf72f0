"""Training seeds as a dimension of the graph, for real: a profile with `seeds` materialized through
the main command (real games, the planner, a tiny random Llama, real TRL, a real Dagster instance).

Each seed is a static partition of the training arms and the evaluation; `act-pipeline run` runs the
shared assets once, the seeds side by side, then the report over every materialized seed. Adding a
seed later materializes only that seed and the report; the base model's evaluation is read back
from the evaluation cache instead of being scored again.
"""

import json
from pathlib import Path

import pytest
import yaml

from .conftest import SMOKE, run_main
from .conftest import dagster_home as make_dagster_home

PARTITIONED = ["alfworld/act_checkpoint", "alfworld/il_baseline", "alfworld/il_policy", "alfworld/evaluation"]


def _profile(path: Path, seeds: list[int]) -> Path:
    d = yaml.safe_load(SMOKE.read_text())
    d.update(name="smoke-seeds", seeds=seeds, arms=["il_baseline", "il_policy"], scienceworld={"enabled": False})
    d["alfworld"].update(train_games=2, validation_games=1, eval_state_games=1)
    d["sampling"].update(states_per_game=2)
    d["act"].update(max_steps=2, probe_every=2, probe_pairs=4)
    d["il"].update(max_steps=2)
    d["eval"].update(thinking_arm=False, heldout_pairs=8, heldout_states=8, games_valid_seen=0,
                     games_valid_unseen=0, metrics="paired")
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    return path


def _run(profile: Path, home: Path, dagster_home: Path, alfworld_data, capfd) -> str:
    rc = run_main(["run", "--profile", str(profile), "--home", str(home)], ALFWORLD_DATA=str(alfworld_data),
                  DAGSTER_HOME=str(dagster_home))
    out = capfd.readouterr().out  # the seeds' own processes print to the file descriptor
    assert rc == 0, out
    return out


@pytest.fixture(scope="module")
def homes(tmp_path_factory):
    return tmp_path_factory.mktemp("act_home"), make_dagster_home(tmp_path_factory), tmp_path_factory.mktemp("profiles")


def _science(home: Path) -> dict:
    report = json.loads((home / "manifests" / "eval_report.json").read_text())
    return json.loads(Path(report["science_json"]).read_text())


def test_seeds_partition_the_arms_and_the_report_aggregates_them(homes, alfworld_data, capfd):
    home, dagster_home, profiles = homes
    out = _run(_profile(profiles / "two.yaml", [0, 1]), home, dagster_home, alfworld_data, capfd)
    assert "seeds 0: 4 asset(s), 1: 4 asset(s)" in out
    assert "[seed 0] alfworld/act_checkpoint: started" in out and "[seed 1] alfworld/act_checkpoint: started" in out
    for key in PARTITIONED:  # one manifest per seed, each from its own training
        ms = [json.loads((home / "manifests" / key.replace("/", "__") / f"{s}.json").read_text()) for s in "01"]
        assert ms[0]["uri"] != ms[1]["uri"], key
    assert [json.loads((home / "manifests" / "alfworld__act_checkpoint" / f"{s}.json").read_text())["seed"]
            for s in "01"] == [0, 1]
    import dagster as dg

    with dg.DagsterInstance.from_config(str(dagster_home)) as inst:
        for key in PARTITIONED:
            assert inst.get_materialized_partitions(dg.AssetKey.from_user_string(key)) == {"0", "1"}, key
    res = _science(home)
    assert res["seeds"] == [0, 1]
    j, na = res["judgement_model_only"], res["next_action"]
    assert j["split"] == "valid_unseen" and j["act"]["n_seeds"] == 2 and j["base"]["n_seeds"] == 1
    assert {"base", "il", "il_act", "diff_il_act_minus_il"} <= set(na) and "p" in na["diff_il_act_minus_il"]
    assert "il" not in j  # eval.metrics: paired — IL arms are not scored on judgement
    assert set(res["per_seed"]) == {"0", "1"}
    assert res["wall_minutes"]["total"] > 0 and "alfworld/act_checkpoint" in res["wall_minutes"]
    assert res["commit"] and res["machine"] and res["load"]
    from act_pipeline.machine import git

    # the commit the evaluations ran at (this checkout), whenever the report is made
    assert res["commit"].split("+")[0] == git("rev-parse", "HEAD") and res["meta"]["report_commit"]
    assert "success" not in res  # games_valid_* = 0: nothing played, no success rate over 0 games
    assert set(res["answer_bias"]) == {"base", "act"} and set(res["answer_bias"]["act"]) == {"0", "1"}
    assert sorted(int(s) for s in res["curves"]) == [0, 1]


def test_a_second_run_with_nothing_changed_does_nothing(homes, alfworld_data, capfd):
    home, dagster_home, profiles = homes
    out = _run(profiles / "two.yaml", home, dagster_home, alfworld_data, capfd)
    assert "every asset of every seed is fresh, nothing to do" in out


def test_one_more_seed_later_computes_only_that_seed(homes, alfworld_data, capfd):
    home, dagster_home, profiles = homes
    before = {s: (home / "manifests" / "alfworld__il_policy" / f"{s}.json").read_text() for s in "01"}
    out = _run(_profile(profiles / "three.yaml", [0, 1, 2]), home, dagster_home, alfworld_data, capfd)
    assert "0 shared asset(s), then seeds 0: 0 asset(s), 1: 0 asset(s), 2: 4 asset(s)" in out
    assert "prompt_no_thinking: scored before on the same items" in out  # the base: from the evaluation cache
    assert {s: (home / "manifests" / "alfworld__il_policy" / f"{s}.json").read_text() for s in "01"} == before
    res = _science(home)
    assert res["seeds"] == [0, 1, 2] and res["judgement_model_only"]["act"]["n_seeds"] == 3
