"""Expert-trajectory files brought by users: the JSONL format, validation, the accepted store.

Format: UTF-8 JSON Lines, one expert step per line, steps of a game in order::

    {"game_id": "kitchen-7/trial_1", "task_type": "pick_and_place_simple",
     "task": "put a mug in the sink.", "step": 0,
     "observation": "You are in the middle of a room. ...",
     "history": [{"observation": "...", "action": "go to countertop 1"}],   # optional, oldest first
     "admissible": ["go to sink 1", "look", ...],
     "expert_action": "go to sink 1",
     "won": true,                                                           # optional, default true
     "split": "train"}                                                      # optional, must be train

Every error names the file, the line and the field, on one line. A file is accepted whole or not at
all: accepted files are copied, content-addressed, into the store the ``imported_expert_steps`` asset
reads, so a half-valid file never reaches training. Bounds (``act_pipeline.files``): a line holds at
most 4 MiB (``MAX_LINE_BYTES``; the file itself may be any size, it is read line by line), JSON nests
at most 64 levels (``MAX_JSON_DEPTH``); a longer line or deeper nesting is an error like any other.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa

from act_pipeline.data.trajectories import TRAJECTORY_SCHEMA, state_id
from act_pipeline.envs.actions import admissible_lookup, normalize_action
from act_pipeline.files import (MAX_LINE_BYTES, InputError, atomic_file, atomic_write, parse_json, read_lines,
                                sha256_file, shown, where)

REQUIRED = {"game_id": str, "task_type": str, "task": str, "step": int, "observation": str,
            "admissible": list, "expert_action": str}
OPTIONAL = {"history": list, "won": bool, "split": str}


class ExpertDataError(ValueError):
    """Invalid expert-trajectory file; the message names file, line and field."""


def _err(path: Path, line: int | None, field: str | None, msg: str) -> ExpertDataError:
    return ExpertDataError(f"{where(path, line, field)}: {msg}")


def _typename(t) -> str:
    return {str: "a string", int: "an integer", list: "a list", bool: "true/false"}[t]


def validate_file(path: str | Path, eval_game_ids: Iterable[str] = (), history_len: int = 3) -> list[dict]:
    """Parse and check one file; return its rows (trajectory schema) or raise ExpertDataError."""
    path = Path(path)
    try:
        f = open(path, "rb")
    except OSError as e:
        raise _err(path, None, None, f"cannot read ({e.strerror})") from None
    with f:
        return _validate_lines(path, f, set(eval_game_ids), history_len)


def _validate_lines(path: Path, f, eval_ids: set[str], history_len: int) -> list[dict]:
    rows: list[dict] = []
    seen: dict[tuple[str, int], int] = {}  # (game, step) -> the line it was on
    lines = read_lines(f, MAX_LINE_BYTES)
    try:
        for n, offset, raw in lines:
            if raw.strip():
                rows.append(_validate_line(path, n, offset, raw, lines, eval_ids, seen, history_len))
    except InputError as e:  # a line over the limit
        raise ExpertDataError(e.at(path)) from None
    if not rows:
        raise _err(path, None, None, "empty file (expected one JSON object per line)")
    return rows


def _validate_line(path: Path, n: int, offset: int, raw: bytes, rest, eval_ids: set[str],
                   seen: dict[tuple[str, int], int], history_len: int) -> dict:
    """Line ``n`` (its bytes ``raw`` at ``offset`` in the file; ``rest``: the lines after it) as a row."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _err(path, n, None, f"not UTF-8 (byte {raw[e.start]:#x} at offset {offset + e.start})") from None
    try:
        obj = parse_json(line)
    except InputError as e:
        raise _err(path, n, e.field, e.msg) from None
    except json.JSONDecodeError as e:
        last = all(not r.strip() for _, _, r in rest)
        hint = " (truncated last line?)" if last else ""
        raise _err(path, n, None, f"not valid JSON: {e.msg} at column {e.colno}{hint}") from None
    if not isinstance(obj, dict):
        raise _err(path, n, None, f"expected a JSON object, got {type(obj).__name__}")
    for field, typ in REQUIRED.items():
        if field not in obj:
            raise _err(path, n, field, "missing")
    for field, typ in {**REQUIRED, **OPTIONAL}.items():
        if field in obj and (not isinstance(obj[field], typ) or (typ is int and isinstance(obj[field], bool))):
            raise _err(path, n, field, f"must be {_typename(typ)}, got {json.dumps(obj[field])[:60]}")
    unknown = sorted(set(obj) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise _err(path, n, unknown[0], "unknown field")
    if obj["step"] < 0:
        raise _err(path, n, "step", f"must be >= 0, got {obj['step']}")
    if obj["step"] >= 2**31:  # the column is int32
        raise _err(path, n, "step", f"must be < 2**31, got {shown(obj['step'])}")
    if not obj["admissible"] or not all(isinstance(a, str) for a in obj["admissible"]):
        raise _err(path, n, "admissible", "must be a non-empty list of strings")
    if normalize_action(obj["expert_action"]) not in admissible_lookup(obj["admissible"]):
        raise _err(path, n, "expert_action", f"{shown(obj['expert_action'])} is not among the admissible actions")
    gid = obj["game_id"]
    if not gid.strip() or gid.startswith(("/", "\\")) or ".." in gid.replace("\\", "/").split("/") or "\x00" in gid:
        raise _err(path, n, "game_id", f"{shown(gid)} must be a relative id (no leading '/', no '..' segment)")
    split = obj.get("split", "train")
    if split != "train":
        raise _err(path, n, "split", f"imported steps are training data; got split {shown(split)}")
    if obj["game_id"] in eval_ids:
        raise _err(path, n, "game_id", f"{shown(obj['game_id'])} is an evaluation game; it cannot be training data")
    hist = obj.get("history", [])
    for h in hist:
        if not (isinstance(h, dict) and isinstance(h.get("action"), str) and isinstance(h.get("observation"), str)):
            raise _err(path, n, "history", "must be a list of {\"observation\": str, \"action\": str}")
    key = (obj["game_id"], obj["step"])
    if key in seen:
        raise _err(path, n, "step", f"duplicate step {obj['step']} of game {shown(obj['game_id'])} "
                                    f"(first on line {seen[key]})")
    seen[key] = n
    recent = [{"action": h["action"], "observation": h["observation"]} for h in hist][-history_len:] if history_len else []
    return {
        "state_id": state_id(obj["game_id"], obj["task"], obj["observation"], recent, obj["admissible"], obj["step"]),
        "game_id": obj["game_id"], "split": "train", "task_type": obj["task_type"], "task": obj["task"],
        "step": obj["step"], "observation": obj["observation"], "history": recent,
        "admissible": obj["admissible"], "expert_action": obj["expert_action"], "won": obj.get("won", True),
    }


def accept(path: str | Path, store: str | Path, eval_game_ids: Iterable[str] = ()) -> Path:
    """Validate ``path`` and copy it into ``store`` as ``<sha256>.jsonl`` (atomically); return that path."""
    path = Path(path)
    validate_file(path, eval_game_ids)
    store = Path(store)
    store.mkdir(parents=True, exist_ok=True)
    dst = store / f"{sha256_file(path)}.jsonl"
    if not dst.exists():
        with atomic_file(dst) as tmp:
            shutil.copyfile(path, tmp)
        atomic_write(store / f"{dst.stem}.source.json", json.dumps({"source": str(path.resolve())}))
    return dst


def load_store(store: str | Path, history_len: int = 3) -> tuple[pa.Table, list[dict]]:
    """All accepted files (sorted by digest) as one table, and the list of files it came from."""
    store = Path(store)
    files = sorted(store.glob("*.jsonl")) if store.is_dir() else []
    rows: list[dict] = []
    manifest = []
    for f in files:
        r = validate_file(f, (), history_len)
        rows.extend(r)
        src = store / f"{f.stem}.source.json"
        manifest.append({"file": str(f), "sha256": f.stem, "rows": len(r),
                         "source": json.loads(src.read_text())["source"] if src.exists() else None})
    return pa.Table.from_pylist(rows, schema=TRAJECTORY_SCHEMA), manifest
