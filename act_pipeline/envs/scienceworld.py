"""ScienceWorld through the ``scienceworld`` package (its JVM runs as a child of this process).

Same interface as :class:`act_pipeline.envs.alfworld.AlfworldGame` — ``reset() -> (obs, info)``,
``step(cmd) -> (obs, done, info)``, ``task``, ``close()``; ``info`` has ``won``, ``admissible``
and (with ``expert=True``) ``expert_action`` — so expert roll-outs, sampling, pairs and
evaluation work unchanged, in this process or in an env worker
(``WorkerPool("act_pipeline.envs.scienceworld:ScienceWorldTask", ...)``).

A game is named by a spec ``"<task name>/<variation>"`` (e.g. ``"boil/3"``); the expert follows
the gold action sequence that ScienceWorld generates at load (``generateGoldPath=True``).

ScienceWorld's valid actions at a state run past a thousand (every verb x object combination),
far more than a prompt can list. With ``max_admissible`` the state shows at most that many: the
expert's next action (as in ALFWorld, the right answer is always among the admissible actions)
plus a sample of the others, seeded by the game and step so a state always shows the same list;
alternatives and the RL reward are judged against the list the state shows. Gold
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

    def __init__(self, spec: str, expert: bool = True, simplification: str = "easy", step_limit: int = 100,
                 max_admissible: int = 0):
        from scienceworld import ScienceWorldEnv

        self.spec = spec
        self.task_name, self.variation = parse_spec(spec)
        self.expert = expert
        self.max_admissible = max_admissible
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
        expert = (self.gold[self.t] if self.t < len(self.gold) else None) if self.expert else None
        out = {"won": int(info.get("score", 0)) >= 100, "score": int(info.get("score", 0)),
               "admissible": shown_actions(info.get("valid") or [], expert, self.max_admissible,
                                           f"{self.spec}|{self.t}")}
        if self.expert:
            out["expert_action"] = expert
        return out

    def close(self) -> None:
        self.env.close()


def shown_actions(valid: list[str], expert: str | None, limit: int, seed: str) -> list[str]:
    """The admissible actions a state shows: all (``limit`` 0), else at most ``limit`` of them,
    the expert's action always included; sorted, and the same for the same ``seed``.

    >>> shown_actions(["look", "go north", "open door"], None, 0, "s")
    ['go north', 'look', 'open door']
    >>> acts = shown_actions([f"a{i}" for i in range(100)], "a7", 5, "boil/0|3")
    >>> len(acts), "a7" in acts, acts == shown_actions([f"a{i}" for i in range(100)], "a7", 5, "boil/0|3")
    (5, True, True)
    """
    import random

    actions = sorted(set(valid))
    if not limit or len(actions) <= limit:
        return sorted(set(actions) | ({expert} if expert else set()))
    others = [a for a in actions if a != expert]
    keep = random.Random(seed).sample(others, limit - 1 if expert else limit)
    return sorted(keep + ([expert] if expert else []))


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
