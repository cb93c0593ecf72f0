import contextlib
import os
from pathlib import Path

import pytest

from .alfworld_source import GamesSource, configure, decide

REPO = Path(__file__).resolve().parent.parent
SMOKE = REPO / "configs" / "smoke.yaml"
DEFAULT = REPO / "configs" / "default.yaml"  # the profile `make_definitions()` builds the graph from


def graph_config(path: Path = DEFAULT):
    """The profile the asset graph is built from (resources may run another profile)."""
    from act_pipeline.config import load_config

    return load_config(path)


def asset(cfg, key: str):
    """The AssetsDefinition of ``key`` (``"alfworld/contrast_pairs"``, ``"base_model"``) in the
    graph of the profile ``cfg``."""
    import dagster as dg

    from act_pipeline.assets.graph import build_assets

    want = dg.AssetKey.from_user_string(key)
    found = [a for a in build_assets(cfg) if a.key == want]
    assert len(found) == 1, f"no asset {key} in the graph of {cfg.source}"
    return found[0]


# The modules that take longest (their module fixtures run a whole graph): collected first, so that
# under pytest-xdist (scripts/test.sh: two workers, one module at a time each, in collection order)
# they start at once on both workers instead of leaving one worker alone with the last of them.
LONGEST_FIRST = ("test_pipeline_smoke.py", "test_paper_path.py", "test_seeds.py")


def pytest_configure(config):
    configure()  # ACT_TEST_NO_OFFICIAL_DATA=1: the official data out of sight


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


@pytest.fixture(scope="session")
def alfworld_source(tmp_path_factory) -> GamesSource:
    """The ALFWorld games the tests play: the official data when it is there (always under CI), else
    games generated offline once per session (tests/alfworld_source.py decides)."""
    return decide(REPO, tmp_path_factory)


@pytest.fixture(scope="session")
def alfworld_data(alfworld_source) -> Path:
    """The folder holding json_2.1.1/ (what ALFWORLD_DATA names), official or generated."""
    return alfworld_source.path


@pytest.fixture(scope="session")
def tiny_model() -> str:
    from act_pipeline.config import load_config
    from act_pipeline.models import resolve_base_model

    cfg = load_config(SMOKE)
    return resolve_base_model(cfg.model, cfg.seed, log=lambda m: None)


def dagster_home(tmp_path_factory) -> Path:
    """A fresh Dagster instance folder (telemetry off)."""
    path = tmp_path_factory.mktemp("dagster_home")
    (path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return path


def step_spans(instance, run_id: str) -> dict[str, tuple[float, float]]:
    """{step key: (start, end)} of a run's steps that succeeded, from the Dagster instance's event log
    (the times of its STEP_START and STEP_SUCCESS events)."""
    import dagster as dg

    times: dict[str, dict] = {}
    for rec in instance.all_logs(run_id, of_type={dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS}):
        times.setdefault(rec.step_key, {})[rec.dagster_event.event_type] = rec.timestamp
    return {k: (t[dg.DagsterEventType.STEP_START], t[dg.DagsterEventType.STEP_SUCCESS])
            for k, t in times.items() if len(t) == 2}


def overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether two (start, end) intervals overlap in time."""
    return a[0] < b[1] and b[0] < a[1]


def most_at_once(spans) -> int:
    """The most intervals (start, end) that were open at the same moment."""
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])  # an end before a start at a tie
    most = now = 0
    for _, d in edges:
        now += d
        most = max(most, now)
    return most


def run_main(argv: list[str], **env: str) -> int:
    """``act-pipeline <argv>`` in this process with ``env`` set for the call (restored after)."""
    old = dict(os.environ)
    os.environ.update(env)
    try:
        from act_pipeline.cli import main

        return main(argv)
    finally:
        os.environ.clear()
        os.environ.update(old)


@contextlib.contextmanager
def restored(*paths: Path):
    """Whatever the body does to the folders ``paths``, they are as before afterwards (files, links,
    mtimes): a test that changes the state a module fixture built works on its own copy of it, so
    the tests that share the fixture pass alone, together and in any order. The folders stay where
    they are (data roots name their artifacts by absolute path; a copy elsewhere would not be one)."""
    import shutil
    import tempfile

    saved = []
    try:
        for p in paths:
            keep = Path(tempfile.mkdtemp(prefix=f".{p.name}-", dir=p.parent)) / p.name
            shutil.copytree(p, keep, symlinks=True)  # copy2: mtimes kept (gc's min-age reads them)
            saved.append((p, keep))
        yield
    finally:
        for p, keep in saved:
            if p.is_symlink() or p.is_file():
                p.unlink()
            elif p.exists():
                shutil.rmtree(p)
            os.rename(keep, p)
            keep.parent.rmdir()
