"""What a measurement ran on: the machine, its load, the libraries and the git commit.

Benchmarks (``benchmarks/``) and the science result (``results/science/``) state these beside every
number they report.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def machine_info(threads: int | None = None, dirty_exclude: tuple[str, ...] = ()) -> dict:
    """The machine (CPU model, cores, flags, memory), its load average now, the libraries' versions,
    and the git commit (with whether the tree had changes, ``dirty_exclude`` paths not counted)."""
    import torch

    info = {"python": platform.python_version(), "platform": platform.platform(),
            "cpu_model": cpu_model(), "logical_cpus": os.cpu_count(),
            "cpu_flags": {f: f in _cpu_flags() for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16")},
            "torch_threads": threads, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "load_avg_at_start": list(os.getloadavg()),
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "git_commit": git("rev-parse", "HEAD"),
            "git_dirty": bool(git("status", "--porcelain", "--", ".", *(f":!{p}" for p in dirty_exclude))),
            "torch": torch.__version__}
    for mod in ("transformers", "trl", "dagster", "duckdb", "pyarrow", "pandas", "numpy"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - a missing optional package is recorded as such
            info[mod] = None
    try:
        import psutil

        info["memory_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    except Exception:  # noqa: BLE001
        pass
    return info


def machine_line(info: dict) -> str:
    """The machine in one line, from :func:`machine_info`: CPU, cores, memory, vector extensions,
    library versions.

    >>> machine_line({"cpu_model": "EPYC", "logical_cpus": 2, "memory_gib": 24, "cpu_flags": {"avx2": True,
    ...               "avx512f": False}, "torch": "2.13.0", "transformers": "5", "trl": "1"})
    'EPYC, 2 logical CPUs, 24 GiB, avx2, no GPU used; torch 2.13.0, transformers 5, trl 1'
    """
    flags = [f for f, on in (info.get("cpu_flags") or {}).items() if on]
    return (f"{info.get('cpu_model')}, {info.get('logical_cpus')} logical CPUs, {info.get('memory_gib')} GiB, "
            f"{'/'.join(flags) or 'no AVX2'}, no GPU used; torch {info.get('torch')}, transformers "
            f"{info.get('transformers')}, trl {info.get('trl')}")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


CODE_PATHS = ("act_pipeline", "configs", "scripts", "pyproject.toml")


def code_commit() -> str:
    """The commit the code runs at, ``+dirty`` when the code (``CODE_PATHS``: the package, profiles,
    scripts, dependencies) has changes not committed; documentation and results do not count.
    "" outside a git checkout."""
    head = git("rev-parse", "HEAD")
    return head + ("+dirty" if head and git("status", "--porcelain", "--", *CODE_PATHS) else "")


def git(*args) -> str:
    """``git <args>`` in the repository ("" when git or the repository is not there)."""
    try:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
