"""Fault injection around real environments, loaded inside env worker processes by tests.

``FaultyGame`` wraps a real :class:`AlfworldGame` and, the first ``times`` times ``at`` (reset or
step) is called (counted across worker processes in ``state_file``), injects ``fault``:
``hang`` (sleep far past any timeout, as a planner stuck on a big scene), ``die`` (the worker
process exits), ``leak`` (grow by ``leak_mb`` of resident memory), ``raise`` (the env raises).
"""

import os
import time
from pathlib import Path

from act_pipeline.envs.alfworld import AlfworldGame

_HOLD = []  # leaked memory stays referenced


def _trigger(state_file: str, times: int) -> bool:
    p = Path(state_file)
    n = int(p.read_text()) if p.exists() else 0
    if n >= times:
        return False
    p.write_text(str(n + 1))
    return True


class FaultyGame:
    def __init__(self, gamefile, fault, state_file, times=1, at="reset", leak_mb=600, expert=None):
        self.game = AlfworldGame(gamefile, expert)
        self.fault, self.state_file, self.times, self.at, self.leak_mb = fault, state_file, times, at, leak_mb
        self.steps = 0

    @property
    def task(self):
        return self.game.task

    def _maybe(self, where):
        if where != self.at or not _trigger(self.state_file, self.times):
            return
        if self.fault == "hang":
            time.sleep(3600)
        elif self.fault == "die":
            os._exit(7)
        elif self.fault == "leak":
            block = bytearray(self.leak_mb * 2**20)
            for i in range(0, len(block), 4096):  # touch every page: resident, not just reserved
                block[i] = 1
            _HOLD.append(block)
        elif self.fault == "raise":
            raise RuntimeError("injected environment error")

    def reset(self):
        self._maybe("reset")
        return self.game.reset()

    def step(self, command):
        self.steps += 1
        if self.steps == 2:
            self._maybe("step")
        return self.game.step(command)

    def close(self):
        self.game.close()


class JvmKillingTask:
    """A real ScienceWorld task whose JVM is killed (SIGKILL) before its ``at_step``-th step, the
    first ``times`` times (counted in ``state_file``): ScienceWorld's server dying mid-episode."""

    def __init__(self, spec, state_file, times=1, at_step=2, expert=True):
        from act_pipeline.envs.scienceworld import ScienceWorldTask

        self.inner = ScienceWorldTask(spec, expert=expert)
        self.state_file, self.times, self.at_step, self.steps = state_file, times, at_step, 0

    @property
    def task(self):
        return self.inner.task

    def reset(self):
        self.steps = 0
        return self.inner.reset()

    def step(self, command):
        self.steps += 1
        if self.steps == self.at_step and _trigger(self.state_file, self.times):
            import psutil

            for p in psutil.Process().children(recursive=True):
                if "java" in p.name():
                    p.kill()
                    p.wait(5)
        return self.inner.step(command)

    def close(self):
        try:
            self.inner.close()
        except Exception:  # noqa: BLE001 - the JVM may be gone
            pass
