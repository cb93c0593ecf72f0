"""ScienceWorld through the ``scienceworld`` package (its JVM runs as a child of this process).

Same interface as :class:`act_pipeline.envs.alfworld.AlfworldGame` — ``reset() -> (obs, info)``,
``step(cmd) -> (obs, done, info)``, ``task``, ``close()``; ``info`` has ``won``, ``admissible``
and (with ``expert=True``) ``expert_action`` — so expert roll-outs, sampling, pairs and
evaluation work unchanged, in this process or in an env worker
(``WorkerPool("act_pipeline.envs.scienceworld:ScienceWorldTask", ...)``).

A game is named by a spec ``"<task name>/<variation>"`` (e.g. ``"boil/3"``); the expert follows
the gold action sequence that ScienceWorld generates at load (``generateGoldPath=True``). Gold
paths of some tasks are stochastic: ``collect_expert_trajectories(..., retry_unwon=n)`` plays a
game again until the expert wins, recording the games that never do.
"""

from __future__ import annotations

SPLITS = ("train", "dev", "test")


def parse_spec(spec: str) -> tuple[str, int]:
    name, _, var = str(spec).rpartition("/")
    if not name or not var.isdigit():
        raise ValueError(f"a ScienceWorld game is '<task name>/<variation>', got {spec!r}")
    return name, int(var)


class ScienceWorldTask:
    """One task variation. ``simplification`` is ScienceWorld's simplification string
    (``"easy"`` is what most agent papers use); ``step_limit`` is the env's own step limit."""

    def __init__(self, spec: str, expert: bool = True, simplification: str = "easy", step_limit: int = 100):
        from scienceworld import ScienceWorldEnv

        self.spec = spec
        self.task_name, self.variation = parse_spec(spec)
        self.expert = expert
        self.env = ScienceWorldEnv("", envStepLimit=step_limit)
        names = self.env.get_task_names()
        if self.task_name not in names:
            self.env.close()
            raise ValueError(f"{spec}: unknown ScienceWorld task {self.task_name!r} (known: {', '.join(names)})")
        self.env.load(self.task_name, self.variation, simplification, generateGoldPath=expert)
        self.task = ""
        self.gold: list[str] = []
        self.t = 0

    def reset(self) -> tuple[str, dict]:
        obs, info = self.env.reset()
        self.task = self.env.get_task_description()
        self.gold = list(self.env.get_gold_action_sequence()) if self.expert else []
        self.t = 0
        return obs.strip(), self._info(info)

    def step(self, command: str) -> tuple[str, bool, dict]:
        obs, _reward, done, info = self.env.step(command)
        self.t += 1
        out = self._info(info)
        return obs.strip(), bool(done) or out["won"], out

    def _info(self, info: dict) -> dict:
        out = {"won": int(info.get("score", 0)) >= 100, "score": int(info.get("score", 0)),
               "admissible": sorted(set(info.get("valid") or []))}
        if self.expert:
            out["expert_action"] = self.gold[self.t] if self.t < len(self.gold) else None
        return out

    def close(self) -> None:
        self.env.close()


def list_games(split: str, task_names: list[str] | None = None, per_task: int = 2) -> list[dict]:
    """The first ``per_task`` variations of each task in ScienceWorld's ``split`` (train / dev /
    test), as game rows (``game_id``, ``split``, ``task_type``, ``gamefile`` = the spec)."""
    from scienceworld import ScienceWorldEnv

    if split not in SPLITS:
        raise ValueError(f"ScienceWorld split must be one of {SPLITS}, got {split!r}")
    env = ScienceWorldEnv("", envStepLimit=10)
    try:
        names = task_names or env.get_task_names()
        rows = []
        for name in names:
            env.load(name, 0, "easy")
            variations = {"train": env.get_variations_train, "dev": env.get_variations_dev,
                          "test": env.get_variations_test}[split]()
            for v in list(variations)[:per_task]:
                spec = f"{name}/{v}"
                rows.append({"game_id": spec, "split": split, "task_type": name, "gamefile": spec})
        return rows
    finally:
        env.close()
