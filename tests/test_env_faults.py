"""Environment faults, injected into real ALFWorld games in worker processes: a reset that hangs,
a worker that dies, a worker that grows past its memory limit, an env that raises. Each episode
is retried on a fresh worker or recorded as failed with its reason; the run goes on."""

import os

import psutil
import pytest

from act_pipeline.data.trajectories import collect_expert_trajectories
from act_pipeline.envs import alfworld as aw
from act_pipeline.envs.workers import EnvFault, WorkerLimits, WorkerPool

from .conftest import REPO

FAULTY = "tests.faults:FaultyGame"


@pytest.fixture(autouse=True)
def _importable_tests(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))


@pytest.fixture(scope="module")
def games(alfworld_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("games")
    specs = aw.discover_games(alfworld_data, "train")[1:3]
    return [{"game_id": s.game_id, "split": "train", "task_type": s.task_type,
             "gamefile": str(aw.build_game(s.path, out / str(i)))} for i, s in enumerate(specs)]


# The timeout a hung reset runs into. It also bounds opening the game (the same limit), which takes a
# few seconds and more with the suite's other worker busy: 5 s timed out an open in a clean-clone run
# of the suite on two workers, so the hangs cost HANG_S each and the opens have room.
HANG_S = 20


def _expert(games, tmp_path, fault, times, at="reset", retries=1, **limits):
    lim = WorkerLimits(**{"reset_timeout_s": 30, "step_timeout_s": 30, "max_rss_mb": 4096, **limits})
    logs = []
    kw = {"fault": fault, "state_file": str(tmp_path / "count"), "times": times, "at": at, "expert": "planner"}
    with WorkerPool(FAULTY, kw, lim, 1, logs.append) as pool:
        table, stats = collect_expert_trajectories(games, pool, 30, 2, log=logs.append, retries=retries)
        pids = [w.pid for w in pool.workers]
    return table, stats, logs, pids


@pytest.mark.parametrize("fault,at,kind,limits", [
    ("hang", "reset", "timeout", {"reset_timeout_s": HANG_S}),
    ("die", "step", "died", {}),
    ("leak", "reset", "memory", {"max_rss_mb": 400}),
    ("raise", "step", "error", {}),
])
def test_a_fault_is_retried_on_a_fresh_worker(games, tmp_path, fault, at, kind, limits):
    # one game: the fault fires in its first reset or its second step, so its retry is the proof; that
    # the games after a fault go on is the next test's (two games)
    one = games[:1]
    table, stats, logs, _ = _expert(one, tmp_path, fault, times=1, at=at, **limits)
    assert stats["won"] == 1 and not stats["failed"]  # the retry played the game to the end
    assert [f["fault"].split(":")[0] for f in stats["env_faults"]] == [kind]
    assert any("recycling the worker" in m for m in logs)
    assert any("starting the game again on a fresh worker" in m for m in logs)
    assert set(table.column("game_id").to_pylist()) == {one[0]["game_id"]}


def test_a_game_that_keeps_failing_is_recorded_and_the_rest_goes_on(games, tmp_path):
    # two faults: the first game's attempt and its retry time out; the second game is fine
    table, stats, _, _ = _expert(games, tmp_path, "hang", times=2, reset_timeout_s=HANG_S)
    assert stats["won"] == 1 and len(stats["failed"]) == 1
    failed = stats["failed"][0]
    assert failed["game_id"] == games[0]["game_id"]
    assert "timeout: reset of " in failed["reason"] and f"took longer than {HANG_S} s" in failed["reason"]
    assert set(table.column("game_id").to_pylist()) == {games[1]["game_id"]}


def test_a_killed_worker_leaves_no_process_behind(games, tmp_path):
    lim = WorkerLimits(reset_timeout_s=HANG_S, step_timeout_s=HANG_S)
    kw = {"fault": "hang", "state_file": str(tmp_path / "count"), "times": 1, "expert": None}
    with WorkerPool(FAULTY, kw, lim, 1) as pool:
        env = pool(games[0]["gamefile"])
        worker = pool.workers[0]
        pid = worker.pid
        kids = [p.pid for p in psutil.Process(pid).children(recursive=True)]
        with pytest.raises(EnvFault, match=f"timeout: reset of .*game.tw-pddl took longer than {HANG_S} s"):
            env.reset()
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert not any(psutil.pid_exists(k) for k in kids)
        with pytest.raises(EnvFault, match="lost when its worker was recycled"):
            env.step("look")
        env2 = pool(games[0]["gamefile"])  # a fresh worker
        obs, info = env2.reset()
        assert worker.pid != pid and "You are in the middle of a room" in obs
    assert worker.proc is None


def test_rollouts_retry_or_fail_an_episode_and_go_on(games, tmp_path, tiny_model):
    from act_pipeline.evaluation.metrics import rollout_success
    from act_pipeline.sampling.base import Completion, Sampler
    from act_pipeline.models import load_model

    class Look(Sampler):
        # the random tiny model writes nothing parsable, and an unparsable step never reaches the
        # game (so no step fault would fire): a scripted policy that always looks
        def generate(self, prompts, params, progress=None):
            return [[Completion("look</action>")] * params.n for _ in prompts]

    _, tok = load_model(tiny_model)  # its chat template renders the prompts
    sampler = Look()
    lim = WorkerLimits(reset_timeout_s=30, step_timeout_s=30)
    # the worker dies at the second step of an episode; with 2 workers the two games are on
    # different workers and only the game whose worker died restarts
    kw = {"fault": "die", "state_file": str(tmp_path / "count"), "times": 1, "at": "step"}
    logs = []
    with WorkerPool(FAULTY, kw, lim, 2, logs.append) as pool:
        m, eps = rollout_success(sampler, tok, games, "valid_seen", 0, 3, pool, 2, log=logs.append, retries=1)
    assert m.n == 2 and m.detail["episode_restarts"] == 1 and m.detail["env_failures"] == []
    assert [ep.steps for ep in eps] == [3, 3]  # the restarted episode still played its 3 steps
    # every attempt dies: both episodes fail with the reason, N stays 2
    kw = dict(kw, state_file=str(tmp_path / "count2"), times=99)
    with WorkerPool(FAULTY, kw, lim, 2) as pool:
        m, eps = rollout_success(sampler, tok, games, "valid_seen", 0, 3, pool, 2, log=logs.append, retries=1)
    assert m.n == 2 and m.value == 0.0 and len(m.detail["env_failures"]) == 2
    assert all("died: the worker died during step " in f["reason"] for f in m.detail["env_failures"])
