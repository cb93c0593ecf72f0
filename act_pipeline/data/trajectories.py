"""Expert trajectories: one row per expert step, as an Arrow table (stored as Parquet)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence

import pyarrow as pa

Log = Callable[[str], None]

HISTORY_TYPE = pa.list_(pa.struct([("action", pa.string()), ("observation", pa.string())]))

TRAJECTORY_SCHEMA = pa.schema([
    ("state_id", pa.string()),
    ("game_id", pa.string()),
    ("split", pa.string()),
    ("task_type", pa.string()),
    ("task", pa.string()),
    ("step", pa.int32()),
    ("observation", pa.string()),
    ("history", HISTORY_TYPE),
    ("admissible", pa.list_(pa.string())),
    ("expert_action", pa.string()),
    ("won", pa.bool_()),
])


def state_id(game_id: str, task: str, observation: str, history: Sequence[dict], admissible: Sequence[str], step: int) -> str:
    """Content hash of everything the agent sees at a state (plus its game and step)."""
    blob = json.dumps([game_id, step, task, observation, list(history), sorted(admissible)], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def play_expert(game, game_id: str, split: str, task_type: str, max_steps: int, history_len: int) -> tuple[list[dict], bool]:
    """Run the expert through one game; rows for every step and whether it won."""
    obs, info = game.reset()
    rows: list[dict] = []
    history: list[dict] = []
    won = False
    for step in range(max_steps):
        expert = info.get("expert_action")
        if not expert:
            break
        recent = history[-history_len:] if history_len else []
        rows.append({
            "state_id": state_id(game_id, game.task, obs, recent, info["admissible"], step),
            "game_id": game_id, "split": split, "task_type": task_type, "task": game.task,
            "step": step, "observation": obs, "history": recent,
            "admissible": list(info["admissible"]), "expert_action": expert,
        })
        history.append({"action": expert, "observation": obs})  # the observation it answered
        obs, done, info = game.step(expert)
        if info["won"]:
            won = True
            break
        if done:
            break
    for r in rows:
        r["won"] = won
    return rows, won


def collect_expert_trajectories(
    games: Sequence[dict],
    make_game: Callable[[str], object],
    max_steps: int,
    history_len: int,
    log: Log = print,
) -> tuple[pa.Table, dict]:
    """Play the expert through every game (rows: game_id, split, task_type, gamefile).

    A game that fails to load or that the expert does not win is recorded in ``stats["failed"]``
    with its reason (file and error); its steps are kept with ``won = false`` and never train.
    If no game at all is won, that is an error.
    """
    rows: list[dict] = []
    stats = {"games": 0, "won": 0, "failed": []}
    t0 = time.time()
    for i, g in enumerate(games):
        game = None
        try:
            game = make_game(g["gamefile"])
            r, won = play_expert(game, g["game_id"], g["split"], g["task_type"], max_steps, history_len)
            reason = None if won else f"the expert did not win within {max_steps} steps"
        except Exception as e:  # noqa: BLE001 - a broken game is recorded, the others go on
            r, won = [], False
            reason = f"{g['gamefile']}: {type(e).__name__}: {str(e)[:300]}"
        finally:
            close = getattr(game, "close", None)
            if close:
                close()
        rows.extend(r)
        stats["games"] += 1
        stats["won"] += int(won)
        if not won:
            stats["failed"].append({"game_id": g["game_id"], "reason": reason})
            log(f"expert failed on {g['game_id']}: {reason}")
        log(f"expert {i + 1}/{len(games)} {g['split']} {g['game_id']}: {len(r)} steps, won={won} "
            f"({time.time() - t0:.0f}s)")
    if games and stats["won"] == 0:
        raise RuntimeError("the expert won none of the games: " +
                           "; ".join(f"{f['game_id']}: {f['reason']}" for f in stats["failed"][:3]))
    return pa.Table.from_pylist(rows, schema=TRAJECTORY_SCHEMA), stats
