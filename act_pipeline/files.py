"""Files written whole or not at all, content hashes, and files users bring read with bounds.

Every artifact (a Parquet table, a JSON manifest, a game file, a model folder) is written to a
temporary name beside its target and renamed into place only when complete, so a crash never
leaves a half-written file where a reader looks. Content hashes are SHA-256 of the bytes (a file,
a folder's model files, a JSON document), so equal content gives an equal hash on any machine.

Files users bring (expert JSON Lines, ALFWorld data) are read with bounds: a line or a file too
large, or JSON nested too deep, is refused with one line naming the file, the line and the field
(:class:`InputError`), never a stack trace; a path built from user parts stays inside its root
(:func:`safe_join`).

This module imports nothing from the rest of the package: every core package may use it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import IO, Any
from contextlib import contextmanager
from pathlib import Path

# the files of a model folder that make the model (not bookkeeping written beside it)
MODEL_FILE_SUFFIXES = {".safetensors", ".json", ".jinja", ".txt", ".model"}
MODEL_BOOKKEEPING = {"act_source.json", "model_card.json", "trainer_state.json"}


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds
    (for writers that want a file name: ``pq.write_table``, ``shutil.copyfile``).

    >>> import tempfile; d = Path(tempfile.mkdtemp())
    >>> with atomic_file(d / "a.txt") as tmp:
    ...     _ = tmp.write_text("hello")
    >>> (d / "a.txt").read_text(), sorted(p.name for p in d.iterdir())
    ('hello', ['a.txt'])
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically; return ``path``."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


def finite(v):
    """``v`` with every non-finite float (NaN, ±inf) replaced by None, recursively.

    >>> finite({"loss": float("nan"), "steps": [1.0, float("inf")]})
    {'loss': None, 'steps': [1.0, None]}
    """
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [finite(x) for x in v]
    return v


def write_json(path: str | Path, data, indent: int | None = 2) -> Path:
    """JSON, atomically, keys sorted, non-finite floats as null (valid JSON for every reader)."""
    return atomic_write(path, json.dumps(finite(data), indent=indent, default=str, sort_keys=True))


@contextmanager
def atomic_dir(dst: str | Path, keep_if: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """Yield a temporary folder beside ``dst``; rename it to ``dst`` if the block succeeds.

    ``keep_if``: for a cache whose content its name fixes (a model built from its settings), whether
    a folder at ``dst`` is complete. A complete one that another process put there meanwhile stays,
    and ours is dropped: processes filling the same cache at once neither fail nor take the folder
    away from under a reader (``replace_dir`` moves the old one aside first). An incomplete one is
    replaced."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent))
    try:
        yield tmp
        if keep_if is None or not _put_unless_complete(tmp, dst, keep_if):
            replace_dir(tmp, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _put_unless_complete(tmp: Path, dst: Path, complete: Callable[[Path], bool]) -> bool:
    """Whether ``dst`` is complete afterwards: someone else's kept, or ``tmp`` renamed to a ``dst``
    that was not there (a rename never replaces a folder that has files in it)."""
    if complete(dst):
        return True
    try:
        os.rename(tmp, dst)
        return True
    except OSError as e:
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        return complete(dst)


def replace_dir(tmp: Path, dst: Path) -> None:
    """Put the complete folder ``tmp`` at ``dst`` by renames (the previous ``dst`` is replaced)."""
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dst, old)
        os.replace(tmp, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, dst)


@contextmanager
def key_lock(root: str | Path, key: str, wait: bool = True) -> Iterator[bool]:
    """Hold the lock ``root/<key>.lock`` (``fcntl.flock``: released when the process ends, however it
    ends). Yields True once held; ``wait=False``: yields False at once when another process holds it.
    What the caches of computed results use, so that two processes never compute the same key at once."""
    import fcntl

    Path(root).mkdir(parents=True, exist_ok=True)
    with open(Path(root) / f"{key}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def sha256_bytes(data: bytes | str) -> str:
    """
    >>> sha256_bytes("abc")[:16]
    'ba7816bf8f01cfea'
    """
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


def sha256_json(obj) -> str:
    """The hash of a JSON document (keys sorted): equal content, equal hash.

    >>> sha256_json({"b": 1, "a": [1, 2]}) == sha256_json({"a": [1, 2], "b": 1})
    True
    """
    return sha256_bytes(json.dumps(obj, sort_keys=True, default=str))


def _update_from_file(h, path: Path) -> None:
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    _update_from_file(h, Path(path))
    return h.hexdigest()


def dir_hash(path: str | Path) -> str:
    """Content hash of a model folder's weights, config and tokenizer files (a hub id: its name)."""
    p = Path(path)
    h = hashlib.sha256()
    if not p.is_dir():
        h.update(str(path).encode())
        return h.hexdigest()
    for f in sorted(p.iterdir()):
        if f.is_file() and f.suffix in MODEL_FILE_SUFFIXES and f.name not in MODEL_BOOKKEEPING:
            h.update(f.name.encode())
            _update_from_file(h, f)
    return h.hexdigest()


# ---- files users bring ------------------------------------------------------------------------------

MAX_LINE_BYTES = 4 << 20  # one line of a JSON Lines file (an expert step is a few KB)
MAX_FILE_BYTES = 16 << 20  # one whole JSON or PDDL file (ALFWorld's are at most ~100 KB)
MAX_JSON_DEPTH = 64  # nested objects and lists (Python's own parser gives up, with RecursionError, near 1000)


class InputError(ValueError):
    """A user file refused; ``line`` (1-based) and ``field`` (the top-level key) say where, None if unknown."""

    def __init__(self, msg: str, line: int | None = None, field: str | None = None):
        super().__init__(msg)
        self.msg, self.line, self.field = msg, line, field

    def at(self, path: str | Path) -> str:
        """The one-line message: ``<file>:<line>: field `<field>`: <what is wrong>``."""
        return f"{where(path, self.line, self.field)}: {self.msg}"


class PathEscapeError(ValueError):
    """A path built from user-supplied parts would land outside its root."""


def where(path: str | Path, line: int | None = None, field: str | None = None) -> str:
    """The head of every error about a user file.

    >>> where("a.jsonl", 3, "step"), where("a.jsonl")
    ('a.jsonl:3: field `step`', 'a.jsonl')
    """
    return f"{path}" + (f":{line}" if line else "") + (f": field `{field}`" if field else "")


def shown(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters: a user's value quoted in a one-line error.

    >>> shown("x" * 100, 10)
    "'xxxxxx..."
    """
    r = repr(value)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def safe_join(root: str | Path, *parts: str, what: str = "path") -> Path:
    """``root / parts``, refusing parts that are absolute, contain ``..``, or resolve (through
    symlinks) outside ``root``.

    >>> safe_join("/data", "games", "kitchen/trial_1").as_posix()
    '/data/games/kitchen/trial_1'
    >>> safe_join("/data", "../etc/passwd", what="game id")
    Traceback (most recent call last):
    ...
    act_pipeline.files.PathEscapeError: game id '../etc/passwd' would leave /data
    """
    root = Path(root)
    for part in parts:
        p = str(part)
        if not p or "\x00" in p or Path(p).is_absolute() or ".." in Path(p).parts:
            raise PathEscapeError(f"{what} {p!r} would leave {root}")
    path = root.joinpath(*parts)
    real_root = root.resolve()
    if not path.resolve().is_relative_to(real_root):
        raise PathEscapeError(f"{what} {'/'.join(parts)!r} resolves to {path.resolve()}, outside {real_root}")
    return path


# a JSON string (its end quote optional: a cut-off text ends inside one), or a bracket or colon
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[][{}:]', re.S)


def _scan(text: str, max_depth: int | None = None) -> tuple[int | None, str | None]:
    """Where ``text`` first nests deeper than ``max_depth`` (an offset, or None), and the top-level key
    being read there (or at the end of the text, e.g. where a file was cut at its size limit).

    >>> _scan('{"a": 1, "b": [[[0]]]}', 2)
    (15, 'b')
    >>> _scan('{"a": 1, "obs": "xxxx')
    (None, 'obs')
    """
    depth, key, last = 0, None, None
    for m in _TOKEN.finditer(text):
        t = m.group()
        if t[0] == '"':
            last = t
        elif t == ":":
            if depth == 1 and last is not None:
                key = last
        elif t in "[{":
            depth += 1
            if max_depth is not None and depth > max_depth:
                return m.start(), _unquote(key)
        else:
            depth -= 1
    return None, _unquote(key)


def _unquote(token: str | None) -> str | None:
    if token is None:
        return None
    try:
        return shown(json.loads(token), 40)[1:-1]
    except ValueError:
        return token.strip('"')[:40]


def parse_json(text: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` with bounds: nesting deeper than ``max_depth`` and integers longer than Python
    reads are :class:`InputError` (line and top-level field); a syntax error stays ``JSONDecodeError``.

    >>> parse_json('{"a": [1, {"b": 2}]}')
    {'a': [1, {'b': 2}]}
    >>> parse_json('{"ok": 1,\\n "deep": [[[[]]]]}', max_depth=3)
    Traceback (most recent call last):
    ...
    act_pipeline.files.InputError: nested deeper than 3 levels (the limit)
    """
    if text.count("[") + text.count("{") > max_depth:  # (cheap: only then is the text scanned)
        at, field = _scan(text, max_depth)
        if at is not None:
            raise InputError(f"nested deeper than {max_depth} levels (the limit)", text.count("\n", 0, at) + 1, field)
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise
    except ValueError:  # an integer with more digits than int() converts (sys.int_max_str_digits)
        limit = sys.get_int_max_str_digits()
        m = re.search(r"\d{%d,}" % (limit + 1), text)
        at = m.start() if m else 0
        raise InputError(f"a number longer than {limit} digits", text.count("\n", 0, at) + 1,
                         _scan(text[:at])[1]) from None


def read_lines(f: IO[bytes], max_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[int, int, bytes]]:
    """The lines of a binary file as (line number, offset in the file, bytes without the newline), never
    holding more than ``max_bytes`` of one line: a longer line is :class:`InputError` (its number, and the
    top-level field open where the limit cut it).

    >>> import io
    >>> list(read_lines(io.BytesIO(b'{"a": 1}\\nxy')))
    [(1, 0, b'{"a": 1}'), (2, 9, b'xy')]
    >>> list(read_lines(io.BytesIO(b'{"a": 1, "obs": "' + b"x" * 20 + b'"}'), max_bytes=16))
    Traceback (most recent call last):
    ...
    act_pipeline.files.InputError: line longer than 16 bytes (the limit)
    """
    n, offset = 0, 0
    while True:
        chunk = f.readline(max_bytes + 1)
        if not chunk:
            return
        n += 1
        line = chunk[:-1] if chunk.endswith(b"\n") else chunk
        if len(line) > max_bytes:
            raise InputError(f"line longer than {_size(max_bytes)} (the limit)", n,
                             _scan(line[:max_bytes].decode("utf-8", "ignore"))[1])
        yield n, offset, line
        offset += len(chunk)


def read_limited(path: str | Path, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """A whole user file, refused (:class:`InputError`: the line and field where the limit falls) when
    larger than ``max_bytes``."""
    with open(path, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        head = data[:max_bytes]
        raise InputError(f"larger than {_size(max_bytes)} (the limit)", head.count(b"\n") + 1,
                         _scan(head.decode("utf-8", "ignore"))[1])
    return data


def load_json_file(path: str | Path, max_bytes: int = MAX_FILE_BYTES, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """One user JSON document, bounded (:func:`read_limited`, :func:`parse_json`); every failure to read
    or parse it is an :class:`InputError` saying where (``OSError`` aside: the file could not be opened)."""
    data = read_limited(path, max_bytes)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"not UTF-8 (byte {data[e.start]:#x} at offset {e.start})",
                         data.count(b"\n", 0, e.start) + 1) from None
    try:
        return parse_json(text, max_depth)
    except json.JSONDecodeError as e:
        raise InputError(f"not valid JSON: {e.msg} at column {e.colno}", e.lineno, _scan(text[:e.pos])[1]) from None


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 and n % (1 << 20) == 0 else f"{n} bytes"
