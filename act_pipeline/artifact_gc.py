"""Garbage collection of a data root: the folders nothing current refers to (``act-pipeline gc``).

Every run writes new folders (``artifacts/<label>/<run id>/``; trainer checkpoints for resuming
under ``trainer_state/<asset>/<key>/``) and nothing else removes them. A folder is **kept** when

- a current manifest names a path in it (``manifests/*.json``, ``manifests/<asset>/<partition>.json``:
  what every downstream step and ``act-pipeline run`` read; any string in them that is a path
  under the data root counts, not only ``uri``);
- a lineage record of a kept artifact names it, transitively (``lineage.json``, a checkpoint's
  ``model/model_card.json``, and the JSON documents directly in the folder, e.g. an evaluation's
  ``evaluation.json`` naming the checkpoints it scored): a current checkpoint keeps the pairs,
  trajectories and games it was made from;
- it is pinned (``pins.json``: run ids, whose every folder is kept, or paths);
- its run is still in progress (run ids the caller passes: the Dagster instance's unfinished runs);
- it was written less than ``min_age_s`` ago (a run the caller does not know about may be writing it);
- it is resume state (``trainer_state``) and the caller cannot say which training is current
  (no profile given, or a run in progress), or a current training of the named profile(s) would
  resume from it.

Everything else under ``artifacts/`` and ``trainer_state/`` is listed for removal, with its size
and why. Removal renames the folder to a ``.gc-trash-*`` name in the same place, then deletes that:
a crash leaves a trash folder (finished by the next gc), never a half-deleted folder under its
own name. Symbolic links are never followed: not when walking, sizing or deleting (the link itself
goes with its folder; what it points to stays), and a link where an artifact folder would be is
kept. A root that does not look like a data root, an unreadable manifest, pin file or lineage
record, or a reference to an artifact of another data root (a moved or copied root) stops gc with
one error and nothing removed: when unsure, keep. Hard links (a training checkpoint linking an
earlier one's files) are counted once, and as freed only when every link goes.

This module imports nothing from Dagster (the CLI passes the instance's unfinished runs and the
profile's current resume folders in).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from act_pipeline.files import write_json

PINS = "pins.json"
TRASH = ".gc-trash-"
RUN_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")  # Dagster's run ids
RESUME_KEY = re.compile(r"[0-9a-f]{16}")  # trainer_state/<asset>/<key>: what the training is, hashed
# a path into some data root's artifacts (a run id below artifacts/): one outside this root means
# the manifests describe another root (moved, copied), and gc stops
_ARTIFACT_SHAPED = re.compile(r"(^|/)artifacts/(.+/)?" + RUN_ID.pattern + r"(/|$)")
_MAX_DEPTH = 4  # artifacts/<benchmark>/<asset>/<run id>: the deepest a folder sits


class GcError(ValueError):
    """gc refused: the message says what and where; nothing was removed."""


@dataclass(frozen=True)
class Folder:
    rel: str  # relative to the data root, "/"-separated
    kind: str  # "artifact", "resume" (trainer_state), "trash" (an interrupted removal), "link"
    size: int  # bytes on disk only this folder holds: files with one link, and folders (links not followed)
    newest: float  # the newest mtime in it (links not followed)
    # its regular files with more than one hard link, not in ``size``: (st_dev, st_ino, st_nlink, bytes)
    linked: tuple[tuple[int, int, int, int], ...] = ()

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.rel.split("/"))

    @property
    def run_id(self) -> str | None:
        return self.parts[-1] if self.kind == "artifact" else None


@dataclass(frozen=True)
class Verdict:
    folder: Folder
    remove: bool
    why: str


@dataclass(frozen=True)
class Plan:
    home: Path
    verdicts: tuple[Verdict, ...]

    @property
    def remove(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.remove]

    @property
    def keep(self) -> list[Verdict]:
        return [v for v in self.verdicts if not v.remove]

    @property
    def freed(self) -> int:
        return freed_by(v.folder for v in self.remove)

    @property
    def kept(self) -> int:
        """Bytes the kept folders hold: their own sizes and each hard-linked file in them once."""
        folders = [v.folder for v in self.keep]
        return sum(f.size for f in folders) + sum({(d, i): b for f in folders for d, i, _, b in f.linked}.values())


def freed_by(folders: Iterable[Folder]) -> int:
    """Bytes removing ``folders`` frees: their own sizes, and each hard-linked file's bytes once when
    every one of its links lies in them (a link elsewhere keeps the file).

    >>> a, b = Folder("a", "artifact", 10, 0, ((1, 7, 2, 100),)), Folder("b", "artifact", 20, 0, ((1, 7, 2, 100),))
    >>> freed_by([a]), freed_by([a, b])
    (10, 130)
    """
    folders = list(folders)
    links = Counter((d, i) for f in folders for d, i, _, _ in f.linked)
    whole = {(d, i): b for f in folders for d, i, n, b in f.linked if links[d, i] >= n}
    return sum(f.size for f in folders) + sum(whole.values())


# ---- the data root ---------------------------------------------------------------------------------


def data_root(home: str | Path) -> Path:
    """``home`` resolved, or :class:`GcError` when it does not look like a data root (a folder with
    ``manifests/`` holding at least one manifest and ``artifacts/``, neither a symbolic link)."""
    p = Path(home).expanduser()
    if not p.is_dir():
        raise GcError(f"{p} is not a folder (a data root holds manifests/ and artifacts/)")
    root = p.resolve()
    for sub in ("manifests", "artifacts"):
        d = root / sub
        if d.is_symlink() or not d.is_dir():
            what = "a symbolic link (gc never follows one)" if d.is_symlink() else "missing"
            raise GcError(f"{root} does not look like a data root: {sub}/ is {what}")
    if not any(_manifest_files(root)):
        raise GcError(f"{root} does not look like a data root: no manifest in manifests/ (nothing is current, "
                      "so everything would go; remove the folder yourself if that is what you want)")
    return root


def _manifest_files(root: Path) -> Iterator[Path]:
    for d, dirs, files in os.walk(root / "manifests"):  # (os.walk does not follow links to folders)
        dirs[:] = sorted(x for x in dirs if not (Path(d) / x).is_symlink())
        for f in sorted(files):
            if f.endswith(".json") and not f.startswith("."):  # (.<name>.tmp: a write in progress)
                yield Path(d) / f


def _read_json(path: Path, root: Path, what: str):
    if path.is_symlink():
        raise GcError(f"{path}: {what} is a symbolic link; gc reads only regular files (nothing removed)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise GcError(f"{path}: cannot read this {what} ({e}); fix or remove it first (nothing removed)") from None


def _strings(doc) -> Iterator[str]:
    if isinstance(doc, str):
        yield doc
    elif isinstance(doc, dict):
        for v in doc.values():
            yield from _strings(v)
    elif isinstance(doc, list):
        for v in doc:
            yield from _strings(v)


class _Refs:
    """Paths under the data root named by manifests, pins and lineage records: {parts: where named}."""

    def __init__(self, root: Path, spellings: Iterable[str]):
        self.root = root
        self.spellings = sorted(set(spellings), key=len, reverse=True)
        self.named: dict[tuple[str, ...], str] = {}

    def add_doc(self, doc, source: str) -> None:
        for s in _strings(doc):
            if not s.startswith("/"):
                continue
            norm = os.path.normpath(s)
            rel = next((norm[len(sp):].lstrip("/") for sp in self.spellings
                        if norm == sp or norm.startswith(sp.rstrip("/") + "/")), None)
            if rel is not None:
                self.named.setdefault(tuple(Path(rel).parts), source)
            elif _ARTIFACT_SHAPED.search(norm):
                raise GcError(f"{source} names {s}, an artifact outside {self.root}: was this data root moved or "
                              "copied? gc cannot tell what is current here; nothing removed")

    def naming(self, parts: tuple[str, ...]) -> str | None:
        """Where a path inside the folder ``parts`` (or a folder above it) is named, else None."""
        for named, source in self.named.items():
            n = min(len(named), len(parts))
            if named[:n] == parts[:n]:
                return source
        return None


def read_pins(root: Path) -> dict[str, list[str]]:
    path = root / PINS
    if not path.exists() and not path.is_symlink():
        return {"runs": [], "paths": []}
    doc = _read_json(path, root, "pin file")
    ok = (isinstance(doc, dict) and set(doc) <= {"runs", "paths"}
          and all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in doc.values()))
    if not ok:
        raise GcError(f"{path}: expected {{\"runs\": [run ids], \"paths\": [paths under the data root]}}; "
                      "fix or remove it first (nothing removed)")
    return {"runs": list(doc.get("runs", [])), "paths": list(doc.get("paths", []))}


# ---- the folders ---------------------------------------------------------------------------------------


def _usage(path: Path) -> tuple[int, float, tuple[tuple[int, int, int, int], ...]]:
    """Bytes on disk, the newest mtime and the hard-linked files of a folder (see :class:`Folder`),
    without following a link."""
    st = path.lstat()
    size, newest, linked = st.st_blocks * 512, st.st_mtime, []
    stack = [path]
    while stack:
        with os.scandir(stack.pop()) as it:
            for e in it:
                s = e.stat(follow_symlinks=False)
                if stat.S_ISREG(s.st_mode) and s.st_nlink > 1:
                    linked.append((s.st_dev, s.st_ino, s.st_nlink, s.st_blocks * 512))
                else:
                    size += s.st_blocks * 512
                newest = max(newest, s.st_mtime)
                if e.is_dir(follow_symlinks=False):
                    stack.append(Path(e.path))
    return size, newest, tuple(sorted(linked))


def _folders(root: Path, top: str, leaf: re.Pattern, kind: str) -> Iterator[Folder]:
    """The folders under ``root/top`` whose name matches ``leaf`` (not descended into), interrupted
    removals (``.gc-trash-*``) and symbolic links met on the way (never followed)."""
    def walk(d: Path, depth: int):
        with os.scandir(d) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            p = Path(e.path)
            rel = p.relative_to(root).as_posix()
            if e.is_symlink():
                yield Folder(rel, "link", 0, p.lstat().st_mtime)
            elif not e.is_dir(follow_symlinks=False):
                continue
            elif e.name.startswith(TRASH):
                yield Folder(rel, "trash", *_usage(p))
            elif leaf.fullmatch(e.name):
                yield Folder(rel, kind, *_usage(p))
            elif depth < _MAX_DEPTH:
                yield from walk(p, depth + 1)

    d = root / top
    if d.is_symlink():
        yield Folder(top, "link", 0, d.lstat().st_mtime)
    elif d.is_dir():
        yield from walk(d, 1)


def _lineage_docs(folder: Path) -> Iterator[Path]:
    """The lineage records of an artifact folder: its JSON documents (lineage.json, evaluation.json,
    report.json) and, one level down, ``lineage.json`` / ``model_card.json`` (a checkpoint's ``model/``)."""
    with os.scandir(folder) as it:
        entries = sorted(it, key=lambda e: e.name)
    for e in entries:
        if e.is_symlink():
            continue
        if e.is_file(follow_symlinks=False) and e.name.endswith(".json") and not e.name.startswith("."):
            yield Path(e.path)
        elif e.is_dir(follow_symlinks=False):
            for name in ("lineage.json", "model_card.json"):
                f = Path(e.path) / name
                if f.is_file() and not f.is_symlink():
                    yield f


# ---- the plan --------------------------------------------------------------------------------------------


def plan(home: str | Path, running: Iterable[str] = (), resume_current: Iterable[str | Path] | None = None,
         resume_judged_by: str = "the profile", min_age_s: float = 3600.0, now: float | None = None) -> Plan:
    """What gc keeps and removes in ``home``, and why; reads only.

    ``running``: run ids of unfinished runs (their folders are kept, and while any is unfinished
    no resume state is removed). ``resume_current``: the trainer_state folders the current
    trainings would resume from (paths, absolute or relative to the root), or None when unknown
    (every resume folder is kept). ``min_age_s``: folders with anything written more recently are kept."""
    root = data_root(home)
    now = time.time() if now is None else now
    running = set(running)
    refs = _Refs(root, [str(root), os.path.abspath(os.path.expanduser(str(home)))])
    for m in _manifest_files(root):
        refs.add_doc(_read_json(m, root, "manifest"), m.relative_to(root).as_posix())
    pins = read_pins(root)
    pinned = _Refs(root, refs.spellings)
    pinned.add_doc([str(root / p) for p in pins["paths"]], PINS)
    current_resume = None
    if resume_current is not None:
        current_resume = {(Path(p) if Path(p).is_absolute() else root / p).as_posix() for p in resume_current}

    folders = [*_folders(root, "artifacts", RUN_ID, "artifact"), *_folders(root, "trainer_state", RESUME_KEY, "resume")]
    kept: dict[str, str] = {}
    for f in folders:
        why = _kept(f, root, refs, pinned, pins, running, current_resume, resume_judged_by, min_age_s, now)
        if why:
            kept[f.rel] = why
    # lineage: every kept artifact keeps what its records name, transitively
    by_rel = {f.rel: f for f in folders}
    todo = [rel for rel in kept if by_rel[rel].kind == "artifact"]
    while todo:
        rel = todo.pop()
        lineage = _Refs(root, refs.spellings)
        for doc in _lineage_docs(root / rel):
            lineage.add_doc(_read_json(doc, root, "lineage record"), doc.relative_to(root).as_posix())
        for f in folders:
            if f.rel not in kept and f.kind in ("artifact", "resume") and lineage.naming(f.parts):
                kept[f.rel] = f"lineage: named by {lineage.naming(f.parts)}"
                if f.kind == "artifact":
                    todo.append(f.rel)

    current_runs: dict[tuple[str, ...], list[str]] = {}  # label -> the run ids its manifests name
    for parts in refs.named:
        if len(parts) > 2 and parts[0] == "artifacts":
            run = next((p for p in parts[2:] if RUN_ID.fullmatch(p)), None)
            if run:
                current_runs.setdefault(parts[:parts.index(run)], []).append(run)
    verdicts = []
    for f in folders:
        if f.rel in kept:
            verdicts.append(Verdict(f, False, kept[f.rel]))
        elif f.kind == "trash":
            verdicts.append(Verdict(f, True, "left by an interrupted gc"))
        elif f.kind == "resume":
            verdicts.append(Verdict(f, True, f"resume state that no current training of {resume_judged_by} "
                                             "would resume from"))
        else:
            now_runs = sorted(set(current_runs.get(f.parts[:-1], [])))
            verdicts.append(Verdict(f, True, "no manifest, pin or kept artifact's lineage names it"
                                    + (f"; current: {', '.join(r[:8] for r in now_runs)}" if now_runs else
                                       "; no manifest names this asset")))
    return Plan(root, tuple(verdicts))


def _kept(f: Folder, root: Path, refs: _Refs, pinned: _Refs, pins: dict, running: set[str],
          current_resume: set[str] | None, judged_by: str, min_age_s: float, now: float) -> str | None:
    """Why ``f`` is kept on its own (lineage comes after), or None."""
    if f.kind == "link":
        return "a symbolic link: never followed"
    if f.kind == "trash":
        return None
    if (source := refs.naming(f.parts)) is not None:
        return f"current: named by {source}"
    if f.run_id in pins["runs"] or pinned.naming(f.parts):
        return f"pinned ({PINS})"
    if f.run_id in running:
        return "its run is in progress"
    if now - f.newest < min_age_s:
        return f"young: written {(now - f.newest) / 60:.0f} min ago (min age {min_age_s / 60:.0f} min)"
    if f.kind == "resume":
        if current_resume is None:
            return "resume state: not judged without a profile"
        if running:
            return "resume state: a run is in progress"
        if (root / f.rel).as_posix() in current_resume:
            return f"resume state of a current training of {judged_by}"
    return None


# ---- removal --------------------------------------------------------------------------------------------


def remove(p: Plan, log: Callable[[str], None] = print) -> tuple[int, list[str]]:
    """Remove the folders ``p`` lists for removal: each renamed to a trash name beside it, then
    deleted (links inside are removed, not followed). Returns (bytes freed, errors)."""
    removed, errors = [], []
    allowed = (p.home / "artifacts", p.home / "trainer_state")
    for v in p.remove:
        path = p.home / v.folder.rel
        try:
            if path.is_symlink() or not path.is_dir() or not any(path.resolve().is_relative_to(a) for a in allowed):
                raise GcError("not a folder inside artifacts/ or trainer_state/ any more")
            if v.folder.kind == "trash":
                trash = path
            else:
                trash = path.with_name(f"{TRASH}{path.name}-{uuid.uuid4().hex[:8]}")
                os.rename(path, trash)
            shutil.rmtree(trash)
        except (OSError, GcError) as e:
            errors.append(f"{v.folder.rel}: {e}")
            continue
        removed.append(v.folder)
        log(f"removed {_size(v.folder):>9s}  {v.folder.rel}")
    return freed_by(removed), errors


# ---- pins -------------------------------------------------------------------------------------------------


def pin(home: str | Path, what: str, on: bool = True) -> dict[str, list[str]]:
    """Pin (``on``) or unpin a run id (every folder of that run) or a path inside the data root's
    ``artifacts/`` (the artifact folder holding it); returns the pins (``pins.json``)."""
    root = data_root(home)
    pins = read_pins(root)
    if RUN_ID.fullmatch(what):
        kind, value = "runs", what
        if on and not any(f.run_id == what for f in _folders(root, "artifacts", RUN_ID, "artifact")):
            raise GcError(f"no artifact folder of run {what} in {root}/artifacts")
    elif not on and what in pins["paths"]:  # as pins.json spells it
        kind, value = "paths", what
    else:
        kind, value = "paths", _pin_path(root, what, must_exist=on)
    if on and value not in pins[kind]:
        pins[kind].append(value)
    elif not on:
        if value not in pins[kind]:
            raise GcError(f"{what} is not pinned (pinned runs: {pins['runs']}, paths: {pins['paths']})")
        pins[kind].remove(value)
    write_json(root / PINS, {k: sorted(v) for k, v in pins.items()})
    return pins


def _pin_path(root: Path, what: str, must_exist: bool) -> str:
    """A path to pin, relative to the root; it must lie inside ``artifacts/`` once links are resolved."""
    p = Path(what).expanduser()
    p = p if p.is_absolute() else Path.cwd() / p
    if p.exists():
        p = p.resolve()  # (a link out of the root lands outside it: refused below)
    elif must_exist:
        raise GcError(f"{what}: no such file or folder")
    else:
        p = Path(os.path.normpath(p))
    if not p.is_relative_to(root / "artifacts") or p == root / "artifacts":
        raise GcError(f"{what} is not inside {root}/artifacts: only artifacts are pinned")
    return p.relative_to(root).as_posix()


# ---- output -----------------------------------------------------------------------------------------------


def human(n: float) -> str:
    """
    >>> human(0), human(1536), human(5.1 * 2**30)
    ('0 B', '1.5 KiB', '5.1 GiB')
    """
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def report(p: Plan, delete: bool) -> list[str]:
    """The lines gc prints before removing anything: every folder, kept or not, and why."""
    lines = []
    for v in sorted(p.verdicts, key=lambda v: (v.remove, v.folder.rel)):
        verb = ("remove" if delete else "would free") if v.remove else "keep"
        lines.append(f"  {verb:10s} {_size(v.folder):>9s}  {v.folder.rel}  ({v.why})")
    return lines


def _size(f: Folder) -> str:
    """A folder's own bytes, and its hard-linked files' (freed only with their every link) beside them."""
    linked = sum(b for _, _, _, b in f.linked)
    return human(f.size) + (f" + {human(linked)} hard-linked" if f.linked else "")
