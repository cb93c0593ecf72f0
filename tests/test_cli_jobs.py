"""``act-pipeline run --jobs N``: independent steps side by side (Dagster's multiprocess executor), or
one after another in process (``--jobs 1``), through the CLI's own ``run_job`` on a tiny graph.

The whole graph with ``--jobs 2`` and ``--jobs 1`` is in tests/test_pipeline_smoke.py; here two
independent assets ``left`` and ``right`` (each waits, up to ``wait_s``, until the other has
started: they can only both finish early if they run at the same time), ``joined`` reading both,
and an asset ``broken`` that fails.
"""

import os
import time
import uuid
import warnings
from pathlib import Path

import dagster as dg
import pytest

from act_pipeline import cli, console
from act_pipeline.assets.common import GPU_TAG

from .conftest import REPO, dagster_home, overlap, step_spans

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(autouse=True)
def _step_processes_import_this_module(monkeypatch):
    """Each step's process rebuilds ``tiny_job`` by importing this module (``tests.test_cli_jobs``),
    so the repo root goes on their path (act_pipeline's own jobs need nothing: the package is installed)."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    monkeypatch.syspath_prepend(str(REPO))  # a spawned process starts from its parent's sys.path

WARNING = "a warning from a step's process"


def tiny_job(folder: str, wait_s: float, model: bool, log_file: str) -> dg.JobDefinition:
    """The tiny graph's job (module level: each step's process rebuilds it from these arguments)."""
    console.step_process(log_file)  # as cli.step_job does

    def side(name: str, other: str) -> dg.AssetsDefinition:
        @dg.asset(name=name, op_tags={GPU_TAG: "true"} if model else None)
        def _side(context) -> int:
            Path(folder, f"{name}.started").touch()
            deadline = time.monotonic() + wait_s
            while not Path(folder, f"{other}.started").exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            warnings.warn(WARNING)
            seen = Path(folder, f"{other}.started").exists()
            context.log.info(f"{name}: the other side {'had' if seen else 'had not'} started")
            return 1
        return _side

    @dg.asset(deps=["left", "right"])
    def joined() -> int:
        return 2

    @dg.asset
    def broken() -> int:
        raise ValueError("broken on purpose")

    defs = console.with_loggers(dg.Definitions(assets=[side("left", "right"), side("right", "left"), joined, broken],
                                               jobs=[dg.define_asset_job("tiny_job")]))
    return defs.resolve_job_def("tiny_job")


def _run(tmp_path_factory, jobs: int, model_steps: int = 2, wait_s: float = 0.0, model: bool = False,
         keys=("left", "right", "joined")):
    """One run through ``cli.run_job`` in a fresh Dagster instance; (result, {step: (start, end)}, log file)."""
    folder = tmp_path_factory.mktemp("run")
    log_file = folder / "run.log"
    kwargs = {"folder": str(folder), "wait_s": wait_s, "model": model, "log_file": str(log_file)}
    recon = dg.build_reconstructable_job(__name__, tiny_job.__name__, reconstructable_kwargs=kwargs)
    with console.RunLog(log_file), dg.DagsterInstance.from_config(str(dagster_home(tmp_path_factory))) as instance:
        job = tiny_job(**kwargs)
        run_id = str(uuid.uuid4())
        result = cli.run_job(job, recon, instance, selection=[dg.AssetKey(k) for k in keys], run_id=run_id,
                             run_config=console.run_config(log_file), jobs=jobs, model_steps=model_steps)
        return result, step_spans(instance, run_id), log_file


def test_jobs_2_runs_independent_steps_at_the_same_time(tmp_path_factory, capfd):
    result, spans, log_file = _run(tmp_path_factory, jobs=2, wait_s=300)
    assert result.success
    assert set(spans) == {"left", "right", "joined"}
    assert overlap(spans["left"], spans["right"]), spans
    # each side saw the other start before it ended: not one after the other
    log = log_file.read_text()
    assert "left: the other side had started" in log and "right: the other side had started" in log
    assert spans["joined"][0] >= max(spans["left"][1], spans["right"][1])  # after both of its inputs
    # the steps' processes wrote to the run's log file: their events and their Python warnings
    assert log.count(WARNING) >= 2
    out = capfd.readouterr().out
    for step in ("left", "right", "joined"):  # the console's line per step start and end, from each process
        assert f"  {step}: started" in out and f"  {step}: done in " in out, out


def test_jobs_1_runs_steps_one_after_another_in_process(tmp_path_factory):
    result, spans, log_file = _run(tmp_path_factory, jobs=1, wait_s=1)
    assert result.success
    assert isinstance(result, dg.ExecuteInProcessResult)  # today's in-process execution, unchanged
    first, second = sorted((spans["left"], spans["right"]))
    assert first[1] <= second[0], spans  # one ended before the other started
    assert "the other side had not started" in log_file.read_text()


def test_model_steps_are_limited_apart_from_jobs(tmp_path_factory):
    """Two steps tagged act-pipeline/gpu with --jobs 2 --model-steps 1: one after the other."""
    result, spans, _ = _run(tmp_path_factory, jobs=2, model_steps=1, wait_s=1, model=True)
    assert result.success
    first, second = sorted((spans["left"], spans["right"]))
    assert first[1] <= second[0], spans


def test_a_failing_step_fails_the_multiprocess_run(tmp_path_factory, capfd):
    result, spans, log_file = _run(tmp_path_factory, jobs=2, keys=("broken",))
    assert not result.success
    assert "broken on purpose" in log_file.read_text()
    assert "broken: FAILED" in capfd.readouterr().out


def test_concurrency_defaults():
    import os

    jobs, model_steps = cli.concurrency(0, 0)
    assert jobs == (os.cpu_count() or 1)
    assert 1 <= model_steps <= jobs
    assert cli.concurrency(3, 0)[1] == max(1, min(3, cli.memory_bytes() // cli.MODEL_STEP_BYTES))
    assert cli.concurrency(4, 9) == (4, 4)
    assert cli.concurrency(1, 0) == (1, 1)
