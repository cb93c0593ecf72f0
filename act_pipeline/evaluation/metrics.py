"""Evaluation: judgement accuracy, next-action accuracy, ALFWorld success rate.

Every metric comes back as a :class:`Metric` that records its split, N and seed, so a number is
never separated from what it means.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from act_pipeline.act.normalize import normalize_action
from act_pipeline.act.parsing import parse_action, parse_choice
from act_pipeline.act.prompts import State, agent_prompt, critic_prompt
from act_pipeline.sampling.base import Sampler, SamplingParams
from act_pipeline.training.common import row_state

Log = Callable[[str], None]


@dataclass
class Metric:
    name: str
    value: float  # a fraction in [0, 1]
    split: str
    n: int
    seed: int
    detail: dict = field(default_factory=dict)
    outcomes: list[int] = field(default_factory=list)  # 1/0 per item, in item order
    groups: list[str] = field(default_factory=list)  # per item: its task type (breakdowns)

    def ci95(self, resamples: int = 2000) -> tuple[float, float] | None:
        """95 % percentile-bootstrap interval of the mean over items (seeded by ``seed``)."""
        return bootstrap_ci(self.outcomes, self.seed, resamples)

    def by_group(self) -> dict[str, dict]:
        out: dict[str, list[int]] = {}
        for g, o in zip(self.groups, self.outcomes):
            out.setdefault(g, []).append(o)
        return {g: {"value": sum(v) / len(v), "n": len(v)} for g, v in sorted(out.items())}

    def to_dict(self) -> dict:
        d = asdict(self)
        ci = self.ci95()
        d["ci95"] = list(ci) if ci else None
        d["by_task_type"] = self.by_group()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Metric:
        """The inverse of :meth:`to_dict` (derived fields are recomputed).

        >>> m = Metric("success_rate", 0.5, "valid_seen", 2, 0, {"won": 1}, [1, 0], ["pick", "look"])
        >>> Metric.from_dict(m.to_dict()) == m
        True
        """
        from dataclasses import fields

        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


def bootstrap_ci(outcomes: Sequence[int], seed: int, resamples: int = 2000) -> tuple[float, float] | None:
    """95 % percentile bootstrap of a mean of 0/1 outcomes; None when there are none.

    >>> bootstrap_ci([1] * 10, 0)
    (1.0, 1.0)
    >>> lo, hi = bootstrap_ci([1, 0] * 20, 0); lo < 0.5 < hi
    True
    """
    import numpy as np

    if not outcomes:
        return None
    x = np.asarray(outcomes, dtype=float)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(resamples, len(x)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def judgement_accuracy(sampler: Sampler, tokenizer, pairs: Sequence[dict], split: str, seed: int,
                       history_len: int = 3, thinking: bool = False, max_new_tokens: int = 8) -> Metric:
    """Greedy critic picks on held-out pairs; an unparsable answer counts as wrong."""
    prompts = [critic_prompt(tokenizer, row_state(r), r["action_1"], r["action_2"], history_len, thinking)
               for r in pairs]
    outs = sampler.generate(prompts, SamplingParams(n=1, temperature=0.0, max_new_tokens=max_new_tokens, seed=seed))
    choices = [parse_choice(o[0]) for o in outs]
    correct = sum(c == int(r["expert_slot"]) for c, r in zip(choices, pairs))
    parsed = sum(c is not None for c in choices)
    n = len(pairs)
    return Metric("judgement_accuracy", correct / n if n else float("nan"), split, n, seed,
                  {"parsed": parsed, "picked_slot_1": sum(c == 1 for c in choices),
                   "examples": [{"candidates": f"Action 1: {r['action_1']}\nAction 2: {r['action_2']}",
                                 "completion": o[0], "expert_slot": int(r["expert_slot"]), "choice": c}
                                for r, o, c in list(zip(pairs, outs, choices))[:2]]},
                  [int(c == int(r["expert_slot"])) for c, r in zip(choices, pairs)],
                  [r.get("task_type", "") for r in pairs])


def next_action_accuracy(sampler: Sampler, tokenizer, states: Sequence[dict], split: str, seed: int,
                         history_len: int = 3, thinking: bool = False, max_new_tokens: int = 16) -> Metric:
    """Greedy next action vs the expert's, exact match after normalisation."""
    prompts = [agent_prompt(tokenizer, row_state(r), history_len, thinking) for r in states]
    outs = sampler.generate(prompts, SamplingParams(n=1, temperature=0.0, max_new_tokens=max_new_tokens, seed=seed))
    actions = [parse_action(o[0]) for o in outs]
    correct = sum(a == normalize_action(r["expert_action"]) for a, r in zip(actions, states))
    admissible = sum(a is not None and a in {normalize_action(x) for x in r["admissible"]}
                     for a, r in zip(actions, states))
    n = len(states)
    return Metric("next_action_accuracy", correct / n if n else float("nan"), split, n, seed,
                  {"admissible": admissible, "parsed": sum(a is not None for a in actions)},
                  [int(a == normalize_action(r["expert_action"])) for a, r in zip(actions, states)],
                  [r.get("task_type", "") for r in states])


@dataclass
class Episode:
    game_id: str
    task_type: str
    won: bool
    steps: int
    trace: list[tuple[str, str]]  # (action sent, observation back)


def rollout_success(
    sampler: Sampler,
    tokenizer,
    games: Sequence[dict],
    split: str,
    seed: int,
    max_steps: int,
    make_env: Callable[[str], object],
    history_len: int = 3,
    thinking: bool = False,
    max_new_tokens: int = 16,
    log: Log = print,
    retries: int = 0,
) -> tuple[Metric, list[Episode]]:
    """Play each game to ``max_steps``; all live episodes share one batched generate per step.

    ``games`` rows carry ``game_id``, ``task_type`` and ``gamefile``; ``make_env(gamefile)``
    returns an object with ``reset() -> (obs, info)``, ``step(cmd) -> (obs, done, info)``, ``task``
    — in this process, or in a worker process (:class:`act_pipeline.envs.workers.WorkerPool`).
    An unparsable completion is sent as it is (the game answers "Nothing happens.").

    An :class:`EnvFault` (a hung reset or step, a dead worker, a worker past its memory limit)
    starts that episode again from its first step on a fresh worker, up to ``retries`` times;
    after that the episode counts as not won and is listed in the metric's ``env_failures`` with
    the reason. N stays the number of games.
    """
    from act_pipeline.envs.workers import EnvFault

    t0 = time.time()
    envs: list[dict] = [{"game": g, "attempts": 0, "failed": None, "won": False} for g in games]

    def start(e: dict) -> bool:
        """(Re)start an episode; False when it has used up its attempts."""
        while True:
            e["attempts"] += 1
            e.update(env=None, hist=[], trace=[], steps=0, won=False)
            try:
                e["env"] = make_env(e["game"]["gamefile"])
                e["obs"], e["info"] = e["env"].reset()
                return True
            except EnvFault as f:
                if not retry(e, f):
                    return False

    def retry(e: dict, fault: EnvFault) -> bool:
        if e["attempts"] > retries:
            e["failed"] = str(fault)
            log(f"{split}: {e['game']['game_id']} failed after {e['attempts']} attempt(s): {fault}")
            return False
        log(f"{split}: {e['game']['game_id']}: {fault}; starting the episode again "
            f"(attempt {e['attempts'] + 1}/{retries + 1})")
        return True

    live = [i for i, e in enumerate(envs) if start(e)]
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=max_new_tokens, seed=seed)
    rounds = 0
    while live:
        rounds += 1
        prompts = []
        for i in live:
            e = envs[i]
            st = State(task=e["env"].task, observation=e["obs"], history=e["hist"],
                       admissible=e["info"]["admissible"])
            prompts.append(agent_prompt(tokenizer, st, history_len, thinking))
        outs = sampler.generate(prompts, params)
        still = []
        for i, out in zip(live, outs):
            e = envs[i]
            action = parse_action(out[0]) or out[0].strip()[:100] or "look"
            try:
                obs, done, info = e["env"].step(action)
            except EnvFault as f:
                if retry(e, f) and start(e):
                    still.append(i)
                continue
            e["hist"].append((action, e["obs"]))  # same shape as the expert rows' history
            e["trace"].append((action, obs))
            e["obs"], e["info"], e["steps"] = obs, info, e["steps"] + 1
            if info["won"]:
                e["won"] = True
            if not (done or e["won"] or e["steps"] >= max_steps):
                still.append(i)
        live = still
        log(f"{split}: round {rounds} (max {max_steps} steps per episode), {len(live)} episodes live, "
            f"{sum(e['won'] for e in envs)} won")
    episodes = []
    for e in envs:
        close = getattr(e.get("env"), "close", None)
        if close:
            close()
        episodes.append(Episode(e["game"]["game_id"], e["game"]["task_type"], e["won"], e["steps"], e["trace"]))
    n = len(episodes)
    wins = sum(ep.won for ep in episodes)
    failures = [{"game_id": e["game"]["game_id"], "reason": e["failed"]} for e in envs if e["failed"]]
    restarts = sum(e["attempts"] - 1 for e in envs)
    metric = Metric("success_rate", wins / n if n else float("nan"), split, n, seed,
                    {"won": wins, "max_steps": max_steps, "seconds": round(time.time() - t0, 1),
                     "env_failures": failures, "episode_restarts": restarts},
                    [int(ep.won) for ep in episodes], [ep.task_type for ep in episodes])
    return metric, episodes
