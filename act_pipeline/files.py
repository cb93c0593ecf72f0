"""Files written whole or not at all, and content hashes: the one place for both.

Every artifact (a Parquet table, a JSON manifest, a game file, a model folder) is written to a
temporary name beside its target and renamed into place only when complete, so a crash never
leaves a half-written file where a reader looks. Content hashes are SHA-256 of the bytes (a file,
a folder's model files, a JSON document), so equal content gives an equal hash on any machine.

This module imports nothing from the rest of the package: every core package may use it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
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
def atomic_dir(dst: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``dst``; rename it to ``dst`` if the block succeeds."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent))
    try:
        yield tmp
        replace_dir(tmp, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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
