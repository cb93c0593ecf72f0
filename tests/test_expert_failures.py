"""A broken or unsolvable game is recorded with its reason; the other games go on."""

import shutil

import pytest

from act_pipeline.data.trajectories import collect_expert_trajectories
from act_pipeline.envs import alfworld as aw


def _game(tmp_path, spec, name, corrupt=None):
    trial = tmp_path / "src" / name
    shutil.copytree(spec.path, trial)
    if corrupt:
        corrupt(trial / "initial_state.pddl")
        # a game file shipped beside it (generated games, a full alfworld-download) would be used as it
        # is: build the game from the corrupted problem
        (trial / "game.tw-pddl").unlink(missing_ok=True)
    gamefile = aw.build_game(trial, tmp_path / "games" / name)
    return {"game_id": name, "split": "train", "task_type": spec.task_type, "gamefile": str(gamefile)}


def _unsolvable(pddl):
    text = pddl.read_text()
    i = text.index("(:goal")
    pddl.write_text(text[:i] + "(:goal (and (isToggled agent1)))\n)\n")  # a goal no action can reach


def test_broken_games_are_recorded_and_the_rest_goes_on(alfworld_data, tmp_path):
    spec = aw.discover_games(alfworld_data, "train")[1]
    games = [_game(tmp_path, spec, "good"), _game(tmp_path, spec, "unsolvable", _unsolvable)]
    games.append(dict(games[0], game_id="missing", gamefile=str(tmp_path / "nope" / "game.tw-pddl")))
    table, stats = collect_expert_trajectories(games, lambda f: aw.AlfworldGame(f, "planner"),
                                               max_steps=30, history_len=2, log=lambda m: None)
    assert stats["won"] == 1 and stats["games"] == 3
    failed = {f["game_id"]: f["reason"] for f in stats["failed"]}
    assert set(failed) == {"unsolvable", "missing"}
    assert "nope/game.tw-pddl" in failed["missing"]
    assert {r["game_id"] for r in table.to_pylist() if r["won"]} == {"good"}
    with pytest.raises(RuntimeError, match="the expert won none of the games"):
        collect_expert_trajectories(games[1:], lambda f: aw.AlfworldGame(f, "planner"), 30, 2, log=lambda m: None)
