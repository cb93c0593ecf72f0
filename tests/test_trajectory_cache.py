"""The played-games cache (``act_pipeline.data.trajectory_cache``) on three small real ALFWorld games
and the real PDDL planner: games are counted where they are opened (a factory around the real
:class:`AlfworldGame`, or the class the asset's in-process envs open, patched), never by a number the
code reports about itself; every table is compared with a cold run's, row for row and by hash."""

import json

import dagster as dg
import duckdb
import pyarrow as pa
import pytest
import yaml

from act_pipeline.assets.alfworld import ALFWORLD
from act_pipeline.assets.chain import trajectory_cache
from act_pipeline.assets.graph import build_assets
from act_pipeline.config import load_config
from act_pipeline.data.store import Warehouse, read_parquet, table_hash, write_parquet_atomic
from act_pipeline.data.trajectories import TRAJECTORY_SCHEMA, collect_expert_trajectories
from act_pipeline.data.trajectory_cache import TABLE
from act_pipeline.definitions import build_resources
from act_pipeline.envs import alfworld as aw
from act_pipeline.envs.workers import EnvFault

from .conftest import SMOKE, graph_config

CFG = load_config(SMOKE)  # the planner, 30 steps, history 2
S = CFG.alfworld
# small scenes (bedrooms, living rooms, bathrooms; scene >= 200): the planner answers in seconds
SMALL_TYPES = ("look_at_obj_in_light", "pick_and_place_simple", "pick_two_obj_and_place")


class Counting:
    """Opens the real game with the planner in this process; ``opened`` lists every game file opened
    (one per game played)."""

    def __init__(self):
        self.opened: list[str] = []

    def __call__(self, gamefile):
        self.opened.append(gamefile)
        return aw.AlfworldGame(gamefile, "planner")


def _build(alfworld_data, out, n=3):
    train = aw.discover_games(alfworld_data, "train", SMALL_TYPES)
    # scenes >= 200 first (quick for the planner); the games generated offline (one per task type)
    # may hold fewer of them, so the rest come from the other scenes
    specs = aw.select_balanced([g for g in train if g.scene >= 200], n)
    specs += aw.select_balanced([g for g in train if g not in specs], n - len(specs))
    return [{"game_id": s.game_id, "split": "train", "task_type": s.task_type,
             "gamefile": str(aw.build_game(s.path, out / str(i)))} for i, s in enumerate(specs)]


def _play(games, cache, cfg=CFG, factory=None, **kwargs):
    f = factory or Counting()
    table, stats = collect_expert_trajectories(games, f, cfg.alfworld.max_expert_steps, cfg.alfworld.history_len,
                                               log=lambda m: None, cache=cache, **kwargs)
    return table, stats, f.opened


def _cache(path, cfg=CFG, logs=None):
    return trajectory_cache(Warehouse(path), ALFWORLD, cfg, (logs if logs is not None else []).append)


def _with(**alfworld):
    return CFG.model_copy(update={"alfworld": CFG.alfworld.model_copy(update=alfworld)})


@pytest.fixture(scope="module")
def games(alfworld_data, tmp_path_factory):
    return _build(alfworld_data, tmp_path_factory.mktemp("games"))


@pytest.fixture(scope="module")
def cold(games):
    """Every game played, no cache."""
    table, stats, opened = _play(games, None)
    assert opened == [g["gamefile"] for g in games] and stats["won"] == len(games) == 3
    return table, stats


def _of(table, games):
    ids = {g["game_id"] for g in games}
    return [r for r in table.to_pylist() if r["game_id"] in ids]


def test_one_more_game_plays_only_that_game_and_gives_the_cold_table(games, cold, tmp_path, alfworld_data):
    table0, stats0 = cold
    wh = tmp_path / "warehouse.duckdb"
    first = [games[0], games[2]]  # the new game goes in the middle: the order must hold
    t1, s1, opened1 = _play(first, _cache(wh))
    assert opened1 == [g["gamefile"] for g in first]
    assert t1.to_pylist() == _of(table0, first) and (s1["played"], s1["cached"]) == (2, 0)

    t2, s2, opened2 = _play(games, _cache(wh))
    assert opened2 == [games[1]["gamefile"]]  # exactly the new game was played
    assert t2.to_pylist() == table0.to_pylist() and table_hash(t2) == table_hash(table0)
    assert t2.schema == table0.schema
    assert {k: s2[k] for k in ("games", "won", "failed", "env_faults")} == \
        {k: stats0[k] for k in ("games", "won", "failed", "env_faults")}
    assert (s2["played"], s2["cached"]) == (1, 2)

    # the same games built again elsewhere (the games asset writes a new folder per run): all cached
    again = _build(alfworld_data, tmp_path / "rebuilt")
    assert [g["game_id"] for g in again] == [g["game_id"] for g in games]
    assert {g["gamefile"] for g in again}.isdisjoint(g["gamefile"] for g in games)
    t3, s3, opened3 = _play(again, _cache(wh))
    assert opened3 == [] and table_hash(t3) == table_hash(table0) and s3["cached"] == 3


def test_two_expert_workers_play_only_the_games_not_cached(games, cold, tmp_path):
    """``envs.expert_workers: 2``: two env worker processes, each game opened through a counter."""
    from act_pipeline.config import EnvsConfig
    from act_pipeline.envs.workers import game_env_set

    wh = tmp_path / "warehouse.duckdb"
    _, _, opened = _play(games[1:2], _cache(wh))
    assert opened == [games[1]["gamefile"]]
    opened = []

    def counted(pool):
        return lambda gamefile: opened.append(gamefile) or pool(gamefile)

    envs = EnvsConfig(reset_timeout_s=120.0, step_timeout_s=60.0)
    with game_env_set(envs, ALFWORLD.env_factory, {"expert": "planner"}, 2, lambda m: None) as pools:
        table, stats = collect_expert_trajectories(games, [counted(p) for p in pools], S.max_expert_steps,
                                                   S.history_len, log=lambda m: None, cache=_cache(wh))
    assert sorted(opened) == sorted([games[0]["gamefile"], games[2]["gamefile"]])
    assert table.to_pylist() == cold[0].to_pylist() and (stats["played"], stats["cached"]) == (2, 1)


def test_what_plays_the_games_keys_the_cache(tmp_path, monkeypatch):
    import act_pipeline.assets.chain as chain
    import act_pipeline.data.trajectory_cache as tc

    base = _cache(tmp_path / "w.duckdb").key
    for changed in (_with(max_expert_steps=29), _with(history_len=1), _with(expert="handcoded")):
        assert _cache(tmp_path / "w.duckdb", changed).key != base
    assert _cache(tmp_path / "w.duckdb", CFG.model_copy(update={"seed": 7})).key == base  # not about playing
    with monkeypatch.context() as m:  # another alfworld / textworld / planner version
        m.setattr(tc, "package_versions", lambda names: {n: "0.0" for n in names})
        assert _cache(tmp_path / "w.duckdb").key != base
    with monkeypatch.context() as m:  # the player's code changed (data/trajectories.py, envs/alfworld.py)
        seen = []
        m.setattr(chain, "source_hash", lambda *mods: seen.append(mods) or "edited")
        assert _cache(tmp_path / "w.duckdb").key != base
        assert seen == [("act_pipeline.data.trajectories", "act_pipeline.envs.alfworld")]
    # the ScienceWorld expert (stochastic gold paths) is never cached
    from act_pipeline.assets.scienceworld import SCIENCEWORLD

    assert trajectory_cache(Warehouse(tmp_path / "w.duckdb"), SCIENCEWORLD, CFG, print) is None


def test_changing_max_expert_steps_plays_every_game_again(games, cold, tmp_path):
    wh = tmp_path / "warehouse.duckdb"
    one = games[:1]
    short = _with(max_expert_steps=2)  # too few steps to win: a deterministic failure, cached like a win
    with pytest.raises(RuntimeError, match="won none") as first:
        _play(one, _cache(wh, short), short)
    factory = Counting()
    with pytest.raises(RuntimeError, match="won none") as second:
        _play(one, _cache(wh, short), short, factory=factory)
    assert factory.opened == [] and str(second.value) == str(first.value)  # the failure, from the cache
    assert "did not win within 2 steps" in str(first.value)

    t, s, opened = _play(one, _cache(wh))  # the profile's 30 steps: a new key, the game played again
    assert opened == [one[0]["gamefile"]] and s["won"] == 1
    assert t.to_pylist() == _of(cold[0], one)


def test_a_corrupt_entry_is_ignored_and_its_game_played_again(games, cold, tmp_path):
    wh = tmp_path / "warehouse.duckdb"
    two = games[:2]
    _, _, opened = _play(two, _cache(wh))
    assert len(opened) == 2
    con = duckdb.connect(str(wh))
    con.execute(f"UPDATE {TABLE} SET rows_json = replace(rows_json, '\"step\":0', '\"step\":9') WHERE game_id = ?",
                [two[1]["game_id"]])
    con.close()
    logs: list[str] = []
    t, s, opened = _play(two, _cache(wh, logs=logs))
    assert opened == [two[1]["gamefile"]]  # only the corrupt entry's game
    assert t.to_pylist() == _of(cold[0], two)
    assert [r["game_id"] for r in s["cache_rejected"]] == [two[1]["game_id"]]
    assert any("is ignored" in m and "SHA-256" in m and str(wh) in m for m in logs)
    _, s, opened = _play(two, _cache(wh))  # the entry was written again
    assert opened == [] and s["cache_rejected"] == []


def test_a_warehouse_duckdb_cannot_open_is_an_error_naming_it_before_any_game(games, tmp_path):
    wh = tmp_path / "warehouse.duckdb"
    wh.write_bytes(b"not a database" * 512)
    factory = Counting()
    with pytest.raises(duckdb.IOException, match=str(wh)):
        _play(games[:1], _cache(wh), factory=factory)
    assert factory.opened == []


def test_an_interrupted_run_keeps_the_games_it_played(games, cold, tmp_path):
    wh = tmp_path / "warehouse.duckdb"

    class Interrupted(Counting):
        def __call__(self, gamefile):
            if gamefile == games[1]["gamefile"]:
                raise KeyboardInterrupt  # Ctrl-C while the second game opens
            return super().__call__(gamefile)

    with pytest.raises(KeyboardInterrupt):
        _play(games[:2], _cache(wh), factory=Interrupted())
    t, s, opened = _play(games[:2], _cache(wh))
    assert opened == [games[1]["gamefile"]] and t.to_pylist() == _of(cold[0], games[:2])


class DiesOnce(Counting):
    """The real game; the first time ``gamefile`` is played, its worker "dies" at the first step."""

    def __init__(self, gamefile):
        super().__init__()
        self.target = gamefile

    def __call__(self, gamefile):
        game = super().__call__(gamefile)
        if gamefile == self.target and self.opened.count(gamefile) == 1:
            def step(command):
                raise EnvFault("died", "env worker died (injected)")
            game.step = step
        return game


def test_env_faults_and_load_errors_are_never_cached_a_retried_game_is(games, cold, tmp_path):
    wh = tmp_path / "warehouse.duckdb"
    a, b = games[0], games[1]
    missing = dict(a, game_id="missing/trial", gamefile=str(tmp_path / "nope" / "game.tw-pddl"))
    # a's fault outlives its retries (0): not cached; the game that fails to load: not cached; b: cached
    _, s, opened = _play([a, missing, b], _cache(wh), factory=DiesOnce(a["gamefile"]))
    assert opened == [a["gamefile"], missing["gamefile"], b["gamefile"]]
    assert [f["game_id"] for f in s["failed"]] == [a["game_id"], "missing/trial"] and s["env_faults"]
    # a again: its first attempt dies, the retry plays it to the end (cached); b from the cache
    t, s, opened = _play([a, missing, b], _cache(wh), factory=DiesOnce(a["gamefile"]), retries=1)
    assert opened == [a["gamefile"], a["gamefile"], missing["gamefile"]]
    assert [f["game_id"] for f in s["failed"]] == ["missing/trial"] and s["env_faults"][0]["game_id"] == a["game_id"]
    assert t.to_pylist() == _of(cold[0], [a, b])
    # a and b ended: cached; the game that fails to load is played every time, with the same reason
    _, s2, opened = _play([a, missing, b], _cache(wh))
    assert opened == [missing["gamefile"]] and s2["cached"] == 2 and s2["failed"] == s["failed"]


def test_the_asset_replays_only_new_games_and_says_so(games, cold, tmp_path, monkeypatch):
    """``alfworld/expert_trajectories`` materialized by Dagster (env in this process, its game class
    counted): 2 games, then 3 with an import beside them; the metadata's counts match the count."""
    opened: list[str] = []
    real = aw.AlfworldGame

    class Counted(real):
        def __init__(self, gamefile, expert=None):
            opened.append(str(gamefile))
            super().__init__(gamefile, expert)

    monkeypatch.setattr(aw, "AlfworldGame", Counted)
    profile = yaml.safe_load(SMOKE.read_text())
    profile["envs"]["in_process"] = True
    path = tmp_path / "profile.yaml"
    path.write_text(yaml.safe_dump(profile))
    home = tmp_path / "home"
    (home / "manifests").mkdir(parents=True)
    empty = write_parquet_atomic(pa.Table.from_pylist([], TRAJECTORY_SCHEMA), tmp_path / "imported.parquet")
    (home / "manifests" / "alfworld__imported_expert_steps.json").write_text(json.dumps({"uri": str(empty), "hash": "e"}))

    def materialize(chosen):
        rows = [dict(g, scene=0, game_hash="-", roles=["train"], source_path="-") for g in chosen]
        uri = write_parquet_atomic(pa.Table.from_pylist(rows), tmp_path / f"games{len(chosen)}.parquet")
        (home / "manifests" / "alfworld__games.json").write_text(json.dumps({"uri": str(uri), "hash": f"g{len(chosen)}"}))
        res = dg.materialize(build_assets(graph_config()), selection=["alfworld/expert_trajectories"],
                             resources=build_resources(str(path), str(home)), instance=dg.DagsterInstance.ephemeral())
        assert res.success
        meta = res.asset_materializations_for_node("alfworld__expert_trajectories")[0].metadata
        manifest = json.loads((home / "manifests" / "alfworld__expert_trajectories.json").read_text())
        return read_parquet(manifest["uri"]), meta["games_replayed"].value, meta["games_from_cache"].value

    t, replayed, cached = materialize(games[:2])
    assert sorted(opened) == sorted(g["gamefile"] for g in games[:2]) and (replayed, cached) == (2, 0)
    opened.clear()
    t, replayed, cached = materialize(games[:3])
    assert opened == [games[2]["gamefile"]] and (replayed, cached) == (1, 2)
    assert t.to_pylist() == _of(cold[0], games[:3])
