"""ALFWorld (text engine) games: discovery, building ``game.tw-pddl``, playing, the expert.

Game folders follow the ``json_2.1.1`` layout that ``alfworld-download`` writes::

    <root>/json_2.1.1/<split>/<task_type>-<object>-<mrecep>-<parent>-<scene>/<trial>/
        initial_state.pddl   traj_data.json   [game.tw-pddl]

A folder without ``game.tw-pddl`` is built from the PDDL problem plus the domain and grammar that
the *installed* alfworld package ships, so the game's commands match the installed expert.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from act_pipeline.files import atomic_write, sha256_file, sha256_json

TASK_TYPES = (
    "pick_and_place_simple",
    "look_at_obj_in_light",
    "pick_clean_then_place_in_recep",
    "pick_heat_then_place_in_recep",
    "pick_cool_then_place_in_recep",
    "pick_two_obj_and_place",
)
SPLITS = ("train", "valid_seen", "valid_unseen")


class AlfworldDataError(ValueError):
    """Missing or malformed ALFWorld data; the message names the path and what is wrong."""


@dataclass(frozen=True)
class GameSpec:
    game_id: str  # "<task folder>/<trial>"
    split: str
    task_type: str
    scene: int
    path: Path  # the trial folder


def _data_root(data: str | os.PathLike) -> Path:
    root = Path(data).expanduser()
    if not root.exists():
        raise AlfworldDataError(f"ALFWorld data folder {root} does not exist (check ALFWORLD_DATA)")
    if (root / "json_2.1.1").is_dir():
        return root / "json_2.1.1"
    if all((root / s).is_dir() for s in ("train",)) or any((root / s).is_dir() for s in SPLITS):
        return root
    raise AlfworldDataError(
        f"{root}: no json_2.1.1/ folder (expected {root}/json_2.1.1/<split>/<task>/<trial>/"
        "initial_state.pddl and traj_data.json, the layout alfworld-download writes)"
    )


def _read_traj(path: Path) -> dict:
    f = path / "traj_data.json"
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AlfworldDataError(f"{f}: missing traj_data.json") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AlfworldDataError(f"{f}: corrupt traj_data.json ({e})") from None
    for key in ("task_type", "pddl_params"):
        if key not in data:
            raise AlfworldDataError(f"{f}: traj_data.json has no field `{key}`")
    if data["task_type"] not in TASK_TYPES:
        raise AlfworldDataError(f"{f}: field `task_type` is {data['task_type']!r}, not one of {TASK_TYPES}")
    return data


def discover_games(data: str | os.PathLike, split: str, task_types: Iterable[str] = ()) -> list[GameSpec]:
    """All trial folders of one split, sorted by id (deterministic)."""
    root = _data_root(data)
    sdir = root / split
    if not sdir.is_dir():
        raise AlfworldDataError(f"{root}: split folder `{split}` is missing")
    wanted = set(task_types) or set(TASK_TYPES)
    games = []
    for traj in sorted(sdir.glob("*/*/traj_data.json")):
        trial = traj.parent
        if "movable" in trial.parent.name or "Sliced" in trial.parent.name:
            continue  # not supported by the text engine (as in alfworld itself)
        if not (trial / "initial_state.pddl").is_file() and not (trial / "game.tw-pddl").is_file():
            raise AlfworldDataError(f"{trial}: missing initial_state.pddl")
        data_ = _read_traj(trial)
        if data_["task_type"] not in wanted:
            continue
        scene = int(data_.get("scene", {}).get("scene_num", trial.parent.name.rsplit("-", 1)[-1]))
        games.append(GameSpec(f"{trial.parent.name}/{trial.name}", split, data_["task_type"], scene, trial))
    if not games:
        raise AlfworldDataError(f"{sdir}: no games (no */*/traj_data.json with a supported task type)")
    return games


def game_logic() -> dict[str, str]:
    from alfworld.info import ALFRED_PDDL_PATH, ALFRED_TWL2_PATH

    return {
        "pddl_domain": Path(ALFRED_PDDL_PATH).read_text(),
        "grammar": Path(ALFRED_TWL2_PATH).read_text(),
    }


def build_game(trial: Path, dst_dir: Path, logic: dict[str, str] | None = None) -> Path:
    """Copy one trial folder to ``dst_dir`` and build its ``game.tw-pddl``; returns the game file.

    The handcoded expert reads ``traj_data.json`` beside the game file, so it is copied too. An
    existing game.tw-pddl (a full ``alfworld-download``) is used as it is.
    """
    from alfworld.agents.utils.misc import add_task_to_grammar

    trial = Path(trial)
    existing = trial / "game.tw-pddl"
    if existing.is_file():
        gamedata = json.loads(existing.read_text())
    else:
        pddl = trial / "initial_state.pddl"
        if not pddl.is_file():
            raise AlfworldDataError(f"{trial}: missing initial_state.pddl")
        problem = pddl.read_text()
        if "(define" not in problem or ":init" not in problem:
            raise AlfworldDataError(f"{pddl}: not a PDDL problem (no `(define` / `:init`)")
        logic = logic or game_logic()
        traj = _read_traj(trial)
        # alfworld words the task with the global, unseeded `random`: seed it from the game itself so
        # that a game is worded the same whenever it is built (state ids, the sample cache and the
        # evaluation depend on it), and leave the global state as it was
        state = random.getstate()
        random.seed(sha256_json(traj))
        try:
            grammar = add_task_to_grammar(logic["grammar"], traj)
        finally:
            random.setstate(state)
        gamedata = {
            "pddl_domain": logic["pddl_domain"],
            "grammar": grammar,
            "pddl_problem": problem,
            "solvable": None,
            "walkthrough": None,
        }
    dst_dir = Path(dst_dir)
    dst_dir.mkdir(parents=True, exist_ok=True)
    for name in ("traj_data.json", "initial_state.pddl"):
        if (trial / name).is_file():
            shutil.copyfile(trial / name, dst_dir / name)
    return atomic_write(dst_dir / "game.tw-pddl", json.dumps(gamedata))


class AlfworldGame:
    """One ALFWorld text game, played in this process.

    ``expert`` is "handcoded", "planner" or None (no expert: faster resets for evaluation).
    """

    def __init__(self, gamefile: str | Path, expert: str | None = None):
        import textworld
        from textworld.envs import PddlEnv
        from alfworld.agents.environment.alfred_tw_env import (
            AlfredDemangler, AlfredExpert, AlfredInfos,
        )

        extras = ["gamefile"] + (["expert_plan"] if expert else [])
        infos = textworld.EnvInfos(won=True, admissible_commands=True, extras=extras)
        env = PddlEnv(infos)
        env = AlfredDemangler(env, shuffle=False)
        env = AlfredInfos(env)
        if expert:
            env = AlfredExpert(env, expert_type=expert)
        self.env = env
        self.gamefile = str(gamefile)
        self.expert = expert
        argv = list(sys.argv)
        try:
            self.env.load(self.gamefile)
        finally:
            sys.argv[:] = argv  # fast_downward's translator overwrites sys.argv on load
        self.task = ""

    @staticmethod
    def _split_task(feedback: str) -> tuple[str, str]:
        marker = "Your task is to:"
        if marker in feedback:
            obs, task = feedback.split(marker, 1)
            return obs.strip(), task.strip()
        return feedback.strip(), ""

    def reset(self) -> tuple[str, dict]:
        state = self.env.reset()
        obs, self.task = self._split_task(state["feedback"])
        return obs, self._info(state)

    def step(self, command: str) -> tuple[str, bool, dict]:
        state, _, done = self.env.step(command)
        return state["feedback"].strip(), bool(done), self._info(state)

    def _info(self, state) -> dict:
        info = {
            "won": bool(state["won"]),
            "admissible": sorted(a for a in state["admissible_commands"] if a not in ("help",)),
        }
        if self.expert:
            plan = state.get("extra.expert_plan") or []
            info["expert_action"] = plan[0] if plan else None
        return info

    def close(self) -> None:
        self.env.close()


def resolve_data_root(configured: str | None) -> Path | None:
    """The ALFWorld data folder from the profile, else ``$ALFWORLD_DATA``; None if neither is set.

    A folder that is set but unusable is an error (never a silent fallback to generation).
    """
    value = configured or os.environ.get("ALFWORLD_DATA") or None
    if value is None:
        return None
    where = "alfworld.data in the profile" if configured else "ALFWORLD_DATA"
    root = Path(value).expanduser()
    if not root.exists():
        raise AlfworldDataError(f"{where} points to {root}, which does not exist")
    try:
        _data_root(root)
    except AlfworldDataError as e:
        raise AlfworldDataError(f"{where}: {e}") from None
    return root


def select_balanced(games: list, n: int, task_type=lambda g: g.task_type) -> list:
    """The first ``n`` games taking task types round-robin (in the given order, sorted ids):
    every type is represented. ``task_type`` reads an item's type (GameSpec or table row)."""
    by_type: dict[str, list] = {}
    for g in games:
        by_type.setdefault(task_type(g), []).append(g)
    queues = [by_type[t] for t in sorted(by_type)]
    out: list[GameSpec] = []
    i = 0
    while len(out) < n and any(queues):
        q = queues[i % len(queues)]
        if q:
            out.append(q.pop(0))
        i += 1
    return out
