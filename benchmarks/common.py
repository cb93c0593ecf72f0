"""Shared pieces: side-by-side timing, machine info, inputs (games, states, models), profiles."""

from __future__ import annotations

import os
import stat
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Ctx:
    """What every benchmark gets: mode, model paths, thread count, scratch folder, a logger."""

    quick: bool
    model: str  # the model for sampling / rollouts / tokens (135M, or the tiny one with --quick)
    model_name: str
    tiny_model: str
    threads: int
    seed: int
    scratch: Path
    alfworld: Path
    log: Callable[[str], None] = print
    jobs: int = 0  # `act-pipeline run --jobs` of the default_run line (0: as many as CPU cores)
    model_steps: int = 0  # its `--model-steps` (0: as many as fit in memory)
    out: Path | None = None  # the results folder (logs beside the results)
    profiles: dict = field(default_factory=dict)  # name -> profile text written beside the results


def interleaved(ways: dict[str, Callable[[], object]], repeats: int, log=print,
                before: Callable[[str], object] | None = None) -> dict[str, dict]:
    """Run the ways alternately (A B, then B A, ...) ``repeats`` times; seconds per run and the median.

    Alternating the order spreads the load of other processes on a shared machine over both ways.
    Each way's return values are kept (``results``; ``result`` the last) for the checks that both
    computed the same thing.
    """
    names = list(ways)
    out = {n: {"seconds": [], "results": [], "result": None} for n in names}
    for r in range(repeats):
        order = names if r % 2 == 0 else names[::-1]
        for n in order:
            if before is not None:
                before(n)  # untimed set-up of this way
            t0 = time.perf_counter()
            res = ways[n]()
            dt = time.perf_counter() - t0
            out[n]["seconds"].append(round(dt, 4))
            out[n]["result"] = res
            out[n]["results"].append(res)
            log(f"  {n}: {dt:.2f} s (repeat {r + 1}/{repeats})")
    for n in names:
        out[n]["median_s"] = statistics.median(out[n]["seconds"])
    return out


def set_packed(model, on: bool, dtype=None) -> None:
    """The model's linears through packed weights (``dtype``'s, default the model's) or plain
    (:mod:`act_pipeline.packed_linear`), the packs built by one 16-row forward (the pipeline builds
    them at its first such product, once per process), so no timed call that follows includes them."""
    import torch

    from act_pipeline import packed_linear

    if on:
        packed_linear.pack_linears(model, (dtype or model.dtype,))
    else:
        packed_linear.unpack_linears(model)
    with torch.inference_mode():
        model(input_ids=torch.zeros((1, packed_linear.BATCH_HINT), dtype=torch.long))


def packed_on_off(model, fn: Callable[[], object], repeats: int = 2, log=print) -> dict[str, dict]:
    """:func:`interleaved` for the packed-weights lever: ``fn`` with the model's linears plain and
    packed, alternately, each state set (:func:`set_packed`) before its timed call. The model is left
    as the pipeline loads it."""
    from act_pipeline import packed_linear

    out = interleaved({"plain": fn, "packed": fn}, repeats, log,
                      before=lambda n: set_packed(model, n == "packed"))
    packed_linear.unpack_linears(model)
    packed_linear.pack_linears(model)  # the default
    return out


def way(label: str, timing: dict, work: float, unit: str) -> dict:
    """One way's entry: what it is, its runs, and its rate (``work`` units per median second)."""
    return {"label": label, "seconds": timing["seconds"], "median_s": round(timing["median_s"], 4),
            "rate": round(work / timing["median_s"], 4) if timing["median_s"] > 0 else None, "unit": unit}


def entry(name: str, what: str, a: dict, b: dict, ratio: float | None, goal: str,
          met: bool | None, **extra) -> dict:
    """A result line: way A (the baseline) and way B (the pipeline's), their ratio and the goal."""
    return {"name": name, "what": what, "a": a, "b": b,
            "ratio": None if ratio is None else round(ratio, 3), "goal": goal, "met": met, **extra}


def machine_info(threads: int) -> dict:
    from act_pipeline.machine import machine_info as info

    return info(threads, dirty_exclude=("benchmarks/results",))


def load(path: str, inference: bool = False):
    """Model (float32, eval) and tokenizer through the pipeline's own loader; ``inference``: as the
    sampler and the evaluation load it (float32 16-row products packed only with
    ``ACT_PACKED_LINEAR=all``, :mod:`act_pipeline.packed_linear`), any packs built by one untimed
    16-row forward (the pipeline builds them at its first such product, once per process), so no
    timed call includes them."""
    from act_pipeline.models import load_model
    from act_pipeline.packed_linear import is_packed

    model, tok = load_model(path, inference=inference)
    model.eval()
    if any(is_packed(m) for m in model.modules()):
        set_packed(model, True)
    return model, tok


def build_games(ctx: Ctx, split: str, n: int) -> list[dict]:
    """``n`` real ALFWorld games of ``split`` (task types round-robin), built as the
    ``alfworld_games`` asset builds them (game.tw-pddl from the installed alfworld)."""
    from act_pipeline.envs import alfworld as aw

    data = aw.resolve_data_root(str(ctx.alfworld))
    specs = aw.select_balanced(aw.discover_games(data, split), n)
    logic = aw.game_logic()
    out = ctx.scratch / "games" / split
    return [{"game_id": g.game_id, "split": g.split, "task_type": g.task_type,
             "gamefile": str(aw.build_game(g.path, out / g.game_id, logic))} for g in specs]


_STATES: dict = {}


def expert_states(ctx: Ctx, n_games: int) -> list[dict]:
    """Real expert states: the planner expert played through ``n_games`` train games (cached)."""
    if n_games not in _STATES:
        from act_pipeline.data.trajectories import collect_expert_trajectories
        from act_pipeline.envs.alfworld import AlfworldGame

        games = build_games(ctx, "train", n_games)
        table, _ = collect_expert_trajectories(games, lambda f: AlfworldGame(f, "planner"), 30, 2,
                                               log=lambda m: None)
        _STATES[n_games] = [r for r in table.to_pylist() if r["won"]]
    return _STATES[n_games]


def pick_spread(rows: list, n: int) -> list:
    """``n`` rows spread evenly over ``rows`` (deterministic)."""
    if len(rows) <= n:
        return list(rows)
    step = len(rows) / n
    return [rows[int(i * step)] for i in range(n)]


def profile_call(ctx: Ctx, name: str, fn: Callable[[], object], shares: dict[str, tuple[str, ...]]) -> dict:
    """Profile one call with pyinstrument (if installed): the text profile goes to
    ``results/profile_<name>.txt``; returns the share of wall time spent under the named functions."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        return {"tool": None, "note": "pyinstrument is not installed (pip install -e '.[bench]')"}
    prof = Profiler(interval=0.005)
    prof.start()
    t0 = time.perf_counter()
    fn()
    total = time.perf_counter() - t0
    prof.stop()
    session = prof.last_session
    root = session.root_frame()
    out = {"tool": "pyinstrument", "seconds": round(total, 3)}
    for label, funcs in shares.items():
        out[f"share_{label}"] = round(_time_under(root, set(funcs)) / max(1e-9, root.time), 3) if root else None
    ctx.profiles[name] = prof.output_text(unicode=False, color=False, show_all=False)
    out["file"] = f"results/profile_{name}.txt"
    return out


def _time_under(frame, funcs: set[str]) -> float:
    """Time of the outermost frames whose function name is in ``funcs``."""
    if frame.function in funcs:
        return frame.time
    return sum(_time_under(c, funcs) for c in frame.children)


def fresh_dirs(ctx: Ctx, prefix: str) -> Callable[[], Path]:
    """A maker of new output folders for training runs: ``<scratch>/<prefix><n>/model``, n = 1, 2, ...
    (each run writes its own; nothing left from an earlier one)."""
    import shutil

    n = [0]

    def fresh() -> Path:
        n[0] += 1
        d = ctx.scratch / f"{prefix}{n[0]}"
        shutil.rmtree(d, ignore_errors=True)
        return d / "model"

    return fresh


def scratch_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="act-bench-"))


def python() -> str:
    return sys.executable


def io_counters() -> dict[str, int]:
    """This process's I/O counters from Linux's ``/proc/self/io``; empty where there is none.

    They include every child process this one has waited for, and those children's waited-for
    children: the kernel adds a reaped child's counters to its parent's. So the difference over a
    ``subprocess.run`` is what the command's whole process tree did (processes left running, or
    orphaned and reaped by init, are not counted). ``write_bytes``: bytes dirtied for the storage
    layer (written to disk, or about to be); ``cancelled_write_bytes``: the part of them that never
    reached the disk because the file was truncated or deleted first; ``wchar``: bytes passed to
    write calls (pipes and page-cache hits too)."""
    try:
        text = Path("/proc/self/io").read_text()
    except OSError:
        return {}
    return {k.strip(): int(v) for k, v in (line.split(":", 1) for line in text.splitlines() if ":" in line)}


def tree_bytes(*roots: str | os.PathLike) -> int:
    """Bytes of the regular files under ``roots`` (apparent sizes; a file hard-linked twice counts
    once; symlinks are not followed); missing roots count 0."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root in roots:
        for dirpath, _, files in os.walk(root):
            for name in files:
                try:
                    st = os.lstat(os.path.join(dirpath, name))
                except OSError:  # removed while walking
                    continue
                if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_size
    return total


def disk_use(run: Callable[[], object], roots: list[str | os.PathLike]) -> tuple[object, dict]:
    """Call ``run`` (which runs its commands to completion) and measure what it wrote: bytes its
    process tree wrote to disk (:func:`io_counters`, before and after) and the bytes left under
    ``roots`` (the data root, the Dagster home) before and after. Returns ``run``'s result and::

        {"written_bytes": ..., "written_net_bytes": ..., "write_call_bytes": ...,
         "left_bytes": ..., "left_before_bytes": ..., "roots": [...]}

    ``written_net_bytes`` leaves out what was deleted before it reached the disk; the bytes
    written can exceed the bytes left many times over (temporary files, resume checkpoints,
    replaced folders). ``written_bytes`` is None where ``/proc/self/io`` is not readable."""
    before_left = tree_bytes(*roots)
    io0 = io_counters()
    result = run()
    io1 = io_counters()
    delta = {k: io1[k] - io0.get(k, 0) for k in io1}
    written = delta.get("write_bytes")
    return result, {
        "written_bytes": written,
        "written_net_bytes": None if written is None else written - delta.get("cancelled_write_bytes", 0),
        "write_call_bytes": delta.get("wchar"),
        "left_bytes": tree_bytes(*roots),
        "left_before_bytes": before_left,
        "roots": [str(r) for r in roots],
    }


def fmt_bytes(n: int | None) -> str:
    """
    >>> fmt_bytes(45_000_000_000), fmt_bytes(5_100_000_000), fmt_bytes(517_000_000), fmt_bytes(None)
    ('45 GB', '5.1 GB', '517 MB', '-')
    """
    if n is None:
        return "-"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2g} {unit}" if abs(n) < 10 * size else f"{n / size:.0f} {unit}"
    return f"{n} B"


def default_profile_states(prefix: str, n_games: int = 4, n_rows: int = 16):
    """The standalone A/Bs' set-up (``benchmarks/ab_*.py``): configs/default.yaml, its base model
    (SmolLM2-135M-Instruct), a :class:`Ctx` with a fresh scratch folder named ``prefix``, and
    ``n_rows`` real expert states spread over the planner's play of ``n_games`` train games."""
    from act_pipeline.config import load_config
    from act_pipeline.models import resolve_base_model

    prof = load_config(REPO / "configs" / "default.yaml")
    model = resolve_base_model(prof.model, 0, log=print)
    ctx = Ctx(quick=False, model=model, model_name="SmolLM2-135M-Instruct", tiny_model="", threads=1, seed=0,
              scratch=Path(tempfile.mkdtemp(prefix=prefix)),
              alfworld=Path(os.environ.get("ALFWORLD_DATA", REPO.parent / "shared" / "alfworld")))
    return prof, model, ctx, pick_spread(expert_states(ctx, n_games), n_rows)
