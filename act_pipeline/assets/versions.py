"""Code versions: derived from what really defines each asset.

An asset's code version hashes the source files of the core modules it runs plus the profile
sections that parameterise it, so editing evaluation code (or the eval section) changes only the
evaluation asset's version and Dagster marks only it (and what is downstream) stale.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect

from act_pipeline.config import PipelineConfig


def source_hash(*modules: str) -> str:
    h = hashlib.sha256()
    for name in sorted(modules):
        mod = importlib.import_module(name)
        h.update(name.encode())
        h.update(inspect.getsource(mod).encode())
    return h.hexdigest()[:12]


def code_version(cfg: PipelineConfig, modules: list[str], sections: list[str]) -> str:
    parts = [source_hash(*modules)] + [f"{s}:{cfg.section_hash(s)}" for s in sorted(sections)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
