"""8. The README's main command end to end: ``act-pipeline run --profile configs/default.yaml`` on a
fresh data root and a fresh Dagster home, ``--jobs J`` steps at a time (``benchmarks.run --jobs``;
default: as many as CPU cores, Dagster's multiprocess executor), torch threads per step from
``--threads`` (``OMP_NUM_THREADS``; the profile's ``threads: 0`` leaves torch at that).

Measured: the command's wall minutes; each step's start and end as Dagster recorded them
(``DagsterInstance.get_run_step_stats`` of the fresh instance), their sum against the wall span (how
much ran side by side) and the chain of steps that waited on each other; the bytes the command's
process tree wrote and left (:func:`benchmarks.common.disk_use`), and each step's share as its
console end line states it (:func:`step_writes`); the machine's least available
memory during the run (``/proc/meminfo``, every 2 s; the machine is shared, so other processes are
in it) and the load average before and after. The console goes to ``<results>/default_run.log``
(``tail -f`` it). Goals (issue #14): at most 15 wall minutes and at most 5 GB written.
Only on request (``--only default_run``, ≈ 45 min); ``--quick`` runs the same code on the smoke profile.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

from benchmarks.common import REPO, Ctx, disk_use, entry, fmt_bytes, python

GOAL_WALL_MIN = 15.0
GOAL_WRITTEN_BYTES = 5e9


def wait_chain(steps: list[dict], slack_s: float = 5.0) -> list[str]:
    """The steps that waited on each other, first to last: from the step that ended last, back to
    the step that ended last no later than ``slack_s`` after it started, and so on (a dependency, or
    a concurrency slot freed). Its minutes are what more steps side by side could not have saved.

    >>> s = [{"step": "a", "start_s": 0, "end_s": 10}, {"step": "b", "start_s": 0, "end_s": 4},
    ...      {"step": "c", "start_s": 11, "end_s": 20}, {"step": "d", "start_s": 5, "end_s": 18}]
    >>> wait_chain(s)
    ['a', 'c']
    >>> wait_chain([])
    []
    """
    done = sorted(steps, key=lambda s: s["end_s"])
    chain, cur = [], done[-1] if done else None
    while cur is not None:
        chain.append(cur["step"])
        before = [s for s in done if s is not cur and s["end_s"] <= cur["start_s"] + slack_s
                  and s["start_s"] < cur["start_s"]]
        cur = before[-1] if before else None
    return chain[::-1]


def idle_s(steps: list[dict]) -> float:
    """Seconds of the steps' span in which no step ran (step processes starting: imports, the job
    rebuilt; Dagster's bookkeeping between steps).

    >>> idle_s([{"start_s": 0, "end_s": 10}, {"start_s": 5, "end_s": 12}, {"start_s": 20, "end_s": 25}])
    8
    """
    idle, reached = 0, 0
    for s in sorted(steps, key=lambda s: s["start_s"]):
        idle += max(0, s["start_s"] - reached)
        reached = max(reached, s["end_s"])
    return idle


_DONE = re.compile(r"^\d\d:\d\d:\d\d  (?P<label>\S+): done in [\d.]+ s, wrote (?P<n>[\d.]+) (?P<unit>MB|GB)$")


def step_writes(console: str) -> dict[str, int]:
    r"""Bytes each step wrote, by step key, from the run's console: a step's end line says what its
    process and the processes it waited for wrote (``act_pipeline.console.bytes_written``). Steps
    that only run checks print no end line and are not in it.

    >>> step_writes("03:54:36  alfworld/il_baseline: done in 529.6 s, wrote 541.6 MB\n"
    ...             "03:54:37  base_model: done in 1.5 s, wrote 1.20 GB\n03:54:38  x: started\n")
    {'alfworld__il_baseline': 541600000, 'base_model': 1200000000}
    """
    out = {}
    for line in console.splitlines():
        m = _DONE.match(line.strip())
        if m:
            out[m["label"].replace("/", "__")] = round(float(m["n"]) * (1e9 if m["unit"] == "GB" else 1e6))
    return out


def stage_times(dagster_home: Path) -> dict:
    """Per step (every run of the instance in ``dagster_home``): start offset and minutes, from
    Dagster's step stats; the steps' span, their sum, the minutes no step ran, and the wait chain."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        runs = instance.get_runs()
        stats = [(r.run_id, s) for r in runs for s in instance.get_run_step_stats(r.run_id)]
    timed = [(rid, s) for rid, s in stats if s.start_time is not None and s.end_time is not None]
    if not timed:
        raise RuntimeError(f"no timed steps in the Dagster instance at {dagster_home} ({len(runs)} run(s))")
    t0 = min(s.start_time for _, s in timed)
    steps = sorted(({"step": s.step_key if len(runs) == 1 else f"{rid[:8]}:{s.step_key}",
                     "status": s.status.value if s.status else None,
                     "start_s": round(s.start_time - t0, 1), "end_s": round(s.end_time - t0, 1),
                     "minutes": round((s.end_time - s.start_time) / 60, 2)} for rid, s in timed),
                   key=lambda s: s["start_s"])
    span = max(s["end_s"] for s in steps)
    chain = wait_chain(steps)
    by = {s["step"]: s for s in steps}
    return {"runs": [r.run_id for r in runs], "steps": steps, "span_min": round(span / 60, 2),
            "sum_step_min": round(sum(s["minutes"] for s in steps), 2), "no_step_min": round(idle_s(steps) / 60, 2),
            "wait_chain": chain, "wait_chain_min": round(sum(by[k]["minutes"] for k in chain), 2)}


class MemWatch:
    """The least ``MemAvailable`` of ``/proc/meminfo``, sampled every ``every_s`` in a thread."""

    def __init__(self, every_s: float = 2.0):
        self.every_s, self.total = every_s, self.read("MemTotal")
        self.start = self.least = self.read()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @staticmethod
    def read(field: str = "MemAvailable") -> int | None:
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return None

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            now = self.read()
            if now is not None and (self.least is None or now < self.least):
                self.least = now

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict:
        if self.least is None or self.total is None:
            return {"note": "/proc/meminfo not readable"}
        return {"least_available_bytes": self.least, "peak_used_bytes": self.total - self.least,
                "peak_added_bytes": self.start - self.least, "total_bytes": self.total}


def run_group(cmd: list[str], timeout: float, **kw) -> int:
    """Run ``cmd`` in its own process group; on a timeout (or an interrupt) kill the whole group,
    the step processes of Dagster's multiprocess executor with it, and re-raise. Its exit code."""
    proc = subprocess.Popen(cmd, start_new_session=True, **kw)
    try:
        return proc.wait(timeout=timeout)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise


def run(ctx: Ctx) -> list[dict]:
    from act_pipeline.cli import concurrency
    from act_pipeline.config import load_config

    profile = REPO / "configs" / ("smoke.yaml" if ctx.quick else "default.yaml")
    jobs, model_steps = concurrency(ctx.jobs, ctx.model_steps)
    threads = load_config(profile).threads or ctx.threads  # the profile's, else OMP_NUM_THREADS (below)
    work = ctx.scratch / "default_run"
    home, dagster_home = work / "home", work / "dagster_home"
    dagster_home.mkdir(parents=True)
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\npython_logs:\n  python_log_level: INFO\n")
    log = (ctx.out or work) / "default_run.log"
    cmd = [python(), "-m", "act_pipeline.cli", "run", "--profile", str(profile), "--jobs", str(jobs),
           "--model-steps", str(model_steps)]
    env = dict(os.environ, DAGSTER_HOME=str(dagster_home), ACT_HOME=str(home), ALFWORLD_DATA=str(ctx.alfworld),
               HF_HUB_OFFLINE="1", OMP_NUM_THREADS=str(ctx.threads), PYTHONUNBUFFERED="1",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    ctx.log(f"  {profile.name}, {jobs} step(s) at a time ({model_steps} loading a model); console: {log}")
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    with log.open("w") as out, MemWatch() as mem:
        rc, disk = disk_use(lambda: run_group(cmd, 3000 if ctx.quick else 4 * 3600, env=env, stdout=out,
                                              stderr=subprocess.STDOUT, cwd=str(REPO)), [home, dagster_home])
    wall = time.perf_counter() - t0
    load1 = os.getloadavg()
    if rc != 0:
        raise RuntimeError(f"act-pipeline run failed ({rc}); its console: {log}\n"
                           + log.read_text()[-3000:])
    stages = stage_times(dagster_home)
    wrote = step_writes(log.read_text(errors="replace"))
    for s in stages["steps"]:
        s["written_bytes"] = wrote.get(s["step"])
    # what the steps that print their bytes wrote, against the whole process tree's (the rest: the
    # check-only steps, the CLI and Dagster's executor, the fork server)
    stages["steps_written_bytes"] = sum(wrote.values())
    wall_min = wall / 60
    goals = {f"wall_minutes<={GOAL_WALL_MIN:g}": wall_min <= GOAL_WALL_MIN,
             "written<=5GB": disk["written_bytes"] is not None and disk["written_bytes"] <= GOAL_WRITTEN_BYTES}
    ctx.log(f"  {wall_min:.1f} min wall, steps {stages['sum_step_min']:.1f} min in all over a "
            f"{stages['span_min']:.1f} min span; wrote {fmt_bytes(disk['written_bytes'])}, "
            f"left {fmt_bytes(disk['left_bytes'])}")
    steps_way = {"label": "the steps' minutes added up (as measured in this run)", "seconds": [stages["sum_step_min"] * 60],
                 "median_s": round(stages["sum_step_min"] * 60, 1), "rate": None, "unit": "s"}
    wall_way = {"label": f"`act-pipeline run --jobs {jobs}`, wall (imports included)", "seconds": [round(wall, 1)],
                "median_s": round(wall, 1), "rate": None, "unit": "s", "disk": disk}
    return [entry("default_run", f"`act-pipeline run --profile configs/{profile.name}` on a fresh data root and "
                  "Dagster home, end to end", steps_way, wall_way, steps_way["median_s"] / wall,
                  f"<= {GOAL_WALL_MIN:g} wall min and <= 5 GB written", all(goals.values()), goals=goals,
                  wall_min=round(wall_min, 2), jobs=jobs, model_steps=model_steps, torch_threads_per_step=threads,
                  profile=f"configs/{profile.name}", stages=stages, memory=mem.summary(),
                  load_avg={"start": [round(x, 2) for x in load0], "end": [round(x, 2) for x in load1]},
                  console_log=str(log))]
