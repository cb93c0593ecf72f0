"""What a measurement ran on: the machine, its load, the libraries and the git commit.

Benchmarks (``benchmarks/``) and the science result (``results/science/``) state these beside every
number they report.
"""

from __future__ import annotations

import ctypes
import os
import platform
import subprocess
import sys
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


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 << 20  # glibc's largest on 64-bit (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD = 1 << 30
_MALLOC_TUNED: bool | None = None


def tune_malloc() -> bool:
    """Keep freed memory of up to ``MMAP_THRESHOLD`` (32 MiB) in this process's heap (glibc
    ``mallopt``), so that allocations a little larger each time (a KV cache growing by one token per
    decoding step: ``torch.cat`` into a new tensor per layer) reuse it instead of each being a fresh
    ``mmap`` whose pages the kernel faults in and zeroes. glibc raises its threshold only to the size
    of the last block freed, which a growing cache always exceeds. Measured (the sampling
    benchmark's lever "glibc malloc thresholds", fresh processes, 2026-12-02): 0.171 -> 0.196
    states/s, the same completions both ways; the default run's steps moved within a few percent
    (they decode little; inside a long-lived process glibc's threshold may already be high).

    Allocation policy only: every result is the same. Once per process; True where applied, False
    where not (not glibc, or ``ACT_MALLOC_TUNING=0``). The pipeline's model steps call it
    (``setup_torch``), and so does :class:`~act_pipeline.sampling.hf.TransformersSampler`.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED is None:
        _MALLOC_TUNED = False
        if os.environ.get("ACT_MALLOC_TUNING", "1") != "0" and sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(None)  # the C library this process runs on
                if hasattr(libc, "gnu_get_libc_version"):  # glibc (musl has no such thresholds)
                    _MALLOC_TUNED = (libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
                                     and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1)
            except (OSError, AttributeError):
                pass
    return _MALLOC_TUNED


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
