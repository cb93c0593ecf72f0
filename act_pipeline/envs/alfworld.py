"""ALFWorld (text engine) games: discovery, building ``game.tw-pddl``, playing, the expert.

Game folders follow the ``json_2.1.1`` layout that ``alfworld-download`` writes::

    <root>/json_2.1.1/<split>/<task_type>-<object>-<mrecep>-<parent>-<scene>/<trial>/
        initial_state.pddl   traj_data.json   [game.tw-pddl]

A folder without ``game.tw-pddl`` is built from the PDDL problem plus the domain and grammar that
the *installed* alfworld package ships, so the game's commands match the installed expert.

The data is the user's: a file or folder that is a link resolving outside the data folder is refused
before it is read, and every file is read with the bounds of ``act_pipeline.files`` (16 MiB a file,
JSON nested at most 64 levels), errors naming the file, the line and the field.
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

from act_pipeline.files import (InputError, PathEscapeError, atomic_write, load_json_file, read_limited,
                                safe_join, sha256_file, sha256_json, shown, where)

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
    if not root.is_dir():
        raise AlfworldDataError(f"{root} is a file, not a folder (expected the folder holding json_2.1.1/)")
    if (root / "json_2.1.1").is_dir():
        return root / "json_2.1.1"
    if all((root / s).is_dir() for s in ("train",)) or any((root / s).is_dir() for s in SPLITS):
        return root
    raise AlfworldDataError(
        f"{root}: no json_2.1.1/ folder (expected {root}/json_2.1.1/<split>/<task>/<trial>/"
        "initial_state.pddl and traj_data.json, the layout alfworld-download writes)"
    )


def _inside(data: str | os.PathLike, path: Path) -> Path:
    """``path`` (under the data folder ``data``), refused if it, or a folder on the way to it, is a link
    resolving outside ``data``: checked before anything there is read."""
    root = Path(data).expanduser()
    try:
        return safe_join(root, *path.relative_to(root).parts, what="ALFWorld data path")
    except PathEscapeError as e:
        raise AlfworldDataError(f"{path}: refused, a link out of the data folder ({e})") from None


def _read_user_file(path: Path, read):
    """``read(path)``, every failure an :class:`AlfworldDataError` naming the file (and line, field)."""
    try:
        return read(path)
    except InputError as e:
        raise AlfworldDataError(e.at(path)) from None
    except UnicodeDecodeError as e:
        raise AlfworldDataError(f"{path}: not UTF-8 (at offset {e.start})") from None
    except FileNotFoundError:
        raise AlfworldDataError(f"{path}: missing {path.name}") from None
    except OSError as e:
        raise AlfworldDataError(f"{path}: cannot read ({e.strerror})") from None


def _read_traj(path: Path) -> dict:
    f = path / "traj_data.json"
    data = _read_user_file(f, load_json_file)
    if not isinstance(data, dict):
        raise AlfworldDataError(f"{f}: expected a JSON object, got {type(data).__name__}")
    for key in ("task_type", "pddl_params"):
        if key not in data:
            raise AlfworldDataError(f"{where(f, None, key)}: missing")
    if data["task_type"] not in TASK_TYPES:
        raise AlfworldDataError(f"{where(f, None, 'task_type')}: is {shown(data['task_type'])}, not one of {TASK_TYPES}")
    params = data["pddl_params"]
    if not isinstance(params, dict):
        raise AlfworldDataError(f"{where(f, None, 'pddl_params')}: must be an object, got {shown(params)}")
    for key in ("object_target", "parent_target", "toggle_target", "mrecep_target"):
        if not isinstance(params.get(key, ""), str):
            raise AlfworldDataError(f"{where(f, None, 'pddl_params.' + key)}: must be a string, got {shown(params[key])}")
    return data


def _scene(f: Path, data: dict, folder: str) -> int:
    """The scene number: ``scene.scene_num``, else the task folder's last ``-`` part."""
    scene = data.get("scene", {})
    value = scene.get("scene_num", folder.rsplit("-", 1)[-1]) if isinstance(scene, dict) else scene
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        raise AlfworldDataError(f"{where(f, None, 'scene.scene_num')}: must be an integer, got {shown(value)}") from None


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
        for name in ("traj_data.json", "initial_state.pddl", "game.tw-pddl"):  # (the folders on the way too)
            _inside(data, trial / name)
        if not (trial / "initial_state.pddl").is_file() and not (trial / "game.tw-pddl").is_file():
            raise AlfworldDataError(f"{trial}: missing initial_state.pddl")
        data_ = _read_traj(trial)
        if data_["task_type"] not in wanted:
            continue
        scene = _scene(trial / "traj_data.json", data_, trial.parent.name)
        games.append(GameSpec(f"{trial.parent.name}/{trial.name}", split, data_["task_type"], scene, trial))
    if not games:
        raise AlfworldDataError(f"{sdir}: no games (no */*/traj_data.json with a supported task type)")
    return games


def import_alfworld() -> None:
    """Import the ``alfworld`` package with ``$ALFWORLD_DATA`` left as it was. Its import
    (``alfworld/info.py``) sets the variable to its own cache folder (``~/.cache/alfworld``, created
    empty) when it is unset, which made "unset: generate games offline" look like "set to a folder
    without the data" to :func:`resolve_data_root` and to the tests' games source, in any process
    that had imported alfworld before. Every import of alfworld in this package comes after this
    call (later imports of its modules do not run ``info.py`` again). Nothing here reads the
    variable through alfworld: its config-file paths (``AlfredTWEnv``) are not used
    (tests/test_alfworld_source.py checks both ways in a fresh process).
    """
    if "alfworld" in sys.modules:
        return
    before = os.environ.get("ALFWORLD_DATA")
    try:
        import alfworld  # noqa: F401
    finally:
        if before is None:
            os.environ.pop("ALFWORLD_DATA", None)
        else:
            os.environ["ALFWORLD_DATA"] = before


def game_logic() -> dict[str, str]:
    import_alfworld()
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
    import_alfworld()
    from alfworld.agents.utils.misc import add_task_to_grammar

    trial = Path(trial)
    existing = trial / "game.tw-pddl"
    if existing.is_file():
        gamedata = _read_user_file(existing, load_json_file)
        if not isinstance(gamedata, dict) or not isinstance(gamedata.get("pddl_problem"), str):
            raise AlfworldDataError(f"{where(existing, None, 'pddl_problem')}: missing (not a game file)")
    else:
        pddl = trial / "initial_state.pddl"
        if not pddl.is_file():
            raise AlfworldDataError(f"{trial}: missing initial_state.pddl")
        problem = _read_user_file(pddl, lambda p: read_limited(p).decode("utf-8"))
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


# what a game reads when it is played: its game file, and the traj_data.json beside it (the handcoded expert)
GAME_FILES = ("game.tw-pddl", "traj_data.json")


def game_content_hash(gamefile: str | Path) -> str:
    """Content hash of what playing ``gamefile`` reads (``GAME_FILES`` in its folder, by name and
    bytes), wherever the game was built: the expert cache's key for the game. A missing game file
    raises FileNotFoundError."""
    folder = Path(gamefile).parent
    parts = [Path(gamefile).name, sha256_file(gamefile)]
    for name in GAME_FILES[1:]:
        if (folder / name).is_file():
            parts += [name, sha256_file(folder / name)]
    return sha256_json(parts)


class AlfworldGame:
    """One ALFWorld text game, played in this process.

    ``expert`` is "handcoded", "planner" or None (no expert: faster resets for evaluation).
    """

    def __init__(self, gamefile: str | Path, expert: str | None = None):
        import textworld
        from textworld.envs import PddlEnv

        from act_pipeline.envs import textworld_cache
        import_alfworld()
        textworld_cache.install()  # the same games, ~4x faster (see that module)
        from alfworld.agents.environment.alfred_tw_env import (
            AlfredDemangler, AlfredExpert, AlfredInfos,
        )

        extras = ["gamefile"] + (["expert_plan"] if expert else [])
        infos = textworld.EnvInfos(won=True, admissible_commands=True, extras=extras)
        env = PddlEnv(infos)
        self._lib = env.downward_lib  # handed back on close (textworld_cache: a copy per open game)
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
        from act_pipeline.envs import textworld_cache

        self.env.close()
        lib, self._lib = self._lib, None
        textworld_cache.release_lib(lib)  # the next game opened in this process plays on it


def resolve_data_root(configured: str | None) -> Path | None:
    """The ALFWorld data folder from the profile, else ``$ALFWORLD_DATA``; None if neither is set.

    A folder that is set but unusable is an error (never a silent fallback to generation): it must
    exist, be a folder, and hold the three splits (``json_2.1.1/{train,valid_seen,valid_unseen}``).
    """
    value = configured or os.environ.get("ALFWORLD_DATA") or None
    if value is None:
        return None
    where_ = "alfworld.data in the profile" if configured else "ALFWORLD_DATA"
    root = Path(value).expanduser()
    if not root.exists():
        raise AlfworldDataError(f"{where_} points to {root}, which does not exist")
    try:
        base = _data_root(root)
    except AlfworldDataError as e:
        raise AlfworldDataError(f"{where_}: {e}") from None
    missing = [s for s in SPLITS if not (base / s).is_dir()]
    if missing:
        raise AlfworldDataError(f"{where_}: {base} has no split folder {', '.join(missing)} (expected "
                                f"{', '.join(SPLITS)}: the layout alfworld-download writes)")
    return root


def check_data_env() -> int:
    """``$ALFWORLD_DATA`` checked in seconds, before any set-up (``scripts/run.sh``): 0 if it is unset or
    usable, else 2 with the reason on stderr. Needs nothing but the standard library."""
    try:
        resolve_data_root(None)
    except AlfworldDataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


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
