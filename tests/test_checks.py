"""Blocking asset checks: bad pairs stop ACT training in the same Dagster run."""

import json

import dagster as dg
import pyarrow as pa

from act_pipeline.assets.checks import all_checks
from act_pipeline.assets.pipeline import all_assets
from act_pipeline.data import quality
from act_pipeline.data.store import write_parquet_atomic
from act_pipeline.data.trajectories import TRAJECTORY_SCHEMA
from act_pipeline.definitions import build_resources
from act_pipeline.sampling.alternatives import ALTERNATIVES_SCHEMA

from .conftest import SMOKE


def _inputs(tmp_path, alternatives: list[tuple[str, str]], tiny_model: str):
    """Manifests of the upstream assets, as the JSON IO manager would have written them."""
    states = [{"state_id": f"s{i}", "game_id": "g", "split": "train", "task_type": "t", "task": "put a mug in sink",
               "step": i, "observation": "You see a sink 1.", "history": [], "admissible": ["go to sink 1", "look", "inventory"],
               "expert_action": "go to sink 1", "won": True} for i in range(8)]
    alts = [{"state_id": s["state_id"], "split": "train", "sample_index": j, "completion": a, "action": a,
             "reason": reason, "origin": "model"} for s in states for j, (a, reason) in enumerate(alternatives)]
    t = write_parquet_atomic(pa.Table.from_pylist(states, TRAJECTORY_SCHEMA), tmp_path / "t.parquet")
    a = write_parquet_atomic(pa.Table.from_pylist(alts, ALTERNATIVES_SCHEMA), tmp_path / "a.parquet")
    home = tmp_path / "home"
    (home / "manifests").mkdir(parents=True)
    for name, m in {"expert_trajectories": {"uri": str(t), "hash": "t"},
                    "sampled_alternatives": {"uri": str(a), "hash": "a"},
                    "base_model": {"uri": tiny_model, "hash": "b", "name": "tiny"}}.items():
        (home / "manifests" / f"{name}.json").write_text(json.dumps(m))
    return home


def _run(home):
    return dg.materialize([*all_assets, *all_checks], selection=["contrast_pairs", "act_checkpoint"],
                          resources=build_resources(str(SMOKE), str(home)),
                          instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)


def _checks(res) -> dict[str, bool]:
    return {e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
            for e in res.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}


def test_bad_pairs_block_training(tmp_path, tiny_model):
    # a buggy sampler marked the expert action itself ("Go to sink 1.") as a kept alternative
    home = _inputs(tmp_path, [("Go to sink 1.", "kept"), ("look", "kept")], tiny_model)
    res = _run(home)
    checks = _checks(res)
    assert checks["alternative_differs_from_expert"] is False
    assert checks["no_duplicate_pairs"] is True
    materialized = {e.asset_key.path[-1] for e in res.all_events if e.event_type_value == "ASSET_MATERIALIZATION"}
    assert "contrast_pairs" in materialized
    assert "act_checkpoint" not in materialized  # the blocking check stopped training
    assert not (home / "manifests" / "act_checkpoint.json").exists()


def test_good_pairs_pass_every_check_and_train(tmp_path, tiny_model):
    home = _inputs(tmp_path, [("look", "kept"), ("inventory", "kept")], tiny_model)
    res = _run(home)
    assert res.success
    checks = _checks(res)
    assert len(checks) == 7 and all(checks.values()), checks  # 6 pair checks + the checkpoint check
    assert (home / "manifests" / "act_checkpoint.json").exists()


def test_slot_share_check_fails_on_imbalance(tmp_path):
    rows = [{"split": "train", "expert_slot": 1 if i < 70 else 2} for i in range(100)]
    p = write_parquet_atomic(pa.Table.from_pylist(rows), tmp_path / "p.parquet")
    ok, desc, meta = quality.slot_share(p)
    assert not ok and meta["shares"]["train"] == 0.7
    rows = [{"split": "train", "expert_slot": 1 if i < 52 else 2} for i in range(100)]
    assert quality.slot_share(write_parquet_atomic(pa.Table.from_pylist(rows), tmp_path / "q.parquet"))[0]
