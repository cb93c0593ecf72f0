"""Incremental sampling: +10% expert states → only the new states are sampled (real DuckDB cache).

Checked on what the runs wrote (the alternatives tables, the warehouse's cache table), not on the
counts the asset reports about itself: the old states' rows are the first run's, and a marker put
into the cache between the runs comes back, which only a read of the cache can do."""

import json

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
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


def _rows(manifest: dict) -> dict[str, list[tuple]]:
    """The alternatives table a run wrote, by state: its rows in order, every column but the state."""
    out: dict[str, list[tuple]] = {}
    for r in pq.read_table(manifest["uri"]).to_pylist():
        out.setdefault(r.pop("state_id"), []).append(tuple(r.values()))
    return out


def _cache(home) -> dict[str, list[tuple[str, list[str]]]]:
    """The warehouse's sampling cache: state -> [(sampling key, completions)]."""
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        rows = con.execute("SELECT state_id, sampling_key, completions FROM sampling_cache_v2 ORDER BY ALL").fetchall()
    finally:
        con.close()
    out: dict[str, list] = {}
    for sid, key, comps in rows:
        out.setdefault(sid, []).append((key, list(comps)))
    return out


MARK = ["examine marker 1</action>", "examine marker 2</action>", "examine marker 3</action>",
        "examine marker 4</action>"]  # K = 4 (the smoke profile); no model writes these


def _model_completions(rows: list[tuple]) -> list[str]:
    """The free completions of a state's rows (origin `model`), in sample order."""
    return [r[2] for r in rows if r[5] == "model"]


def test_more_expert_states_sample_only_the_new_ones(tmp_path, tiny_model):
    home = tmp_path / "home"
    first = _materialize(home, 20, tiny_model)
    rows1, cache1 = _rows(first), _cache(home)
    ids = [f"s{i:03d}" for i in range(22)]
    assert sorted(rows1) == ids[:20] and sorted(cache1) == ids[:20]
    assert all(len(v) == 1 and len(v[0][1]) == 4 for v in cache1.values())  # one key, K = 4 completions each
    assert all(_model_completions(rows1[s]) == cache1[s][0][1] for s in ids[:20])
    # a marker in the cache for s000: it can reach the next table only through a cache read
    con = duckdb.connect(str(home / "warehouse.duckdb"))
    con.execute("UPDATE sampling_cache_v2 SET completions = ?, truncated = [false, false, false, false] "
                "WHERE state_id = 's000'", [MARK])
    con.close()

    second = _materialize(home, 22, tiny_model)  # +10% states
    rows2, cache2 = _rows(second), _cache(home)
    assert sorted(rows2) == ids
    assert _model_completions(rows2["s000"]) == MARK  # read from the cache, not sampled again
    assert {s: rows2[s] for s in ids[1:20]} == {s: rows1[s] for s in ids[1:20]}  # the first run's rows, unchanged
    assert all(len(_model_completions(rows2[s])) == 4 for s in ids[20:])  # the new states, sampled
    assert sorted(cache2) == ids and cache2["s021"][0][0] == cache1["s000"][0][0]  # cached under the same key
    assert (second["sampled"], second["cached"], second["states"]) == (2, 20, 22)  # and the asset says so

    changed = yaml.safe_load(SMOKE.read_text())
    changed["sampling"]["k"] = 3  # another sampling key: everything is sampled again
    profile = tmp_path / "k3.yaml"
    profile.write_text(yaml.safe_dump(changed))
    third = _materialize(home, 22, tiny_model, profile)
    rows3, cache3 = _rows(third), _cache(home)
    assert all(len(_model_completions(rows3[s])) == 3 for s in ids)
    assert not any("marker" in c for c in _model_completions(rows3["s000"]))
    assert all(len(cache3[s]) == 2 for s in ids)  # a second key beside the first for every state
    assert (third["sampled"], third["cached"]) == (22, 0)
