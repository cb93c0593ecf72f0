"""Offline ALFWorld game generation (act_pipeline.envs.alfworld_gen): real alfworld, no mocks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from act_pipeline.envs.alfworld import SPLITS, TASK_TYPES, AlfworldDataError, AlfworldGame, discover_games
from act_pipeline.envs.alfworld_gen import generate_games

N = 2  # per split; the task-type round robin continues across splits, so 3 x 2 covers all six


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("alfgen")
    messages: list[str] = []
    ret = generate_games(out, N, seed=0, progress=messages.append)
    assert Path(ret) == out
    assert messages  # progress is reported
    return out / "json_2.1.1"


def _trials(root: Path, split: str) -> list[Path]:
    return sorted(p.parent for p in (root / split).glob("*/*/traj_data.json"))


def test_layout_and_formats(generated: Path):
    seen_types, walk_lengths = set(), {}
    for split in SPLITS:
        trials = _trials(generated, split)
        assert len(trials) == N, split
        for trial in trials:
            assert sorted(p.name for p in trial.iterdir()) == ["game.tw-pddl", "initial_state.pddl",
                                                               "traj_data.json"]
            assert re.fullmatch(r"trial_T\d{8}_\d{6}_\d{6}", trial.name)
            traj = json.loads((trial / "traj_data.json").read_text())
            assert set(traj) >= {"task_id", "task_type", "pddl_params", "scene", "turk_annotations"}
            assert traj["task_id"] == trial.name
            assert traj["task_type"] in TASK_TYPES
            seen_types.add(traj["task_type"])
            pp = traj["pddl_params"]
            assert set(pp) == {"object_target", "parent_target", "mrecep_target", "toggle_target",
                               "object_sliced"}
            assert pp["mrecep_target"] == "" and pp["object_sliced"] is False
            scene = traj["scene"]
            assert scene["floor_plan"] == f"FloorPlan{scene['scene_num']}"
            assert traj["turk_annotations"]["anns"] and all(a["task_desc"] for a in traj["turk_annotations"]["anns"])
            # folder name: <task_type>-<Object>-<Mrecep>-<Parent>-<scene>
            parent = pp["parent_target"] or pp["toggle_target"]
            assert trial.parent.name == f"{traj['task_type']}-{pp['object_target']}-None-{parent}-{scene['scene_num']}"
            if traj["task_type"] == "look_at_obj_in_light":
                assert pp["toggle_target"] == "DeskLamp" and pp["parent_target"] == ""
            else:
                assert pp["toggle_target"] == "" and pp["parent_target"]

            pddl = (trial / "initial_state.pddl").read_text()
            assert pddl.startswith(f"\n(define (problem plan_{trial.name})\n(:domain alfred)\n(:objects\nagent1 - agent\n")
            for section in ("(:init", "(:goal", "(receptacleType ", "(objectType ", "(canContain ", "(pickupable ",
                            "(inReceptacle ", "(receptacleAtLocation ", "(objectAtLocation ", "(atLocation agent1 loc_bar_"):
                assert section in pddl, (trial, section)
            obj = pp["object_target"]
            assert f"(objectType ?o{'1' if 'two' in traj['task_type'] else ''} {obj}Type)" in pddl
            if parent and traj["task_type"] != "look_at_obj_in_light":
                assert f"(receptacleType ?r {parent}Type)" in pddl
            # ids and locations are mangled like the released games
            assert "|" not in pddl.split("(:init")[1].split("(:goal")[0]
            assert re.search(r"loc_bar_(_minus_)?\d+_bar_(_minus_)?\d+_bar_[0-3]_bar_(_minus_)?\d+ - location", pddl)
            # every declared receptacle has a location and a type
            receps = re.findall(r"^\s+([A-Z]\S+) - receptacle$", pddl, re.M)
            assert receps
            for r in receps:
                assert f"(receptacleAtLocation {r} loc_bar_" in pddl and f"(receptacleType {r} " in pddl

            game = json.loads((trial / "game.tw-pddl").read_text())
            assert set(game) >= {"pddl_domain", "grammar", "pddl_problem", "solvable", "walkthrough"}
            assert game["pddl_problem"] == pddl
            assert game["solvable"] is True
            # a list of commands (test_games_are_planner_solvable replays it to a win); its length is
            # solve()'s, at most MAX_STEPS by construction, so the manifest's count is what can disagree
            walk = game["walkthrough"]
            assert isinstance(walk, list) and walk and all(isinstance(a, str) and a.strip() for a in walk)
            walk_lengths[f"{trial.parent.name}/{trial.name}"] = len(walk)
    assert seen_types == set(TASK_TYPES)
    manifest = json.loads((generated / "generation.json").read_text())
    assert manifest["seed"] == 0 and manifest["n_per_split"] == N
    recorded = {g["game"]: g["expert_steps"] for split in SPLITS for g in manifest["games"][split]}
    assert recorded == walk_lengths  # every game on disk is in the manifest, with its walkthrough's length


def test_games_are_planner_solvable(generated: Path):
    """Replay each recorded walkthrough in the text engine and require a win."""
    for split in SPLITS:
        for trial in _trials(generated, split):
            walkthrough = json.loads((trial / "game.tw-pddl").read_text())["walkthrough"]
            game = AlfworldGame(trial / "game.tw-pddl")
            try:
                _, info = game.reset()
                assert game.task, trial
                assert not info["won"], f"{trial}: goal already holds at the start"
                done = False
                for action in walkthrough:
                    assert not done
                    assert action in info["admissible"], (trial, action)
                    _, done, info = game.step(action)
                assert done and info["won"], trial
            finally:
                game.close()


def test_unseen_floorplans_held_out(generated: Path):
    def scenes(split):
        return {json.loads((t / "traj_data.json").read_text())["scene"]["scene_num"]
                for t in _trials(generated, split)}

    manifest = json.loads((generated / "generation.json").read_text())
    fps = manifest["floorplans"]
    assert fps["train"] == fps["valid_seen"]
    assert not set(fps["valid_unseen"]) & set(fps["train"])
    assert {10, 219, 308, 424} <= set(fps["valid_unseen"])  # ALFRED's unseen scenes
    assert scenes("valid_unseen") <= set(fps["valid_unseen"])
    assert not scenes("valid_unseen") & (scenes("train") | scenes("valid_seen"))
    assert scenes("train") | scenes("valid_seen") <= set(fps["train"])


def test_discover_games_finds_them(generated: Path):
    for split in SPLITS:
        games = discover_games(generated.parent, split)
        assert len(games) == N
        assert {g.path for g in games} == set(_trials(generated, split))
        for g in games:
            assert g.split == split and g.task_type in TASK_TYPES


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_deterministic_for_a_seed(tmp_path: Path):
    kw = dict(n_per_split=1, seed=7, task_types=["pick_and_place_simple", "pick_cool_then_place_in_recep"],
              unseen_floorplans=[5, 205, 305, 405])
    a = generate_games(tmp_path / "a", **kw) / "json_2.1.1"
    snap_a = _snapshot(a)
    assert len([k for k in snap_a if k.endswith("game.tw-pddl")]) == 3
    man = json.loads((a / "generation.json").read_text())
    assert man["floorplans"]["valid_unseen"] == [5, 205, 305, 405]
    # two generations, not three: the second goes over the first's output moved to another folder (the
    # bytes must not depend on where they are written) with a stray file added (gone only if the folder
    # was written anew): regenerating over our own output is allowed and gives the same files again
    (tmp_path / "a").rename(tmp_path / "b")
    b = tmp_path / "b" / "json_2.1.1"
    (b / "stray.txt").write_text("not generated")
    generate_games(tmp_path / "b", **kw)
    assert _snapshot(b) == snap_a


def test_clear_errors(tmp_path: Path):
    with pytest.raises(AlfworldDataError, match=r"FloorPlan999-objects\.json"):
        generate_games(tmp_path / "x", 1, unseen_floorplans=[999])
    foreign = tmp_path / "y" / "json_2.1.1"
    foreign.mkdir(parents=True)
    with pytest.raises(AlfworldDataError, match="refusing to overwrite"):
        generate_games(tmp_path / "y", 1)
    with pytest.raises(ValueError, match="unknown task types"):
        generate_games(tmp_path / "z", 1, task_types=["pick_and_dance"])
