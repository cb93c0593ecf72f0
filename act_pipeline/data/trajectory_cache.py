"""A cache of played expert games in the DuckDB warehouse, beside the sample cache.

Keyed like the sample cache (``act_pipeline.sampling.cache``), by content: a game's key hashes the
*trajectory key* (what plays it: the environment's settings with the expert, ``max_expert_steps``,
``history_len``, ``retry_unwon``, the source of the player's modules and the versions of the
packages that play it) with the game's id, split, task type and the content hash of the files the
game reads. Adding games plays only the new ones; importing expert steps plays none; changing the
expert, the step limit, the history window or the player's code plays every game again.

One table, ``expert_game_cache``: one row per game with its outcome (won, the reason it failed) and
its steps as one JSON document (the trajectory rows in order; no pickle) with that text's SHA-256.
A game is stored when it is played to its end: won, or the expert stopped or ran out of steps (a
deterministic outcome: the PDDL planner plays a game the same every time). Games are written in one
transaction every ``flush_s`` seconds (30) and when playing ends, also by an error, so a killed run
loses at most that much play, and a commit (about 0.1 s here) is not paid per game. A
game that ended in an error (it failed to load, an env fault outlived its retries) is never
stored: it is played again next time. An entry that does not check out (its text does not match
its hash, or its rows are not this game's) is **ignored, said in the log, and the game played
again**, the entry then overwritten. A warehouse file DuckDB cannot open at all is DuckDB's error,
which names the file (the warehouse holds the views as well, so nothing would run).
"""

from __future__ import annotations

import importlib.metadata
import json
import threading
import time
from collections.abc import Callable, Sequence

import pyarrow as pa

from act_pipeline.data.store import Warehouse
from act_pipeline.files import sha256_bytes, sha256_json

Log = Callable[[str], None]

TABLE = "expert_game_cache"
_DDL = f"""CREATE TABLE IF NOT EXISTS {TABLE} (
    game_key VARCHAR PRIMARY KEY, game_id VARCHAR, won BOOLEAN, reason VARCHAR, steps INTEGER,
    rows_sha256 VARCHAR, rows_json VARCHAR)"""


def trajectory_key(**parts) -> str:
    """What plays the games, as one key (every part JSON-serialisable)."""
    return sha256_json(parts)[:32]


def package_versions(names: Sequence[str]) -> dict[str, str | None]:
    """Installed versions of ``names`` (None: not installed)."""
    out: dict[str, str | None] = {}
    for n in names:
        try:
            out[n] = importlib.metadata.version(n)
        except importlib.metadata.PackageNotFoundError:
            out[n] = None
    return out


def _rows_json(rows: Sequence[dict]) -> str:
    return json.dumps(list(rows), ensure_ascii=False, separators=(",", ":"))


class TrajectoryCache:
    """Played games under one trajectory key; ``content_hash(game)`` is the hash of a game's files."""

    def __init__(self, warehouse: Warehouse, key: str, content_hash: Callable[[dict], str], log: Log = print,
                 flush_s: float = 30.0):
        self.warehouse = warehouse
        self.key = key
        self.content_hash = content_hash
        self.log = log
        self.flush_s = flush_s
        self.rejected: list[dict] = []  # entries the last lookup found wrong (those games are played again)
        self._lock = threading.Lock()  # stores come from the threads that play the games
        self._pending: list[dict] = []
        self._last = time.monotonic()

    def keys(self, games: Sequence[dict]) -> list[str | None]:
        """Each game's key; None where its files cannot be read (such a game is played, never cached)."""
        out: list[str | None] = []
        for g in games:
            try:
                content = self.content_hash(g)
            except OSError:
                out.append(None)
                continue
            out.append(sha256_json({"trajectory_key": self.key, "game_id": g["game_id"], "split": g["split"],
                                    "task_type": g["task_type"], "content": content})[:32])
        return out

    def lookup(self, keys: Sequence[str | None], games: Sequence[dict]) -> dict[int, tuple[list[dict], bool, str | None]]:
        """The cached games among ``games`` (index -> rows, won, reason); an entry that does not
        check out is left out (and said in the log), so that game is played again."""
        self.rejected = []
        wanted = sorted({k for k in keys if k})
        if not wanted:
            return {}
        with self.warehouse.connect() as con:
            con.execute(_DDL)
            con.register("wanted", pa.table({"game_key": pa.array(wanted, pa.string())}))
            found = {r[0]: r[1:] for r in con.execute(
                f"SELECT c.game_key, c.won, c.reason, c.steps, c.rows_sha256, c.rows_json FROM {TABLE} c "
                "JOIN wanted w USING (game_key)").fetchall()}
        hits: dict[int, tuple[list[dict], bool, str | None]] = {}
        for i, (k, g) in enumerate(zip(keys, games)):
            if k not in found:
                continue
            won, reason, steps, digest, text = found[k]
            rows, problem = _check(g, won, steps, digest, text)
            if problem:
                self.rejected.append({"game_id": g["game_id"], "game_key": k, "problem": problem})
                self.log(f"expert cache: the entry of {g['game_id']} ({k}) in {self.warehouse.path} is ignored "
                         f"({problem}); playing the game again")
                continue
            hits[i] = (rows, bool(won), reason)
        return hits

    def store(self, key: str, game: dict, rows: Sequence[dict], won: bool, reason: str | None) -> None:
        """One played game (its rows in order), written with the others at the next :meth:`flush`
        (at once when ``flush_s`` has passed since the last); replaces an entry under its key."""
        text = _rows_json(rows)
        with self._lock:
            self._pending.append({"game_key": key, "game_id": game["game_id"], "won": bool(won), "reason": reason,
                                  "steps": len(rows), "rows_sha256": sha256_bytes(text), "rows_json": text})
            due = time.monotonic() - self._last >= self.flush_s
        if due:
            self.flush()

    def flush(self) -> None:
        """Write the games stored since the last flush, in one transaction."""
        with self._lock:
            pending, self._pending = self._pending, []
            self._last = time.monotonic()
            if not pending:
                return
            table = pa.Table.from_pylist(pending, pa.schema([
                ("game_key", pa.string()), ("game_id", pa.string()), ("won", pa.bool_()), ("reason", pa.string()),
                ("steps", pa.int32()), ("rows_sha256", pa.string()), ("rows_json", pa.string())]))
            self.warehouse.insert(_DDL, TABLE, table, replace=True)


def _check(game: dict, won, steps, digest, text) -> tuple[list[dict], str | None]:
    """An entry's rows, or why it does not check out."""
    if not isinstance(text, str) or sha256_bytes(text) != digest:
        return [], "its rows do not match their SHA-256"
    try:
        rows = json.loads(text)
    except ValueError as e:
        return [], f"its rows are not JSON ({e})"
    if not isinstance(rows, list) or len(rows) != steps:
        return [], f"{steps} steps recorded, {len(rows) if isinstance(rows, list) else 'no list of'} rows stored"
    for n, r in enumerate(rows):
        if not isinstance(r, dict) or r.get("step") != n or r.get("won") is not bool(won) or any(
                r.get(f) != game[f] for f in ("game_id", "split", "task_type")):
            return [], f"row {n} is not step {n} of this game"
    return rows, None
