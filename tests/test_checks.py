"""Blocking asset checks: bad pairs stop ACT training in the same Dagster run; the checks of one asset
run in one step."""

import json
from collections import defaultdict

import dagster as dg
import pyarrow as pa

from act_pipeline import console
from act_pipeline.assets.graph import build_assets, build_checks
from act_pipeline.data import quality
from act_pipeline.data.store import write_parquet_atomic
from act_pipeline.data.trajectories import TRAJECTORY_SCHEMA
from act_pipeline.definitions import build_resources, make_definitions
from act_pipeline.sampling.alternatives import ALTERNATIVES_SCHEMA

from .conftest import DEFAULT, SMOKE, graph_config


GAMES = [  # the games manifest: one training game, one held-out valid_unseen game, one valid_seen roll-out game
    {"game_id": "g", "split": "train", "task_type": "t", "roles": ["train"], "game_hash": "hg"},
    {"game_id": "h", "split": "valid_unseen", "task_type": "t", "roles": ["eval", "heldout_states"], "game_hash": "hh"},
    {"game_id": "v", "split": "valid_seen", "task_type": "t", "roles": ["eval"], "game_hash": "hv"},
]


def _states(game: str, split: str, prefix: str, n: int = 8, task_type: str = "t") -> list[dict]:
    return [{"state_id": f"{prefix}{i}", "game_id": game, "split": split, "task_type": task_type,
             "task": "put a mug in sink", "step": i, "observation": "You see a sink 1.", "history": [],
             "admissible": ["go to sink 1", "look", "inventory"], "expert_action": "go to sink 1", "won": True}
            for i in range(n)]


def _inputs(tmp_path, alternatives: list[tuple[str, str]], tiny_model: str, states: list[dict] | None = None,
            games: list[dict] | None = None, no_alternatives: set[str] = frozenset()):
    """Manifests of the upstream assets, as the JSON IO manager would have written them: 8 training
    states of game g, 8 held-out states of game h; ``no_alternatives``: games whose states get none."""
    states = states if states is not None else _states("g", "train", "s") + _states("h", "valid_unseen", "h")
    alts = [{"state_id": s["state_id"], "split": s["split"], "sample_index": j, "completion": a, "action": a,
             "reason": reason, "origin": "model"} for s in states if s["game_id"] not in no_alternatives
            for j, (a, reason) in enumerate(alternatives)]
    t = write_parquet_atomic(pa.Table.from_pylist(states, TRAJECTORY_SCHEMA), tmp_path / "t.parquet")
    a = write_parquet_atomic(pa.Table.from_pylist(alts, ALTERNATIVES_SCHEMA), tmp_path / "a.parquet")
    g = write_parquet_atomic(pa.Table.from_pylist(games or GAMES), tmp_path / "games.parquet")
    home = tmp_path / "home"
    (home / "manifests").mkdir(parents=True)
    for name, m in {"alfworld__expert_trajectories": {"uri": str(t), "hash": "t"},
                    "alfworld__sampled_alternatives": {"uri": str(a), "hash": "a"},
                    "alfworld__games": {"uri": str(g), "hash": "g"},
                    "base_model": {"uri": tiny_model, "hash": "b", "name": "tiny"}}.items():
        (home / "manifests" / f"{name}.json").write_text(json.dumps(m))
    return home


def _run(home):
    cfg = graph_config()
    return dg.materialize([*build_assets(cfg), *build_checks(cfg)],
                          selection=["alfworld/contrast_pairs", "alfworld/act_checkpoint"],
                          resources=build_resources(str(SMOKE), str(home)),
                          instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)


def _checks(res) -> dict[str, bool]:
    return {e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
            for e in res.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}


def _materialized(res) -> set[str]:
    return {e.asset_key.to_user_string() for e in res.all_events if e.event_type_value == "ASSET_MATERIALIZATION"}


def test_bad_pairs_block_training(tmp_path, tiny_model):
    # a buggy sampler marked the expert action itself ("Go to sink 1.") as a kept alternative
    home = _inputs(tmp_path, [("Go to sink 1.", "kept"), ("look", "kept")], tiny_model)
    res = _run(home)
    checks = _checks(res)
    assert checks["alternative_differs_from_expert"] is False
    assert checks["no_duplicate_pairs"] is True
    assert len(checks) == 8  # a failed check does not keep the others of its step from reporting
    materialized = _materialized(res)
    assert "alfworld/contrast_pairs" in materialized
    assert "alfworld/act_checkpoint" not in materialized  # the blocking check stopped training
    assert not (home / "manifests" / "alfworld__act_checkpoint.json").exists()


def test_good_pairs_pass_every_check_and_train(tmp_path, tiny_model):
    home = _inputs(tmp_path, [("look", "kept"), ("inventory", "kept")], tiny_model)
    res = _run(home)
    assert res.success
    checks = _checks(res)
    assert len(checks) == 9 and all(checks.values()), checks  # 8 pair checks + the checkpoint check
    assert (home / "manifests" / "alfworld__act_checkpoint.json").exists()


def _stopped(res, home) -> bool:
    """contrast_pairs was written, ACT training never started."""
    materialized = _materialized(res)
    started = {e.step_key for e in res.all_events if e.event_type_value == "STEP_START"}
    return ("alfworld/contrast_pairs" in materialized and "alfworld/act_checkpoint" not in materialized
            and "alfworld__act_checkpoint" not in started
            and not (home / "manifests" / "alfworld__act_checkpoint.json").exists())


GOOD = [("look", "kept"), ("inventory", "kept")]


def test_pairs_from_an_eval_game_block_training(tmp_path, tiny_model):
    # the training game g is also one of the valid_seen roll-out games (a mislabelled game folder):
    # the old check compared only rows within the pairs table and let this through
    games = GAMES + [{"game_id": "g", "split": "valid_seen", "task_type": "t", "roles": ["eval"], "game_hash": "hg"}]
    home = _inputs(tmp_path, GOOD, tiny_model, games=games)
    res = _run(home)
    checks = _checks(res)
    assert checks["no_eval_state_in_training"] is False
    assert checks["heldout_pairs_nonempty"] is True and checks["training_task_types_covered"] is True
    assert _stopped(res, home)


def test_pairs_sharing_a_state_with_heldout_block_training(tmp_path, tiny_model):
    # a held-out valid_unseen state also labelled train (a split bug upstream): its pairs train
    states = _states("g", "train", "s") + _states("h", "valid_unseen", "h")
    states.append(dict(states[-1], split="train", game_id="h2"))
    home = _inputs(tmp_path, GOOD, tiny_model, states=states)
    res = _run(home)
    assert _checks(res)["no_eval_state_in_training"] is False
    assert _stopped(res, home)


def test_no_heldout_pairs_block_training(tmp_path, tiny_model):
    home = _inputs(tmp_path, GOOD, tiny_model, states=_states("g", "train", "s"))
    res = _run(home)
    checks = _checks(res)
    assert checks["heldout_pairs_nonempty"] is False and checks["no_eval_state_in_training"] is True
    assert _stopped(res, home)


def test_task_type_without_training_pairs_blocks_training(tmp_path, tiny_model):
    # game u (task type t2) was won, but none of its alternatives survived: ACT would never see t2
    states = _states("g", "train", "s") + _states("u", "train", "u", 4, "t2") + _states("h", "valid_unseen", "h")
    home = _inputs(tmp_path, GOOD, tiny_model, states=states, no_alternatives={"u"})
    res = _run(home)
    checks = _checks(res)
    assert checks["training_task_types_covered"] is False
    assert _stopped(res, home)
    ok, desc, meta = quality.training_task_types_covered(
        json.loads((home / "manifests" / "alfworld__contrast_pairs.json").read_text())["uri"],
        json.loads((home / "manifests" / "alfworld__expert_trajectories.json").read_text())["uri"])
    assert not ok and meta["missing"] == ["t2"] and "t2" in desc


def test_each_assets_checks_run_in_one_step():
    """The checks of one asset are the outputs of one step of the job (its execution plan): under the
    multiprocess executor each step is a process start (~5-7 s) and blocking checks sit between their
    asset and everything downstream, so 8 pair checks as 8 steps delayed ACT by ~90 s."""
    from dagster._core.execution.api import create_execution_plan

    defs = make_definitions(str(DEFAULT), "/nonexistent-data-root")
    steps_by_asset, checks_by_step = defaultdict(set), defaultdict(set)
    for step in create_execution_plan(defs.resolve_job_def("act_pipeline_job")).get_all_steps_in_topo_order():
        for out in step.step_outputs:
            if out.properties is not None and out.properties.asset_check_key is not None:
                steps_by_asset[out.properties.asset_check_key.asset_key].add(step.key)
                checks_by_step[step.key].add(out.properties.asset_check_key)
    assert set().union(*checks_by_step.values()) == set(defs.resolve_asset_graph().asset_check_keys)
    assert {a: s for a, s in steps_by_asset.items() if len(s) > 1} == {}  # one step per checked asset
    assert all(len({k.asset_key for k in keys}) == 1 for keys in checks_by_step.values())  # of one asset
    for b in ("alfworld", "scienceworld"):
        for asset, n in (("expert_trajectories", 3), ("contrast_pairs", 8)):
            step = f"{b}__{asset}_checks"
            assert steps_by_asset[dg.AssetKey([b, asset])] == {step} and len(checks_by_step[step]) == n
    # the console knows them as check steps (no start and end lines; a line when a check fails)
    assert set(checks_by_step) == set(console.check_steps(defs))


def test_a_raising_check_blocks_training_and_one_check_runs_alone(tmp_path, tiny_model):
    home = _inputs(tmp_path, GOOD, tiny_model)
    # the games table is gone: no_eval_state_in_training (the step's 7th check of 8) raises
    (home / "manifests" / "alfworld__games.json").write_text(json.dumps({"uri": str(tmp_path / "gone"), "hash": "g"}))
    res = _run(home)
    checks = _checks(res)
    assert "no_eval_state_in_training" not in checks and len(checks) == 7 and all(checks.values()), checks
    assert [e.step_key for e in res.all_events if e.event_type_value == "STEP_FAILURE"] == [
        "alfworld__contrast_pairs_checks"]
    assert _stopped(res, home)
    # one check alone, as the UI runs it: only it is evaluated; the unselected ones read nothing (the
    # games table is gone) and load no tokenizer (nor is the base model's folder there any more)
    (home / "manifests" / "base_model.json").write_text(json.dumps({"uri": str(tmp_path / "gone"), "hash": "b"}))
    cfg = graph_config()
    one = dg.AssetCheckKey(dg.AssetKey(["alfworld", "contrast_pairs"]), "alternative_admissible")
    res = dg.materialize([*build_assets(cfg), *build_checks(cfg)], selection=dg.AssetSelection.checks(one),
                         resources=build_resources(str(SMOKE), str(home)),
                         instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    assert res.success and _checks(res) == {"alternative_admissible": True}
    assert _materialized(res) == set()


def test_slot_share_check_fails_on_imbalance(tmp_path):
    rows = [{"split": "train", "expert_slot": 1 if i < 70 else 2} for i in range(100)]
    p = write_parquet_atomic(pa.Table.from_pylist(rows), tmp_path / "p.parquet")
    ok, desc, meta = quality.slot_share(p)
    assert not ok and meta["shares"]["train"] == 0.7
    rows = [{"split": "train", "expert_slot": 1 if i < 52 else 2} for i in range(100)]
    assert quality.slot_share(write_parquet_atomic(pa.Table.from_pylist(rows), tmp_path / "q.parquet"))[0]
