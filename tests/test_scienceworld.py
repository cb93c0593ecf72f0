"""ScienceWorld through the shared env interface: gold-path expert trajectories in worker
processes, and a JVM that dies mid-episode (the episode is retried; no java process is left)."""

import os

import psutil
import pytest

from act_pipeline.data.trajectories import collect_expert_trajectories
from act_pipeline.envs.scienceworld import ScienceWorldTask, list_games, parse_spec
from act_pipeline.envs.workers import WorkerLimits, WorkerPool

from .conftest import REPO

GAME = {"game_id": "boil/0", "split": "train", "task_type": "boil", "gamefile": "boil/0"}


@pytest.fixture(autouse=True)
def _importable_tests(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))


def test_spec_and_splits():
    assert parse_spec("boil/3") == ("boil", 3)
    with pytest.raises(ValueError, match="'<task name>/<variation>'"):
        parse_spec("boil")
    rows = list_games("test", ["boil"], per_task=2)
    assert len(rows) == 2 and all(r["split"] == "test" and r["task_type"] == "boil" for r in rows)
    train = {r["game_id"] for r in list_games("train", ["boil"], per_task=50)}
    assert not train & {r["game_id"] for r in rows}  # ScienceWorld's train and test variations differ


def test_gold_path_expert_in_a_worker_and_a_dying_jvm(tmp_path):
    lim = WorkerLimits(reset_timeout_s=120, step_timeout_s=60, max_rss_mb=4096)
    kw = {"state_file": str(tmp_path / "count"), "times": 1, "at_step": 3}
    logs = []
    before = _java_pids()
    with WorkerPool("tests.faults:JvmKillingTask", kw, lim, 1, logs.append) as pool:
        table, stats = collect_expert_trajectories([GAME], pool, 100, 2, log=logs.append, retries=1, retry_unwon=2)
        env = pool("boil/1")  # a live JVM under the worker ...
        env.reset()
        jvm = _java_pids() - before
        assert len(jvm) == 1
        pool.workers[0].kill()  # ... dies with its worker (what a timeout or memory fault does)
        assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in jvm)
    assert stats["won"] == 1 and not stats["failed"], stats
    fault = stats["env_faults"][0]["fault"]
    assert fault.startswith(("error:", "died:")) and "step" in fault, fault
    rows = table.to_pylist()
    assert rows[0]["task"].startswith("Your task is to boil")
    assert [r["step"] for r in rows] == list(range(len(rows))) and all(r["won"] for r in rows)
    assert all(r["admissible"] for r in rows)
    assert not _java_pids() - before  # shutting the pool down leaves no JVM behind


def _java_pids() -> set[int]:
    return {p.pid for p in psutil.process_iter(["name", "status"])
            if "java" in (p.info["name"] or "") and p.info["status"] != psutil.STATUS_ZOMBIE}


def test_in_process_task_interface():
    env = ScienceWorldTask("boil/0")
    try:
        obs, info = env.reset()
        assert "This room is called" in obs and info["expert_action"] and not info["won"]
        obs, done, info = env.step(info["expert_action"])
        assert isinstance(obs, str) and info["admissible"] and env.t == 1
    finally:
        env.close()
