"""Writing games: one trial folder per drafted game (:func:`write_game`), the planner-expert check that
keeps only solvable games (:func:`solve`), and the entry point :func:`generate_games`, which splits floor
plans into seen / unseen, round-robins task types and writes ``json_2.1.1`` with its manifest."""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from act_pipeline.envs.alfworld import SPLITS, TASK_TYPES, AlfworldDataError, AlfworldGame, build_game
from act_pipeline.envs.alfworld_gen.draft import GameDraft, draft_game
from act_pipeline.envs.alfworld_gen.layouts import _layouts_dir, available_floorplans, default_unseen_floorplans
from act_pipeline.envs.alfworld_gen.pddl import render_pddl
from act_pipeline.envs.alfworld_gen.scene import Scene, load_scene
from act_pipeline.envs.alfworld_gen.tables import MANIFEST, MAX_ATTEMPTS, MAX_STEPS
from act_pipeline.envs.alfworld_gen.tasks import candidate_tasks
from act_pipeline.envs.alfworld_gen.traj import traj_data
from act_pipeline.files import atomic_write, replace_dir


def solve(gamefile: Path, max_steps: int = MAX_STEPS) -> list[str] | None:
    """The planner expert's walkthrough if it wins within ``max_steps``, else None.

    No wall-clock limit: a time-based decision would make the output depend on machine load.
    """
    game = None
    try:
        game = AlfworldGame(gamefile, expert="planner")
        _, info = game.reset()
        if info["won"]:
            return None  # goal already true at the start: not a task
        walk: list[str] = []
        for _ in range(max_steps):
            action = info.get("expert_action")
            if not action or action == "look" and walk and walk[-1] == "look":
                return None
            _, done, info = game.step(action)
            walk.append(action)
            if done:
                break
        return walk if info["won"] else None
    except Exception:  # noqa: BLE001 - any planner/engine failure means "not solvable"
        return None
    finally:
        if game is not None:
            try:
                game.close()
            except Exception:  # noqa: BLE001
                pass


def _write_json(path: Path, data, **kw) -> None:
    atomic_write(path, json.dumps(data, **kw))  # key order as written (the games' bytes are pinned)


def write_game(g: GameDraft, split_dir: Path, staging: Path, seed_token: str) -> Path:
    """Write one trial folder (initial_state.pddl, traj_data.json, game.tw-pddl); returns it."""
    trial = split_dir / f"{g.task.folder}-{g.scene.fp}" / g.task_id
    if trial.exists():
        raise FileExistsError(trial)
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    (staging / "initial_state.pddl").write_text(render_pddl(g))
    (staging / "traj_data.json").write_text(json.dumps(traj_data(g), indent=4))
    # add_task_to_grammar picks the task template with the global `random`: pin it for determinism
    state = random.getstate()
    random.seed(seed_token)
    try:
        build_game(staging, trial)
    finally:
        random.setstate(state)
        shutil.rmtree(staging, ignore_errors=True)
    return trial


def generate_games(out_dir: str | Path, n_per_split: int, seed: int = 0,
                   task_types: Sequence[str] = (), unseen_floorplans: Sequence[int] | None = None,
                   progress: Callable[[str], None] | None = None) -> Path:
    """Write out_dir/json_2.1.1/{train,valid_seen,valid_unseen}/<task_type>-<Object>-<Mrecep>-<Parent>-<scene>/<trial>/
    with initial_state.pddl, traj_data.json and game.tw-pddl; return out_dir. Deterministic for a seed."""
    out_dir = Path(out_dir)
    say = progress or (lambda msg: None)
    if n_per_split < 0:
        raise ValueError(f"n_per_split must be >= 0, got {n_per_split}")
    types = list(dict.fromkeys(task_types)) or list(TASK_TYPES)
    bad = [t for t in types if t not in TASK_TYPES]
    if bad:
        raise ValueError(f"unknown task types {bad}; expected some of {TASK_TYPES}")

    available = available_floorplans()
    if unseen_floorplans is None:
        unseen = default_unseen_floorplans(available)
    else:
        unseen = sorted(set(int(n) for n in unseen_floorplans))
        d = _layouts_dir()
        for n in unseen:
            if n not in available:
                raise AlfworldDataError(f"{d / f'FloorPlan{n}-objects.json'}: layout files for unseen floor "
                                        f"plan {n} are missing (available: {available[0]}..{available[-1]})")
    seen = [n for n in available if n not in set(unseen)]
    if not unseen or not seen:
        raise AlfworldDataError(f"need floor plans for both seen and unseen splits (unseen={unseen})")
    pools = {"train": seen, "valid_seen": seen, "valid_unseen": unseen}

    final = out_dir / "json_2.1.1"
    if final.exists():
        if not (final / MANIFEST).is_file():
            raise AlfworldDataError(f"{final} exists and was not written by alfworld_gen; "
                                    "refusing to overwrite it (choose another out_dir)")
    out_dir.mkdir(parents=True, exist_ok=True)
    work = out_dir / ".json_2.1.1.partial"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir()
    staging = out_dir / ".alfworld_gen_staging"

    scenes: dict[int, Scene] = {}

    def scene(fp: int) -> Scene:
        if fp not in scenes:
            scenes[fp] = load_scene(fp)
        return scenes[fp]

    manifest = {"generator": "act_pipeline.envs.alfworld_gen", "seed": seed, "n_per_split": n_per_split,
                "task_types": types, "floorplans": {s: pools[s] for s in SPLITS}, "games": {}}
    stats = {"kept": 0, "attempts": 0, "seconds": 0.0}
    k = 0  # global round-robin index over task types, continued across splits
    for split in SPLITS:
        split_dir = work / split
        split_dir.mkdir()
        feasible = {}
        for tt in types:
            feasible[tt] = [fp for fp in pools[split] if candidate_tasks(scene(fp), tt)]
            if not feasible[tt]:
                say(f"[{split}] no floor plan supports {tt}; skipping that task type in this split")
        usable = [tt for tt in types if feasible[tt]]
        if n_per_split and not usable:
            raise AlfworldDataError(f"[{split}] none of the task types {types} can be generated on floor plans "
                                    f"{pools[split]}")
        games = []
        for j in range(n_per_split):
            tt = usable[k % len(usable)]
            k += 1
            t0 = time.perf_counter()
            for attempt in range(MAX_ATTEMPTS):
                rng = random.Random(f"alfworld_gen-{seed}-{split}-{j}-{attempt}")
                fp = feasible[tt][rng.randrange(len(feasible[tt]))]
                sc = scene(fp)
                cands = candidate_tasks(sc, tt)
                task = cands[rng.randrange(len(cands))]
                stats["attempts"] += 1
                g = draft_game(sc, task, rng)
                if g is None:
                    continue
                try:
                    trial = write_game(g, split_dir, staging, f"alfworld_gen-{seed}-{split}-{j}-grammar")
                except FileExistsError:
                    continue
                walk = solve(trial / "game.tw-pddl")
                if walk is None:
                    shutil.rmtree(trial)
                    if not any(trial.parent.iterdir()):
                        trial.parent.rmdir()
                    say(f"[{split}] {j + 1}/{n_per_split} {trial.parent.name}: not solved, retrying")
                    continue
                gf = trial / "game.tw-pddl"
                data = json.loads(gf.read_text())
                data["solvable"] = True
                data["walkthrough"] = walk
                _write_json(gf, data)
                dt = time.perf_counter() - t0
                stats["kept"] += 1
                stats["seconds"] += dt
                games.append({"game": f"{trial.parent.name}/{trial.name}", "attempts": attempt + 1,
                              "expert_steps": len(walk)})
                say(f"[{split}] {j + 1}/{n_per_split} {trial.parent.name}/{trial.name}: "
                    f"{len(walk)} expert steps, attempt {attempt + 1}, {dt:.1f}s")
                break
            else:
                raise AlfworldDataError(f"[{split}] could not generate a solvable {tt} game in {MAX_ATTEMPTS} "
                                        f"attempts (floor plans {feasible[tt]})")
        manifest["games"][split] = games
    _write_json(work / MANIFEST, manifest, indent=2)
    replace_dir(work, final)
    if stats["kept"]:
        say(f"generated {stats['kept']} games in {stats['seconds']:.0f}s "
            f"({stats['attempts']} attempts, {stats['seconds'] / stats['kept']:.1f}s per game)")
    return out_dir
