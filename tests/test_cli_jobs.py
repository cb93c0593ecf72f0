"""``act-pipeline run --jobs N``: independent steps side by side (Dagster's multiprocess executor), or
one after another in process (``--jobs 1``), through the CLI's own ``run_job`` on a tiny graph.

The whole graph with ``--jobs 2`` and ``--jobs 1`` is in tests/test_pipeline_smoke.py; here two
independent assets ``left`` and ``right`` (each waits, up to ``wait_s``, until the other has
started: they can only both finish early if they run at the same time), ``joined`` reading both,
and an asset ``broken`` that fails; ``torch_threads`` records the torch threads of its step's process.

The default (``--jobs 0``) of an unpartitioned run: as many steps at once as CPU cores, and with the
profile's ``threads: 0`` each step's process ``cores // jobs`` threads (``cli.step_threads``), through
``cli.main`` with ``run_job`` stood in for.
"""

import json
import os
import sys
import time
import uuid
import warnings
from pathlib import Path

import dagster as dg
import pytest
import yaml

from act_pipeline import cli, console
from act_pipeline.assets.common import GPU_TAG
from act_pipeline.definitions import make_definitions, step_executor

from .conftest import REPO, SMOKE, dagster_home, overlap, step_spans

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(autouse=True)
def _step_processes_import_this_module(monkeypatch):
    """Each step's process rebuilds ``tiny_job`` by importing this module (``tests.test_cli_jobs``),
    so the repo root goes on their path (act_pipeline's own jobs need nothing: the package is installed)."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    monkeypatch.syspath_prepend(str(REPO))  # a spawned process starts from its parent's sys.path

WARNING = "a warning from a step's process"


def tiny_job(folder: str, wait_s: float, model: bool, log_file: str, gpu: bool = False) -> dg.JobDefinition:
    """The tiny graph's job (module level: each step's process rebuilds it from these arguments), on the
    graph's own executor (``definitions.step_executor``) of a CPU profile, or of a GPU one (``gpu``)."""
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

    @dg.asset
    def torch_threads() -> int:
        import torch

        Path(folder, "torch_threads").write_text(str(torch.get_num_threads()))
        return torch.get_num_threads()

    @dg.asset
    def process_seen() -> int:
        """What its step's process had before the step did anything: the test's variable, whether torch
        was imported already (nothing on this module's import path imports it), and its parent."""
        seen = {"mark": os.environ.get("ACT_TEST_RUN_MARK"), "torch_loaded": "torch" in sys.modules,
                "ppid": os.getppid()}
        Path(folder, "process_seen.json").write_text(json.dumps(seen))
        return 1

    defs = console.with_loggers(dg.Definitions(assets=[side("left", "right"), side("right", "left"), joined, broken,
                                                       torch_threads, process_seen],
                                               jobs=[dg.define_asset_job("tiny_job", executor_def=step_executor(gpu))]))
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


def test_step_processes_get_the_threads_the_cli_sets(tmp_path_factory, monkeypatch):
    """With ``cli.thread_env`` around ``run_job`` (as ``act-pipeline run`` does), a step's process
    has that many torch threads: 1 of 2 cores, where torch's own default is every core (torch takes
    no more threads from OMP_NUM_THREADS than there are cores, so 1 is the count that tells)."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    # a fresh process's torch default is every core (this process's own torch may have read
    # OMP_NUM_THREADS=1 from scripts/test.sh when it loaded, so it cannot tell)
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: torch's default is one thread, nothing to tell the threads set apart from")
    want = 1
    threads = cli.step_threads(0, 2, 2, os.environ)
    assert threads == want
    with cli.thread_env(threads):
        assert os.environ["OMP_NUM_THREADS"] == str(want)
        result, spans, log_file = _run(tmp_path_factory, jobs=2, keys=("torch_threads", "left"))
    assert "OMP_NUM_THREADS" not in os.environ  # as it was before
    assert result.success
    assert not isinstance(result, dg.ExecuteInProcessResult)  # the multiprocess executor
    assert Path(log_file.parent, "torch_threads").read_text() == str(want)


def test_step_processes_fork_from_a_preloaded_server_with_the_environment_of_their_run(tmp_path_factory,
                                                                                       monkeypatch):
    """Step processes are forked from a server that imported ``definitions.STEP_PRELOAD`` (torch is there
    before the step starts); each run starts its own server, so a variable changed between two runs
    of one process reaches the second run's steps (a server kept from the first would hand them the
    first run's environment)."""
    seen = []
    for mark in ("first", "second"):
        monkeypatch.setenv("ACT_TEST_RUN_MARK", mark)
        result, spans, log_file = _run(tmp_path_factory, jobs=2, keys=("process_seen", "left"))
        assert result.success and not isinstance(result, dg.ExecuteInProcessResult)
        seen.append(json.loads(Path(log_file.parent, "process_seen.json").read_text()))
    assert [s["mark"] for s in seen] == ["first", "second"]
    assert all(s["torch_loaded"] for s in seen), seen
    assert all(s["ppid"] != os.getpid() for s in seen), seen  # not this process's own children: the server's
    assert seen[0]["ppid"] != seen[1]["ppid"], seen  # a server per run


@pytest.mark.parametrize("gpu, forked", [(False, True), (True, False)])
def test_runs_launched_as_the_ui_does_use_the_graphs_executor(tmp_path_factory, gpu, forked):
    """A run with no executor config, as the UI and the daemon launch one (``dg.execute_job``): the
    graph's executor of a CPU profile forks the steps from a preloaded server (torch is there before
    the step starts), a GPU profile's spawns them; ``make_definitions`` gives that executor to its jobs
    and to the UI's asset materializations alike."""
    folder = tmp_path_factory.mktemp("ui_run")
    kwargs = {"folder": str(folder), "wait_s": 0.0, "model": False, "log_file": str(folder / "run.log"),
              "gpu": gpu}
    recon = dg.build_reconstructable_job(__name__, tiny_job.__name__, reconstructable_kwargs=kwargs)
    with console.RunLog(folder / "run.log"), dg.DagsterInstance.from_config(str(dagster_home(tmp_path_factory))) as inst:
        try:
            with dg.execute_job(recon, inst, asset_selection=[dg.AssetKey("process_seen")]) as result:
                assert result.success
        finally:
            cli.stop_forkserver()
    seen = json.loads(Path(folder, "process_seen.json").read_text())
    assert seen["torch_loaded"] is forked, seen

    defs = make_definitions(str(SMOKE), str(folder / "home"))
    job = defs.resolve_job_def("act_pipeline_job")
    assert job.executor_def is not dg.multi_or_in_process_executor
    assert defs.resolve_implicit_global_asset_job_def().executor_def is job.executor_def  # the UI's Materialize


def test_thread_env_leaves_a_set_variable_as_it_was(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert cli.step_threads(0, 2, 16, os.environ) is None  # the user's: not overridden
    with cli.thread_env(None):
        assert os.environ["OMP_NUM_THREADS"] == "5"
    with cli.thread_env(2):
        assert os.environ["OMP_NUM_THREADS"] == "2"
    assert os.environ["OMP_NUM_THREADS"] == "5"


def _default_run(tmp_path_factory, monkeypatch, capsys, alfworld_data, *argv, threads=0, cores=4, source=SMOKE):
    """``act-pipeline run`` of the smoke profile (or ``source``) with ``threads`` on a machine of
    ``cores`` CPU cores (``os.cpu_count`` stood in for), up to the run: ``run_job`` records its
    ``jobs``, ``model_steps`` and the step processes' ``OMP_NUM_THREADS`` and fails the run. (those,
    the console's first run line)"""
    tmp = tmp_path_factory.mktemp("default_run")
    profile = tmp / "profile.yaml"
    d = yaml.safe_load(source.read_text())
    d["threads"] = threads
    profile.write_text(yaml.safe_dump(d, sort_keys=False))
    seen = {}

    def run_job(job, recon, instance, *, jobs, model_steps, **_):
        seen.update(jobs=jobs, model_steps=model_steps, omp=os.environ.get("OMP_NUM_THREADS"))
        return type("Failed", (), {"success": False})()

    monkeypatch.setattr(cli, "run_job", run_job)
    monkeypatch.setattr(cli.os, "cpu_count", lambda: cores)
    monkeypatch.setenv("ALFWORLD_DATA", str(alfworld_data))
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home(tmp_path_factory)))
    for k in ("ACT_PROFILE", "ACT_HOME"):  # _run sets them
        monkeypatch.setenv(k, os.environ.get(k, ""))
    capsys.readouterr()
    assert cli.main(["run", "--profile", str(profile), "--home", str(tmp / "home"), *argv]) == 1
    line = next(ln for ln in capsys.readouterr().out.splitlines() if " materializes " in ln)
    return seen, line


def test_default_run_takes_every_core_with_a_thread_each(tmp_path_factory, monkeypatch, capsys, alfworld_data):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    seen, line = _default_run(tmp_path_factory, monkeypatch, capsys, alfworld_data)
    assert seen["jobs"] == 4 and seen["omp"] == "1", seen  # --jobs 0: as many steps as cores, cores // jobs each
    assert "up to 4 steps at a time" in line and "1 torch thread each" in line, line
    assert "OMP_NUM_THREADS" not in os.environ  # this process's own, as it was


def test_a_gpu_profile_runs_one_model_step_at_a_time(tmp_path_factory, monkeypatch, capsys, alfworld_data):
    """A GPU profile's steps that load a model each take every GPU of the node: one at a time, whatever
    --model-steps says (the job's tag act-pipeline/device: gpu); a CPU profile keeps the number asked."""
    seen, _ = _default_run(tmp_path_factory, monkeypatch, capsys, alfworld_data, "--jobs", "2", "--model-steps", "2",
                           source=REPO / "configs" / "gpu-qwen3-8b.yaml")
    assert (seen["jobs"], seen["model_steps"]) == (2, 1), seen
    seen, _ = _default_run(tmp_path_factory, monkeypatch, capsys, alfworld_data, "--jobs", "2", "--model-steps", "2")
    assert (seen["jobs"], seen["model_steps"]) == (2, 2), seen


@pytest.mark.parametrize("argv, threads, omp, want_jobs, want_omp, text", [
    (("--jobs", "2"), 0, None, 2, "2", "2 torch threads each (OMP_NUM_THREADS: cores // steps)"),
    (("--jobs", "1"), 0, None, 1, None, "one step at a time, in this process, torch's default threads"),
    ((), 1, None, 4, None, "1 torch thread each (the profile's threads)"),
    ((), 0, "3", 4, "3", "3 torch threads each (OMP_NUM_THREADS)"),
])
def test_threads_of_the_steps(tmp_path_factory, monkeypatch, capsys, alfworld_data, argv, threads, omp, want_jobs,
                              want_omp, text):
    if omp is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
    seen, line = _default_run(tmp_path_factory, monkeypatch, capsys, alfworld_data, *argv, threads=threads)
    assert seen["jobs"] == want_jobs and seen["omp"] == want_omp, seen
    assert text in line, line


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
    assert model_steps == max(1, min(jobs, cli.memory_bytes() // cli.MODEL_STEP_BYTES))
    assert cli.concurrency(3, 0)[1] == max(1, min(3, cli.memory_bytes() // cli.MODEL_STEP_BYTES))
    assert cli.concurrency(4, 9) == (4, 4)
    assert cli.concurrency(1, 0) == (1, 1)
