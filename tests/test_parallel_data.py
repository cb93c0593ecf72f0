"""The two shared data stages on several cores give the data of one core, bit for bit: the expert
played on 2 env workers at once (``envs.expert_workers``) and the constrained scores computed in 2
spawned processes (``sampling.workers``), on real ALFWorld games with the tiny model."""

import os

import pytest

from act_pipeline.config import EnvsConfig, PipelineConfig, SamplingConfig
from act_pipeline.data.store import Warehouse, table_hash
from act_pipeline.data.trajectories import collect_expert_trajectories
from act_pipeline.envs import alfworld as aw
from act_pipeline.envs.workers import game_env_set
from act_pipeline.models import load_model
from act_pipeline.sampling import constrained
from act_pipeline.sampling.alternatives import sample_alternatives
from act_pipeline.sampling.base import SamplingParams
from act_pipeline.sampling.cache import SampleCache
from act_pipeline.sampling.hf import TransformersSampler

from .conftest import REPO

FACTORY = "act_pipeline.envs.alfworld:AlfworldGame"


def _expert(games, workers, factory=FACTORY, **kwargs):
    logs = []
    envs = EnvsConfig(reset_timeout_s=120.0, step_timeout_s=60.0)
    with game_env_set(envs, factory, {"expert": "planner", **kwargs}, workers, logs.append) as make_games:
        assert len(make_games) == workers and len({id(m) for m in make_games}) == workers
        table, stats = collect_expert_trajectories(games, make_games, 30, 2, log=logs.append, retries=1)
    return table, stats, logs


@pytest.fixture(scope="module")
def played(alfworld_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("games")
    specs = aw.discover_games(alfworld_data, "train")[1:4]
    games = [{"game_id": s.game_id, "split": "train", "task_type": s.task_type,
              "gamefile": str(aw.build_game(s.path, out / str(i)))} for i, s in enumerate(specs)]
    # a game that fails to load, second: its place in `failed` and in the rows must not move
    games.insert(1, dict(games[0], game_id="missing", gamefile=str(out / "nope" / "game.tw-pddl")))
    return games, _expert(games, 1)


def test_two_expert_workers_give_the_table_of_one(played):
    games, (one, stats1, logs1) = played
    two, stats2, logs2 = _expert(games, 2)
    assert one.num_rows > 0 and stats1["won"] == 3
    assert two.to_pylist() == one.to_pylist()
    assert table_hash(two) == table_hash(one)
    assert stats2 == stats1 and [f["game_id"] for f in stats2["failed"]] == ["missing"]
    # one progress line per game, counted as they finish
    for logs in (logs1, logs2):
        lines = [m for m in logs if m.startswith("expert ") and " steps, won=" in m]
        assert [m.split()[1] for m in lines] == [f"{i}/{len(games)}" for i in range(1, len(games) + 1)]
        assert sorted(m.split()[3].rstrip(":") for m in lines) == sorted(g["game_id"] for g in games)


def test_a_fault_on_one_of_two_workers_is_retried_and_the_table_is_the_same(played, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    games, (one, stats1, _) = played
    # the first step played on either worker kills that worker; its game starts again on a fresh one
    two, stats2, logs = _expert(games, 2, "tests.faults:FaultyGame", fault="die", at="step",
                                state_file=str(tmp_path / "count"), times=1)
    assert two.to_pylist() == one.to_pylist() and stats2["won"] == stats1["won"]
    assert any(f["fault"].startswith("died") for f in stats2["env_faults"])  # (the missing game: `error`)
    assert stats2["failed"] == stats1["failed"]
    assert any("starting the game again on a fresh worker" in m for m in logs)


@pytest.fixture
def one_torch_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what each scoring process uses
    yield
    torch.set_num_threads(threads)


def test_constrained_scores_in_two_processes_give_the_table_of_one(played, tiny_model, tmp_path, one_torch_thread):
    _, (traj, _, _) = played
    states = [r for r in traj.to_pylist() if r["won"]][:10]
    assert len(states) >= 6
    m, tok = load_model(tiny_model)
    sampler = TransformersSampler(m, tok)
    params = SamplingParams(n=3, temperature=1.0, max_new_tokens=8, seed=0)
    one, c1 = sample_alternatives(sampler, tok, states, params, 2, policy="constrained", constrained_temperature=0.25)
    direct = constrained.score_admissible(m, tok, states, 2)  # every admissible action's score, one process
    procs = constrained.ScoringProcesses(tiny_model, "float32", False, workers=2, share=3)
    # a cache that already holds two states' scores: only the others go to the processes
    cache = SampleCache(Warehouse(tmp_path / "wh.duckdb"), "key")
    cache.store_scores({s["state_id"]: (s["admissible"], direct[s["state_id"]]) for s in states[:2]},
                       constrained.SCORER_ID)
    seen = []
    two, c2 = sample_alternatives(sampler, tok, states, params, 2, progress=lambda d, t: seen.append((d, t)),
                                  policy="constrained", cache=cache, constrained_temperature=0.25,
                                  score_processes=procs)
    assert one.num_rows == len(states) * 3
    assert two.to_pylist() == one.to_pylist()  # the same draws and logprobs, bit for bit
    assert table_hash(two) == table_hash(one)
    assert c1["scored"] == len(states) and (c2["scored"], c2["scores_cached"]) == (len(states) - 2, 2)
    # shares of 3, 3 and 2 states come back in whichever order the two processes finish them
    done = [d for d, _ in seen]
    assert done == sorted(set(done)) and done[-1] == 8 and set(done) <= {2, 3, 5, 6, 8}, done
    assert {t for _, t in seen} == {len(states) - 2}
    # the scores the processes computed (now in the cache) are the one-process scores, bit for bit
    stored = cache.lookup_scores([s["state_id"] for s in states[2:]], constrained.SCORER_ID)
    assert {sid: sc for sid, (_, sc) in stored.items()} == {s["state_id"]: direct[s["state_id"]] for s in states[2:]}


def test_speed_knobs_never_change_a_section_hash():
    base = PipelineConfig()
    fast = PipelineConfig(sampling=SamplingConfig(workers=2), envs=EnvsConfig(expert_workers=2))
    assert fast.sampling.workers == 2 and fast.envs.expert_workers == 2
    assert {s: fast.section_hash(s) for s in ("sampling", "envs")} == \
        {s: base.section_hash(s) for s in ("sampling", "envs")}
