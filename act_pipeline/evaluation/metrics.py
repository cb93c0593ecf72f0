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

    def to_dict(self) -> dict:
        return asdict(self)


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
                  {"parsed": parsed, "picked_slot_1": sum(c == 1 for c in choices)})


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
                  {"admissible": admissible, "parsed": sum(a is not None for a in actions)})


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
) -> tuple[Metric, list[Episode]]:
    """Play each game to ``max_steps``; all live episodes share one batched generate per step.

    ``games`` rows carry ``game_id``, ``task_type`` and ``gamefile``; ``make_env(gamefile)``
    returns an object with ``reset() -> (obs, info)``, ``step(cmd) -> (obs, done, info)``, ``task``.
    An unparsable completion is sent as it is (the game answers "Nothing happens.").
    """
    t0 = time.time()
    envs, live = [], []
    for g in games:
        env = make_env(g["gamefile"])
        obs, info = env.reset()
        envs.append({"env": env, "game": g, "obs": obs, "info": info, "hist": [], "won": False,
                     "steps": 0, "trace": []})
        live.append(len(envs) - 1)
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=max_new_tokens, seed=seed)
    for step in range(max_steps):
        if not live:
            break
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
            e["hist"].append((action, e["obs"]))  # same shape as the expert rows' history
            obs, done, info = e["env"].step(action)
            e["trace"].append((action, obs))
            e["obs"], e["info"], e["steps"] = obs, info, e["steps"] + 1
            if info["won"]:
                e["won"] = True
            if not (done or e["won"]):
                still.append(i)
        live = still
        log(f"{split}: step {step + 1}/{max_steps}, {len(live)} episodes live, "
            f"{sum(e['won'] for e in envs)} won")
    episodes = []
    for e in envs:
        close = getattr(e["env"], "close", None)
        if close:
            close()
        episodes.append(Episode(e["game"]["game_id"], e["game"]["task_type"], e["won"], e["steps"], e["trace"]))
    n = len(episodes)
    wins = sum(ep.won for ep in episodes)
    by_type: dict[str, list[int]] = {}
    for ep in episodes:
        by_type.setdefault(ep.task_type, [0, 0])
        by_type[ep.task_type][0] += ep.won
        by_type[ep.task_type][1] += 1
    metric = Metric("success_rate", wins / n if n else float("nan"), split, n, seed,
                    {"won": wins, "max_steps": max_steps, "seconds": round(time.time() - t0, 1),
                     "by_task_type": {k: {"won": v[0], "n": v[1]} for k, v in sorted(by_type.items())}})
    return metric, episodes
