"""Environments in their own processes: timeouts, a memory limit, recycling.

An environment (an ALFWorld game, a ScienceWorld task) lives in a worker process started as
``python -m act_pipeline.envs.workers`` in its own session, so whatever it starts (fast-downward,
ScienceWorld's JVM) dies with it. Requests and replies are JSON lines over pipes (no pickle).

Every call has a timeout (``reset_timeout_s`` for opening and resetting a game — the planner can
take minutes on a big scene — and ``step_timeout_s`` for a step). After every call the resident
memory of the worker and everything it started is checked against ``max_rss_mb``. A call that
times out, a worker that dies, a worker past its limit, or an environment that raises becomes an
:class:`EnvFault` naming what happened; the worker is killed and a fresh one takes its place on the
next call. Callers decide what a fault means for an episode (``collect_expert_trajectories`` and
``rollout_success`` retry the episode ``retries`` times on a fresh worker, then record it as
failed with the reason) — the run goes on.

A worker hosts one or more environments (``WorkerPool`` spreads games round-robin over its
workers, kept alive between games so imports and JVM start-up are paid once); a fault loses every
environment on that worker, and each of them raises :class:`EnvFault` on its next call. A pool is
not thread-safe: threads playing games at once each get a pool of their own (``game_env_set``).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import select
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

Log = Callable[[str], None]


@dataclass
class WorkerLimits:
    reset_timeout_s: float = 300.0
    step_timeout_s: float = 60.0
    max_rss_mb: float = 4096.0
    retries: int = 1  # how often an episode that hit a fault is started again before it counts as failed


class EnvFault(RuntimeError):
    """An environment call that did not complete: ``kind`` is timeout, died, memory or error."""

    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind = kind


def resolve_factory(spec: str):
    """The callable a ``"module:callable"`` spec names (what a worker opens its envs with)."""
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise ValueError(f"an environment factory is 'module:callable', got {spec!r}")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MiB (0 if it is gone)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def _wait_gone(procs, timeout_s: float = 10.0) -> None:
    """Wait (at most ``timeout_s``) until each killed process has exited: gone, or a zombie its
    new parent has not reaped yet. A JVM takes a moment to tear down after SIGKILL."""
    import psutil

    deadline = time.monotonic() + timeout_s
    for p in procs:
        while time.monotonic() < deadline:
            try:
                if p.status() == psutil.STATUS_ZOMBIE:
                    break
            except psutil.NoSuchProcess:
                break
            time.sleep(0.02)


class EnvWorker:
    """One worker process; ``call`` sends a request and waits for its reply within a timeout."""

    def __init__(self, limits: WorkerLimits, name: str = "env-worker", log: Log = lambda m: None):
        self.limits = limits
        self.name = name
        self.log = log
        self.proc: subprocess.Popen | None = None
        self.generation = 0  # bumped whenever a fresh process takes over; envs opened before are lost
        self._buf = b""
        self._next_id = 0

    # -- process life
    def _ensure(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        if self.proc is not None:
            self.kill()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "act_pipeline.envs.workers"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None,
            start_new_session=True,  # its own process group: killing it kills what it started
        )
        self._buf = b""
        self.generation += 1

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def kill(self) -> None:
        """Kill the worker and everything it started (its process group and any stragglers)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        import psutil

        try:
            kids = psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            kids = []
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for k in kids:
            try:
                k.kill()
            except psutil.NoSuchProcess:
                pass
        proc.wait()
        _wait_gone(kids)
        for stream in (proc.stdin, proc.stdout):
            try:
                stream.close()
            except OSError:
                pass

    def shutdown(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self._send({"op": "exit"})
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()

    # -- requests
    def _send(self, msg: dict) -> None:
        self.proc.stdin.write((json.dumps(msg) + "\n").encode())
        self.proc.stdin.flush()

    def _readline(self, timeout: float) -> bytes | None:
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:  # the worker closed its end: it died
                return b""
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def _fault(self, kind: str, message: str) -> EnvFault:
        self.log(f"{self.name}: {kind}: {message}; recycling the worker")
        self.kill()
        return EnvFault(kind, message)

    def call(self, op: str, timeout: float, label: str = "", **fields):
        """Send ``op`` and return its result; ``label`` names the game in fault messages."""
        self._ensure()
        what = " ".join(x for x in (op, repr(fields["command"]) if "command" in fields else "",
                                    f"of {label}" if label else "") if x)
        try:
            self._send({"op": op, **fields})
        except OSError:
            raise self._fault("died", f"the worker was gone before {what}") from None
        line = self._readline(timeout)
        if line is None:
            raise self._fault("timeout", f"{what} took longer than {timeout:g} s")
        if not line:
            code = self.proc.wait()
            raise self._fault("died", f"the worker died during {what} (exit code {code})")
        reply = json.loads(line)
        rss = tree_rss_mb(self.proc.pid)
        if rss > self.limits.max_rss_mb:
            raise self._fault("memory", f"the worker grew to {rss:.0f} MiB (limit {self.limits.max_rss_mb:g} MiB) "
                                        f"during {what}")
        if not reply["ok"]:
            raise self._fault("error", f"{what}: {reply['error']}")
        return reply["result"]


class RemoteEnv:
    """An environment living in an :class:`EnvWorker`, with the in-process interface:
    ``reset() -> (obs, info)``, ``step(cmd) -> (obs, done, info)``, ``task``, ``close()``."""

    def __init__(self, worker: EnvWorker, env_id: str, factory: str, args: list, kwargs: dict):
        self.worker = worker
        self.env_id = env_id
        self.task = ""
        self.label = str(args[0]) if args else env_id
        self.worker.call("open", worker.limits.reset_timeout_s, self.label, env_id=env_id, factory=factory,
                         args=list(args), kwargs=dict(kwargs))
        self.generation = worker.generation

    def _call(self, op: str, timeout: float, **fields):
        if self.worker.generation != self.generation or self.worker.proc is None:
            raise EnvFault("died", f"{self.label} was lost when its worker was recycled")
        out = self.worker.call(op, timeout, self.label, env_id=self.env_id, **fields)
        self.task = out.get("task", self.task) if isinstance(out, dict) else self.task
        return out

    def reset(self) -> tuple[str, dict]:
        out = self._call("reset", self.worker.limits.reset_timeout_s)
        return out["obs"], out["info"]

    def step(self, command: str) -> tuple[str, bool, dict]:
        out = self._call("step", self.worker.limits.step_timeout_s, command=command)
        return out["obs"], out["done"], out["info"]

    def close(self) -> None:
        if self.worker.generation == self.generation and self.worker.proc is not None:
            try:
                self.worker.call("close", self.worker.limits.step_timeout_s, self.label, env_id=self.env_id)
            except EnvFault:
                pass


class WorkerPool:
    """``size`` workers, kept alive; ``env(*args)`` opens ``factory(*args, **kwargs)`` on the next
    worker round-robin. Use as a context manager (workers are shut down on exit)."""

    def __init__(self, factory: str, kwargs: dict | None = None, limits: WorkerLimits | None = None,
                 size: int = 1, log: Log = lambda m: None, name: str = "env-worker"):
        self.factory = factory
        self.kwargs = dict(kwargs or {})
        self.limits = limits or WorkerLimits()
        self.workers = [EnvWorker(self.limits, f"{name}-{i}", log) for i in range(max(1, size))]
        self._n = 0

    def env(self, *args) -> RemoteEnv:
        worker = self.workers[self._n % len(self.workers)]
        self._n += 1
        return RemoteEnv(worker, f"env{self._n}", self.factory, list(args), self.kwargs)

    def __call__(self, *args) -> RemoteEnv:  # usable wherever a ``make_env(gamefile)`` is expected
        return self.env(*args)

    def close(self) -> None:
        for w in self.workers:
            w.shutdown()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ----------------------------------------------------------------------------- the worker side


def _serve() -> None:
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever the environment prints goes to stderr, never into the protocol
    envs: dict = {}
    for line in sys.stdin:
        msg = json.loads(line)
        op = msg.get("op")
        try:
            result = None
            if op == "exit":
                break
            if op == "open":
                old = envs.pop(msg["env_id"], None)
                if old is not None and hasattr(old, "close"):
                    old.close()
                envs[msg["env_id"]] = resolve_factory(msg["factory"])(*msg.get("args", []), **msg.get("kwargs", {}))
            elif op == "reset":
                env = envs[msg["env_id"]]
                obs, info = env.reset()
                result = {"obs": obs, "info": info, "task": env.task}
            elif op == "step":
                env = envs[msg["env_id"]]
                obs, done, info = env.step(msg["command"])
                result = {"obs": obs, "done": bool(done), "info": info, "task": env.task}
            elif op == "close":
                env = envs.pop(msg["env_id"], None)
                if env is not None and hasattr(env, "close"):
                    env.close()
            else:
                raise ValueError(f"unknown request {op!r}")
            reply = {"ok": True, "result": result}
        except Exception as e:  # noqa: BLE001 - reported to the parent, which recycles this worker
            reply = {"ok": False, "error": f"{type(e).__name__}: {str(e)[:500]}",
                     "traceback": traceback.format_exc()[-2000:]}
        proto.write(json.dumps(reply) + "\n")
    for env in envs.values():
        try:
            env.close()
        except Exception:  # noqa: BLE001 - exiting anyway
            pass


if __name__ == "__main__":
    _serve()


@contextlib.contextmanager
def game_envs(envs, factory: str, kwargs: dict, workers: int, log=print):
    """``make_game(gamefile)``: ``factory`` ("module:Class") games in worker processes (timeouts,
    memory limit, recycling: the profile's ``envs:`` section, ``envs``), or in this process with
    ``envs.in_process``."""
    if envs.in_process:
        cls = resolve_factory(factory)
        yield lambda f: cls(f, **kwargs)
        return
    limits = WorkerLimits(envs.reset_timeout_s, envs.step_timeout_s, envs.max_rss_mb, envs.retries)
    with WorkerPool(factory, kwargs, limits, workers, log) as pool:
        yield pool


@contextlib.contextmanager
def game_env_set(envs, factory: str, kwargs: dict, n: int, log=print):
    """``n`` independent ``make_game`` factories, each its own one-worker pool (like
    :func:`game_envs` with one worker), for ``n`` threads playing games at once: a pool (and an
    :class:`EnvWorker`) is used by one thread only. With ``envs.in_process`` a single factory (games
    in this process are not played from several threads)."""
    if envs.in_process:
        with game_envs(envs, factory, kwargs, 1, log) as make_game:
            yield [make_game]
        return
    limits = WorkerLimits(envs.reset_timeout_s, envs.step_timeout_s, envs.max_rss_mb, envs.retries)
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(WorkerPool(factory, kwargs, limits, 1, log, name=f"env-worker-{i}"))
               for i in range(max(1, n))]
