"""Expert trajectories: one row per expert step, as an Arrow table (stored as Parquet)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import pyarrow as pa

from act_pipeline.files import sha256_bytes

if TYPE_CHECKING:
    from act_pipeline.data.trajectory_cache import TrajectoryCache

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
    return sha256_bytes(blob)[:24]


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


def _play_game(g: dict, make_game: Callable[[str], object], max_steps: int, history_len: int, log: Log,
               retries: int, retry_unwon: int) -> tuple[list[dict], bool, str | None, list[dict], bool]:
    """One game with its retries: (rows, won, why it failed or None, the env faults it hit, whether
    the last attempt played the game to its end: no error, no env fault)."""
    from act_pipeline.envs.workers import EnvFault

    faults = replays = 0
    env_faults: list[dict] = []
    while True:
        game = None
        ended = False
        try:
            game = make_game(g["gamefile"])
            r, won = play_expert(game, g["game_id"], g["split"], g["task_type"], max_steps, history_len)
            reason = None if won else f"the expert did not win within {max_steps} steps"
            ended = True
        except EnvFault as e:
            r, won = [], False
            reason = f"{g['gamefile']}: {e}"
            faults += 1
            env_faults.append({"game_id": g["game_id"], "attempt": faults, "fault": str(e)})
            if faults <= retries:
                log(f"{g['game_id']}: {e}; starting the game again on a fresh worker "
                    f"(attempt {faults + 1}/{retries + 1})")
                continue
            break
        except Exception as e:  # noqa: BLE001 - a broken game is recorded, the others go on
            r, won = [], False
            reason = f"{g['gamefile']}: {type(e).__name__}: {str(e)[:300]}"
            break
        finally:
            close = getattr(game, "close", None)
            if close:
                close()
        if not won and replays < retry_unwon:  # a stochastic expert (ScienceWorld gold paths)
            replays += 1
            log(f"{g['game_id']}: {reason}; playing it again ({replays}/{retry_unwon})")
            continue
        break
    return r, won, reason, env_faults, ended


def collect_expert_trajectories(
    games: Sequence[dict],
    make_game: Callable[[str], object] | Sequence[Callable[[str], object]],
    max_steps: int,
    history_len: int,
    log: Log = print,
    retries: int = 0,
    retry_unwon: int = 0,
    cache: TrajectoryCache | None = None,
) -> tuple[pa.Table, dict]:
    """Play the expert through every game (rows: game_id, split, task_type, gamefile).

    ``make_game(gamefile)`` gives an environment — in this process, or in a worker process
    (:class:`act_pipeline.envs.workers.WorkerPool`). A list of such factories plays that many games
    at once, one thread per factory, each thread using only its own (so each its own worker pool:
    ``envs.expert_workers``); the table, its row order and ``stats`` are those of playing the games
    one after another, whatever finishes first. An :class:`EnvFault` (a reset that hangs, a
    worker that dies or grows past its memory limit) starts the game again on a fresh worker, up
    to ``retries`` times; a game the expert did not win is played again up to ``retry_unwon``
    times (for stochastic experts such as ScienceWorld's gold paths). A game that still fails,
    fails to load, or that the expert does not win is recorded in ``stats["failed"]`` with its
    reason; its steps are kept with ``won = false`` and never train. If no game at all is won, that is an error.

    With a ``cache`` (:class:`act_pipeline.data.trajectory_cache.TrajectoryCache`) only the games
    not in it are played, and each game played to its end is stored (written every ``flush_s``
    seconds and when playing ends, also by an error); the table
    and ``stats`` are those of playing every game (``stats["played"]`` / ``["cached"]`` say which
    way each came; a cached game hit no env fault this time).
    """
    factories = [make_game] if callable(make_game) else list(make_game)
    if not factories:
        raise ValueError("no game factory to play the expert with")
    t0 = time.time()
    results: list[tuple | None] = [None] * len(games)
    keys = cache.keys(games) if cache else [None] * len(games)
    for i, (r, won, reason) in (cache.lookup(keys, games) if cache else {}).items():
        results[i] = (r, won, reason, [])
    todo = [i for i in range(len(games)) if results[i] is None]
    if cache:
        log(f"expert: {len(games) - len(todo)} of {len(games)} games from the cache, {len(todo)} to play")
    lock = threading.Lock()
    finished = [0]

    def play(i: int, factory: Callable[[str], object]) -> None:
        g = games[i]
        r, won, reason, env_faults, ended = _play_game(g, factory, max_steps, history_len, log, retries, retry_unwon)
        results[i] = (r, won, reason, env_faults)
        if cache and keys[i] and ended:  # an error (a load failure, an env fault) is not an outcome: never stored
            cache.store(keys[i], g, r, won, reason)
        with lock:  # one line per game, counted in the order they finish
            finished[0] += 1
            if not won:
                log(f"expert failed on {g['game_id']}: {reason}")
            log(f"expert {finished[0]}/{len(todo)} {g['split']} {g['game_id']}: {len(r)} steps, won={won} "
                f"({time.time() - t0:.0f}s)")

    try:
        _play_all(todo, factories, play)
    finally:  # what was played is kept, also when something failed
        if cache:
            cache.flush()

    rows: list[dict] = []
    stats = {"games": 0, "won": 0, "failed": [], "env_faults": [], "played": len(todo),
             "cached": len(games) - len(todo), "cache_rejected": list(cache.rejected) if cache else []}
    for g, (r, won, reason, env_faults) in zip(games, results):  # in the games' order
        rows.extend(r)
        stats["games"] += 1
        stats["won"] += int(won)
        stats["env_faults"].extend(env_faults)
        if not won:
            stats["failed"].append({"game_id": g["game_id"], "reason": reason})
    if games and stats["won"] == 0:
        raise RuntimeError("the expert won none of the games: " +
                           "; ".join(f"{f['game_id']}: {f['reason']}" for f in stats["failed"][:3]))
    return pa.Table.from_pylist(rows, schema=TRAJECTORY_SCHEMA), stats


def _play_all(todo: list[int], factories: list[Callable[[str], object]], play: Callable[[int, Callable], None]) -> None:
    """``play(i, factory)`` for every game in ``todo``: one after another with one factory, else
    one thread per factory taking the next game as it gets free."""
    if len(factories) == 1 or len(todo) <= 1:
        for i in todo:
            play(i, factories[0])
        return
    queue = iter(todo)
    take = threading.Lock()
    stop = threading.Event()  # an unexpected error in one thread: the others take no new game

    def drive(factory: Callable[[str], object]) -> None:
        try:
            while not stop.is_set():
                with take:
                    i = next(queue, None)
                if i is None:
                    return
                play(i, factory)
        except BaseException:
            stop.set()
            raise

    with ThreadPoolExecutor(len(factories), thread_name_prefix="expert") as ex:
        for f in [ex.submit(drive, factory) for factory in factories]:
            f.result()
