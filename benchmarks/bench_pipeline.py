"""4. The whole graph through ``act-pipeline run``: a no-op rerun (everything fresh), and +10%
expert games (how many states are sampled again, and the time against the full first run).
Each run also reports the bytes its process tree wrote and the bytes left in the data root and the
Dagster home (``disk`` in each way: :func:`benchmarks.common.disk_use`)."""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import time
from pathlib import Path

import yaml

from benchmarks.common import REPO, Ctx, disk_use, entry, fmt_bytes, python

GOAL_NOOP_S = 10.0
GOAL_RESAMPLED = 0.15


def _cli(ctx: Ctx, profile: Path, home: Path, dagster_home: Path) -> tuple[float, str, dict]:
    """``act-pipeline run --profile``: wall seconds, its output, and what it wrote (:func:`disk_use`)."""
    env = dict(os.environ, DAGSTER_HOME=str(dagster_home), ACT_HOME=str(home), ALFWORLD_DATA=str(ctx.alfworld),
               HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.perf_counter()
    res, disk = disk_use(lambda: subprocess.run([python(), "-m", "act_pipeline.cli", "run", "--profile", str(profile)],
                                                env=env, capture_output=True, text=True, timeout=1800, cwd=str(REPO)),
                         [home, dagster_home])
    dt = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"act-pipeline run failed ({res.returncode}): {res.stderr[-3000:]}")
    return dt, res.stdout, disk


def run(ctx: Ctx) -> list[dict]:
    base = yaml.safe_load((REPO / "configs" / "smoke.yaml").read_text())
    n_games = 10  # +1 game is +10%
    base["alfworld"]["train_games"] = n_games
    # what is measured is the incremental machinery, not training or evaluation: those are cut to
    # the least that still runs every asset (stated with the results)
    for stage in ("act", "il", "rl"):
        base[stage]["max_steps"] = 2
    base["act"]["probe_every"] = 0
    if "scienceworld" in base:  # the ALFWorld chain is what is measured
        base["scienceworld"]["enabled"] = False
    base["eval"].update(thinking_arm=False, games_valid_seen=1, games_valid_unseen=1, max_steps=2,
                        heldout_pairs=8, heldout_states=8)
    work = ctx.scratch / "pipeline"
    home, dagster_home = work / "home", work / "dagster_home"
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    profile = work / "bench.yaml"
    profile.write_text(yaml.safe_dump(base))
    more = dict(base, alfworld=dict(base["alfworld"], train_games=n_games + 1))
    profile_more = work / "bench_more.yaml"
    profile_more.write_text(yaml.safe_dump(more))

    ctx.log("  full run (smoke profile, 10 train games)")
    full_s, _, full_disk = _cli(ctx, profile, home, dagster_home)
    ctx.log(f"  full run: {full_s:.1f} s; wrote {fmt_bytes(full_disk['written_bytes'])}, "
            f"left {fmt_bytes(full_disk['left_bytes'])}")
    noop, inproc, noop_disk = [], [], []
    for i in range(3):
        dt, out, disk = _cli(ctx, profile, home, dagster_home)
        noop_disk.append(disk)
        if "every asset is fresh, nothing to do" not in out:
            raise RuntimeError(f"the rerun recomputed something:\n{out[-2000:]}")
        noop.append(round(dt, 3))
        inproc.append(float(re.search(r"nothing to do \(([\d.]+) s", out).group(1)))
        ctx.log(f"  no-op rerun: {dt:.2f} s wall ({inproc[-1]:.1f} s after imports)")
    noop_s = statistics.median(noop)

    ctx.log("  +10% expert games")
    more_s, _, more_disk = _cli(ctx, profile_more, home, dagster_home)
    m = json.loads((home / "manifests" / "alfworld__sampled_alternatives.json").read_text())
    frac = m["sampled"] / m["states"]
    ctx.log(f"  incremental run: {more_s:.1f} s; states sampled {m['sampled']}/{m['states']}")
    full = {"label": "full first run (every asset)", "seconds": [round(full_s, 3)], "median_s": round(full_s, 3),
            "rate": None, "unit": "s", "disk": full_disk}
    common = dict(seed=base["seed"], profile="configs/smoke.yaml with alfworld.train_games=10, act/il/rl max_steps=2, "
                  "eval: 1+1 games, 2 steps, no thinking arm, 8 held-out pairs/states",
                  model="tiny random Llama (smoke profile)")
    return [
        entry("noop_rerun", "`act-pipeline run` with every asset fresh (wall time of the command, "
              "Python and Dagster import included)",
              full, {"label": "no-op rerun (nothing to do)", "seconds": noop, "median_s": noop_s, "rate": None,
                     "unit": "s", "after_imports_s": inproc, "disk": noop_disk[-1]},
              full_s / noop_s, f"<= {GOAL_NOOP_S:g} s", noop_s <= GOAL_NOOP_S, repeats=len(noop), **common),
        entry("incremental_games", "+10% expert games (10 -> 11 train games): states sampled again, time",
              full, {"label": "rerun after +1 train game (stale assets only; sample cache)",
                     "seconds": [round(more_s, 3)], "median_s": round(more_s, 3), "rate": None, "unit": "s",
                     "disk": more_disk},
              full_s / more_s, f"<= {GOAL_RESAMPLED:.0%} of states re-sampled", frac <= GOAL_RESAMPLED,
              states=m["states"], states_sampled=m["sampled"], states_from_cache=m["cached"],
              fraction_resampled=round(frac, 4), time_vs_full=round(more_s / full_s, 3),
              notes="everything downstream of the expert trajectories reruns (training and evaluation "
                    "are not incremental); only the sampling is cached", **common),
    ]
