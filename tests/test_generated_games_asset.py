"""Without ALFWORLD_DATA the pipeline generates its games offline and the expert plays them."""

import dagster as dg
import pyarrow.parquet as pq
import yaml

from act_pipeline.assets.graph import build_assets
from act_pipeline.definitions import build_resources

from .conftest import SMOKE, graph_config


def test_games_generated_offline_when_alfworld_data_is_unset(tmp_path, monkeypatch):
    monkeypatch.delenv("ALFWORLD_DATA", raising=False)
    home = tmp_path / "home"
    # one game per split (the smoke profile: 3) is all the checks below need: every split there, the
    # unseen scene apart from the train one, the expert winning. Each game is planner-solved when
    # generated, the train and held-out ones again by the expert; the generator's floor-plan split
    # itself is pinned in tests/test_alfworld_gen.py
    prof = yaml.safe_load(SMOKE.read_text())
    prof["alfworld"]["generate_per_split"] = 1
    profile = tmp_path / "one-per-split.yaml"
    profile.write_text(yaml.safe_dump(prof))
    res = dg.materialize(build_assets(graph_config()),
                         selection=["alfworld/games", "alfworld/imported_expert_steps", "alfworld/expert_trajectories"],
                         resources=build_resources(str(profile), str(home)),
                         instance=dg.DagsterInstance.ephemeral())
    assert res.success
    games_meta = res.asset_materializations_for_node("alfworld__games")[0].metadata
    assert games_meta["source"].value.startswith("generated")
    games = pq.read_table(next(home.glob("artifacts/alfworld/games/*/games.parquet"))).to_pylist()
    assert {g["split"] for g in games} == {"train", "valid_seen", "valid_unseen"}
    assert all(g["gamefile"].startswith(str(home)) for g in games)
    unseen_scenes = {g["scene"] for g in games if g["split"] == "valid_unseen"}
    assert unseen_scenes.isdisjoint({g["scene"] for g in games if g["split"] == "train"})
    steps = pq.read_table(next(home.glob("artifacts/alfworld/expert_trajectories/*/steps.parquet"))).to_pylist()
    assert steps and all(s["won"] for s in steps)  # the planner expert solves every generated game
    assert {s["game_id"] for s in steps} == {g["game_id"] for g in games
                                              if "train" in g["roles"] or "heldout_states" in g["roles"]}
