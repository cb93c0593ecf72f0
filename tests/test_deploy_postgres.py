"""The production instance, live: deploy/dagster.yaml on a real PostgreSQL (tests/postgres.py: a
throwaway cluster on 127.0.0.1) with `dagster-daemon` running its run queue and sensors.

* Storage (seconds): the instance of deploy/dagster.yaml, only its port changed to the cluster's,
  keeps runs, event logs and the pools' limits in Postgres; read back with a fresh instance and psql.
* The run queue (a pipeline run): the smoke profile's graph launched with `dagster job launch` is
  enqueued by the QueuedRunCoordinator with deploy/dagster.yaml's limits, dequeued and launched by
  the daemon, and succeeds; its run, events and every asset's materialization are read back from
  Postgres; the steps of the `gpu` pool never overlap.
* The retraining loop (a second run): `expert_data_sensor` on under the daemon. An invalid file in
  the landing folder gets its `.error.txt` and no run; a valid one makes a sensor tick, one run and
  new ACT / IL checkpoints whose `act-pipeline lineage` names the file's sha256; the same file
  dropped again makes no run.

ScienceWorld is off in these runs (the smoke profile otherwise): what is under test is the instance,
the queue and the daemon, and the smoke run test covers ScienceWorld's chain. Every process is
stopped with its process group, also on failure; every wait has a deadline.
"""

import hashlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from . import postgres
from .conftest import REPO, SMOKE

DEPLOY = REPO / "deploy" / "dagster.yaml"
BIN = Path(sys.executable).parent  # this environment's `dagster`, `dagster-daemon`
JOB, SENSOR = "act_pipeline_job", "expert_data_sensor"
RUN_DEADLINE_S = 45 * 60  # a pipeline run (measured: see README, Deployment)
TICK_DEADLINE_S = 4 * 60  # the sensor ticks every 60 s (minimum_interval_seconds)
# pytest-timeout past the deadlines a test and its fixtures set themselves (the daemon's start, a pipeline
# run in the fixture and one in the retraining test, the sensor's ticks), so that those report first, with
# the daemon's log; the suite's 3600 s could cut a slow machine's retraining test short of them
pytestmark = [pytest.mark.postgres, pytest.mark.timeout(2 * RUN_DEADLINE_S + 4 * TICK_DEADLINE_S + 600)]


def _dagster_process(args: list[str], env: dict, out) -> subprocess.Popen:
    """A Dagster command from the repo root in its own process group, SIGINT at its default: Dagster
    gives SIGTERM SIGINT's handler, and a test runner started with `&` from a script passes SIGINT
    on ignored, so `stop_group`'s SIGTERM would only end it by the SIGKILL after the grace period."""
    return subprocess.Popen([str(BIN / args[0]), *args[1:], "-w", "workspace.yaml"], cwd=REPO, env=env,
                            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _tail(path: Path, n: int = 80) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else "(no log)"


@pytest.fixture(scope="module")
def pg():
    if importlib.util.find_spec("dagster_postgres") is None:
        postgres.unavailable("dagster-postgres is not installed (pip install -e '.[deploy]')")
    with postgres.running() as db:
        yield db


@pytest.fixture(scope="module")
def deployment(pg, tmp_path_factory):
    """DAGSTER_HOME holding deploy/dagster.yaml with the cluster's port, and the variables that file
    reads (set in this process too, for the instances the tests open)."""
    home = tmp_path_factory.mktemp("dagster_home")
    cfg = yaml.safe_load(DEPLOY.read_text())
    cfg["storage"]["postgres"]["postgres_db"]["port"] = pg.port
    (home / "dagster.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    env = {"DAGSTER_HOME": str(home), **pg.env(), "DAGSTER_ARTIFACTS_DIR": str(home / "artifacts"),
           "DAGSTER_COMPUTE_LOGS_DIR": str(home / "compute_logs")}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        yield home, env


def test_without_postgresql_these_tests_fail_under_ci_and_skip_elsewhere(monkeypatch):
    monkeypatch.setattr(postgres, "bindir", lambda: None)  # as on a machine without the package
    for ci, outcome in (("1", pytest.fail.Exception), ("", pytest.skip.Exception)):
        monkeypatch.setenv("CI", ci)
        with pytest.raises(BaseException) as e:  # (a skip or a failure escaping here would end this test as one)
            with postgres.running():
                pass
        assert e.type is outcome and "PostgreSQL is not installed" in str(e.value), (ci, e.type)


def test_the_deploy_instance_keeps_runs_and_materializations_in_postgres(pg, deployment):
    import dagster as dg
    from dagster._core.run_coordinator import QueuedRunCoordinator

    home, _ = deployment
    deploy, written = yaml.safe_load(DEPLOY.read_text()), yaml.safe_load((home / "dagster.yaml").read_text())
    assert written["storage"]["postgres"]["postgres_db"].pop("port") == pg.port
    deploy["storage"]["postgres"]["postgres_db"].pop("port")
    assert written == deploy  # deploy/dagster.yaml itself, but for the port

    @dg.asset(name="pg_probe", pool="gpu")
    def probe() -> int:
        return 1

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert {type(s).__name__ for s in (instance.run_storage, instance.event_log_storage,
                                           instance.schedule_storage)} == {
            "PostgresRunStorage", "PostgresEventLogStorage", "PostgresScheduleStorage"}
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        queue = instance.get_concurrency_config().run_queue_config
        assert queue.max_concurrent_runs == deploy["concurrency"]["runs"]["max_concurrent_runs"]
        assert list(queue.tag_concurrency_limits) == deploy["concurrency"]["runs"]["tag_concurrency_limits"]
        result = dg.materialize([probe], instance=instance)
    assert result.success
    with dg.DagsterInstance.from_config(str(home)) as fresh:  # read back by another instance
        assert fresh.get_run_by_id(result.run_id).status == dg.DagsterRunStatus.SUCCESS
        assert fresh.get_latest_materialization_event(dg.AssetKey("pg_probe")).run_id == result.run_id
    run = str(uuid.UUID(result.run_id))
    assert pg.psql(f"SELECT status FROM runs WHERE run_id = '{run}'") == [["SUCCESS"]]
    assert pg.psql(f"SELECT asset_key FROM event_logs WHERE run_id = '{run}' "
                   "AND dagster_event_type = 'ASSET_MATERIALIZATION'") == [['["pg_probe"]']]
    # the pool the GPU steps use has deploy/dagster.yaml's limit, in Postgres
    assert pg.psql("SELECT concurrency_key, \"limit\" FROM concurrency_limits") == [
        ["gpu", str(deploy["concurrency"]["pools"]["default_limit"])]]


@dataclass
class Daemon:
    proc: subprocess.Popen
    env: dict
    home: Path  # DAGSTER_HOME
    act_home: Path
    profile: Path
    log: Path

    def instance(self):
        import dagster as dg

        return dg.DagsterInstance.from_config(str(self.home))

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            pytest.fail(f"dagster-daemon exited ({self.proc.returncode}); its log:\n{_tail(self.log)}")

    def until(self, what: str, deadline_s: float, probe):
        """``probe()``'s first truthy value, polled every 2 s for at most ``deadline_s``."""
        end = time.time() + deadline_s
        while True:
            self.check_alive()
            got = probe()
            if got:
                return got
            if time.time() > end:
                pytest.fail(f"{what}: not within {deadline_s:.0f} s; the daemon's log:\n{_tail(self.log)}")
            time.sleep(2)

    def dagster(self, *args: str, timeout: float = 300) -> str:
        """``dagster <args>`` against the instance, in its own process group (it starts a code server)."""
        out = self.log.with_name(f"dagster-{args[0]}-{args[1]}.log")
        with open(out, "wb") as f:
            proc = _dagster_process(["dagster", *args], self.env, f)
        try:
            rc = proc.wait(timeout=timeout)
        finally:
            postgres.stop_group(proc, signal.SIGTERM, grace=10)
        assert rc == 0, f"dagster {' '.join(args)} exited {rc}:\n{_tail(out)}"
        return out.read_text()

    def wait_run(self, run_id: str, deadline_s: float = RUN_DEADLINE_S):
        """The run once it has ended; a failure names its errors and shows the daemon's log."""
        import dagster as dg

        ended = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
        with self.instance() as inst:
            run = self.until(f"run {run_id} ends", deadline_s,
                             lambda: (r := inst.get_run_by_id(run_id)) is not None and r.status in ended and r)
            if run.status != dg.DagsterRunStatus.SUCCESS:
                errors = [e.dagster_event.event_specific_data.error.to_string() for e in inst.all_logs(run_id)
                          if e.dagster_event and e.dagster_event.is_failure
                          and getattr(e.dagster_event.event_specific_data, "error", None)]
                pytest.fail(f"run {run_id}: {run.status.value}\n" + "\n".join(errors[:3])
                            + f"\nthe daemon's log:\n{_tail(self.log)}")
        return run


@pytest.fixture(scope="module")
def daemon(deployment, alfworld_data, tmp_path_factory):
    """`dagster-daemon run` on the deploy instance (its own process group), every daemon healthy."""
    home, deploy_env = deployment
    work = tmp_path_factory.mktemp("daemon")
    profile = work / "smoke-alfworld.yaml"
    data = yaml.safe_load(SMOKE.read_text())
    data["scienceworld"]["enabled"] = False
    profile.write_text(yaml.safe_dump(data, sort_keys=False))
    act_home = work / "act_home"
    # PYTHONPATH: the code location, run workers and steps import this checkout's act_pipeline
    env = dict(os.environ, **deploy_env, ACT_PROFILE=str(profile), ACT_HOME=str(act_home),
               ALFWORLD_DATA=str(alfworld_data), HF_HUB_OFFLINE="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    log = work / "daemon.log"
    with open(log, "wb") as f:
        proc = _dagster_process(["dagster-daemon", "run"], env, f)  # stopped with its group, all it started
    d = Daemon(proc, env, home, act_home, profile, log)
    try:
        with d.instance() as inst:
            statuses = d.until("every daemon of the instance reports healthy", 300,
                               lambda: (s := inst.get_daemon_statuses()) and all(x.healthy for x in s.values()) and s)
        assert {"QUEUED_RUN_COORDINATOR", "SENSOR"} <= set(statuses)
        yield d
    finally:
        postgres.stop_group(proc, signal.SIGTERM)


@pytest.fixture(scope="module")
def smoke_run(daemon) -> str:
    """The whole graph (ALFWorld smoke profile) through the queue: `dagster job launch`, then the daemon."""
    run_id = str(uuid.uuid4())
    daemon.dagster("job", "launch", "-j", JOB, "--run-id", run_id)
    daemon.wait_run(run_id)
    return run_id


# `slow`: with the smoke run it needs, 3.6 min for both on the 2-core Xeon (passed 2026-12-04; README Deployment);
# run it with `scripts/test.sh -m postgres tests/test_deploy_postgres.py`
@pytest.mark.slow
def test_a_pipeline_run_goes_through_the_queue_and_lands_in_postgres(pg, daemon, smoke_run):
    import dagster as dg

    from act_pipeline.definitions import make_definitions

    graph = make_definitions(str(daemon.profile), str(daemon.act_home)).resolve_asset_graph()
    keys = graph.materializable_asset_keys
    with daemon.instance() as fresh:
        run = fresh.get_run_by_id(smoke_run)
        assert run.status == dg.DagsterRunStatus.SUCCESS and run.tags["act-pipeline/device"] == "cpu"
        for key in keys:  # every asset of the graph, materialized by this run
            ev = fresh.get_latest_materialization_event(key)
            assert ev is not None and ev.run_id == smoke_run, key.to_user_string()
        steps = {}
        for e in fresh.all_logs(smoke_run, of_type={dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS}):
            steps.setdefault(e.step_key, []).append(e.timestamp)
    # the same, in Postgres's own words: the run's row, its queue events in order, its materializations
    run_id = str(uuid.UUID(smoke_run))
    assert pg.psql(f"SELECT status FROM runs WHERE run_id = '{run_id}'") == [["SUCCESS"]]
    # the queue's lifecycle as the daemon writes it (observed 2026-12-01: no RUN_DEQUEUED event; the
    # daemon's launch of a queued run is its RUN_STARTING)
    lifecycle = [t.value for t in (dg.DagsterEventType.RUN_ENQUEUED, dg.DagsterEventType.RUN_STARTING,
                                   dg.DagsterEventType.RUN_START, dg.DagsterEventType.RUN_SUCCESS)]
    listed = ", ".join(f"'{t}'" for t in lifecycle)
    assert [r[0] for r in pg.psql(f"SELECT dagster_event_type FROM event_logs WHERE run_id = '{run_id}' "
                                  f"AND dagster_event_type IN ({listed}) ORDER BY id")] == lifecycle
    assert pg.psql(f"SELECT count(DISTINCT asset_key) FROM event_logs WHERE run_id = '{run_id}' "
                   "AND dagster_event_type = 'ASSET_MATERIALIZATION'") == [[str(len(keys))]]
    # the `gpu` pool (limit 1 in deploy/dagster.yaml): its steps ran one at a time
    ops = [n.assets_def.op.name for n in map(graph.get, keys) if "gpu" in n.pools]
    pooled = {op: steps.get(op, []) for op in ops}
    assert len(pooled) >= 7 and all(len(t) == 2 for t in pooled.values()), pooled  # one start, one success each
    spans = sorted(pooled.values())
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), pooled


def _import_rows(act_home: Path) -> list[dict]:
    """A played training game of the smoke run as a user's JSONL import: the same steps, a new game id."""
    import pyarrow.parquet as pq

    manifest = json.loads((act_home / "manifests" / "alfworld__expert_trajectories.json").read_text())
    steps = [r for r in pq.read_table(manifest["uri"]).to_pylist() if r["split"] == "train" and r["won"]]
    game = steps[0]["game_id"]
    return [{"game_id": f"{game}-imported", "history": r["history"] or [], **{k: r[k] for k in (
        "task_type", "task", "step", "observation", "admissible", "expert_action", "won")}}
            for r in steps if r["game_id"] == game]


def _write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return hashlib.sha256(path.read_bytes()).hexdigest()


# `slow`: with the smoke run it needs, 3.6 min for both on the 2-core Xeon (passed 2026-12-04; README Deployment);
# run it with `scripts/test.sh -m postgres tests/test_deploy_postgres.py`
@pytest.mark.slow
def test_an_expert_file_in_the_landing_folder_retrains_through_the_daemon(pg, daemon, smoke_run, capsys):
    import dagster as dg

    from act_pipeline.cli import main

    def last_tick() -> int:
        return int(pg.psql("SELECT coalesce(max(id), 0) FROM job_ticks")[0][0])

    def next_tick(after: int) -> dict:
        """The first finished tick of the sensor created after tick ``after`` (its serialized body)."""
        def probe():
            for tick_id, status, body in pg.psql(f"SELECT id, status, tick_body FROM job_ticks WHERE id > {after} "
                                                 "AND type = 'SENSOR' ORDER BY id"):
                tick = json.loads(body)
                if tick["job_name"] == SENSOR:
                    return status != "STARTED" and dict(tick, status=status)
            return None
        return daemon.until(f"a tick of {SENSOR} after tick {after}", TICK_DEADLINE_S, probe)

    landing = daemon.act_home / "landing" / "expert"
    landing.mkdir(parents=True, exist_ok=True)
    rows = _import_rows(daemon.act_home)
    # an invalid file: its .error.txt, no run
    _write_jsonl(landing / "bad.jsonl", [dict(rows[0], expert_action="dance")])
    before = last_tick()
    daemon.dagster("sensor", "start", SENSOR)
    tick = next_tick(before)
    assert tick["status"] == "SKIPPED" and not tick["run_ids"], tick
    assert "bad.jsonl:1: field `expert_action`" in (landing / "bad.jsonl.error.txt").read_text()
    # a valid file: a tick, one run
    digest = _write_jsonl(landing / "batch.jsonl", rows)
    tick = next_tick(last_tick())
    assert tick["status"] == "SUCCESS" and len(tick["run_ids"]) == 1, tick
    run_id = tick["run_ids"][0]
    # the same file dropped again (another name, the same bytes): the next tick runs nothing
    shutil.copyfile(landing / "batch.jsonl", landing / "batch-again.jsonl")
    tick = next_tick(last_tick())
    assert tick["status"] == "SKIPPED" and not tick["run_ids"], tick
    daemon.wait_run(run_id)

    # read back from Postgres: one run by the sensor, for this file
    assert pg.psql(f"SELECT run_id FROM run_tags WHERE key = 'dagster/sensor_name' AND value = '{SENSOR}'") == [
        [run_id]]
    with daemon.instance() as fresh:
        run = fresh.get_run_by_id(run_id)
        assert run.status == dg.DagsterRunStatus.SUCCESS and run.tags["act/expert_files"] == digest[:12]
        checkpoints = {}
        for key in ("alfworld/imported_expert_steps", "alfworld/act_checkpoint", "alfworld/il_baseline",
                    "alfworld/il_policy"):
            ev = fresh.get_latest_materialization_event(dg.AssetKey.from_user_string(key))
            assert ev.run_id == run_id, key  # new, made by the sensor's run
            checkpoints[key] = ev.asset_materialization.metadata["uri"].value
    assert sorted(p.name for p in (daemon.act_home / "expert_imports").glob("*.jsonl")) == [f"{digest}.jsonl"]
    assert not list(landing.glob("batch*.error.txt"))
    # the new checkpoints' lineage names the file's digest
    for key in ("alfworld/act_checkpoint", "alfworld/il_baseline", "alfworld/il_policy"):
        assert main(["lineage", checkpoints[key]]) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"{key}: {checkpoints[key]}"), out
        assert f"<- file sha256:{digest}  ({len(rows)} rows" in out, out
