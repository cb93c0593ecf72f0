"""Code versions: derived from what really defines each asset.

An asset's code version hashes the source files of the core modules it runs plus the profile
sections that parameterise it, so editing evaluation code (or the eval section) changes only the
evaluation asset's version and Dagster marks only it (and what is downstream) stale. A package
counts with every module in it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import pkgutil
from pathlib import Path

from act_pipeline.config import PipelineConfig
from act_pipeline.files import sha256_bytes


def _sources(name: str) -> list[tuple[str, bytes]]:
    # the files are found, not imported: a process that only builds the definitions (each step's
    # process of a multiprocess run, the UI's code server) does not import torch and the rest for them
    spec = importlib.util.find_spec(name)
    names = [name]
    if spec.submodule_search_locations is not None:  # a package: every module in it
        names += sorted(i.name for i in pkgutil.walk_packages(spec.submodule_search_locations, prefix=name + "."))
    return [(n, Path(importlib.util.find_spec(n).origin).read_bytes()) for n in names]


def source_hash(*modules: str) -> str:
    h = hashlib.sha256()
    for name in sorted(modules):
        for mod, src in _sources(name):
            h.update(mod.encode())
            h.update(src)
    return h.hexdigest()[:12]


def code_version(cfg: PipelineConfig, modules: list[str], sections: list[str]) -> str:
    parts = [source_hash(*modules)] + [f"{s}:{cfg.section_hash(s)}" for s in sorted(sections)]
    return sha256_bytes("|".join(parts))[:16]
