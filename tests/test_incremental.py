"""Incremental sampling: +10% expert states → only the new states are sampled (real DuckDB cache)."""

import json

import dagster as dg
import pyarrow as pa
import yaml

from act_pipeline.assets.graph import build_assets
from act_pipeline.data.store import write_parquet_atomic
from act_pipeline.data.trajectories import TRAJECTORY_SCHEMA
from act_pipeline.definitions import build_resources

from .conftest import SMOKE, graph_config


def _states(n):
    return [{"state_id": f"s{i:03d}", "game_id": f"g{i // 5}", "split": "train", "task_type": "t",
             "task": "put a mug in the sink.", "step": i % 5, "observation": f"You see a sink {i}.", "history": [],
             "admissible": ["go to sink 1", "look", "inventory", f"open drawer {i}"], "expert_action": "go to sink 1",
             "won": True} for i in range(n)]


def _materialize(home, n_states, tiny_model, profile=SMOKE):
    t = write_parquet_atomic(pa.Table.from_pylist(_states(n_states), TRAJECTORY_SCHEMA), home / f"t{n_states}.parquet")
    (home / "manifests").mkdir(parents=True, exist_ok=True)
    (home / "manifests" / "alfworld__expert_trajectories.json").write_text(
        json.dumps({"uri": str(t), "hash": f"t{n_states}"}))
    (home / "manifests" / "base_model.json").write_text(json.dumps({"uri": tiny_model, "hash": "tiny"}))
    res = dg.materialize(build_assets(graph_config()), selection=["alfworld/sampled_alternatives"],
                         resources=build_resources(str(profile), str(home)), instance=dg.DagsterInstance.ephemeral())
    assert res.success
    return json.loads((home / "manifests" / "alfworld__sampled_alternatives.json").read_text())


def test_more_expert_states_sample_only_the_new_ones(tmp_path, tiny_model):
    home = tmp_path / "home"
    first = _materialize(home, 20, tiny_model)
    assert (first["sampled"], first["cached"]) == (20, 0)
    second = _materialize(home, 22, tiny_model)  # +10% states
    assert (second["sampled"], second["cached"]) == (2, 20)
    assert second["states"] == 22

    changed = yaml.safe_load(SMOKE.read_text())
    changed["sampling"]["k"] = 3  # another sampling key: everything is sampled again
    profile = tmp_path / "k3.yaml"
    profile.write_text(yaml.safe_dump(changed))
    third = _materialize(home, 22, tiny_model, profile)
    assert (third["sampled"], third["cached"]) == (22, 0)
