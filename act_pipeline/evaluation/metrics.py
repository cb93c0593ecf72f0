"""Evaluation: judgement accuracy, next-action accuracy, ALFWorld success rate.

Every metric comes back as a :class:`Metric` that records its split, N and seed, so a number is
never separated from what it means.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from act_pipeline.envs.actions import normalize_action
from act_pipeline.act.parsing import parse_action, parse_choice
from act_pipeline.act.prompts import State, agent_prompt, choice_token_ids, critic_prompt
from act_pipeline.sampling.base import Completion, Sampler, SamplingParams, is_truncated

Log = Callable[[str], None]


@dataclass
class Metric:
    name: str
    value: float  # a fraction in [0, 1]
    split: str
    n: int
    seed: int
    detail: dict = field(default_factory=dict)
    # per item, in item order: 1/0 (one sample per item), or the share of an item's samples that
    # were right (a float in [0, 1]) when sampled several times
    outcomes: list[float] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)  # per item: its task type (breakdowns)
    # per item: its id (``pair_id`` / ``state_id`` / ``game_id``), so arms and seeds can be paired
    # item by item, and its cluster (the game it comes from: items of one game are correlated)
    items: list[str] = field(default_factory=list)
    clusters: list[str] = field(default_factory=list)

    def ci95(self, resamples: int = 2000) -> tuple[float, float] | None:
        """95 % percentile-bootstrap interval of the mean over items (seeded by ``seed``)."""
        return bootstrap_ci(self.outcomes, self.seed, resamples)

    def by_group(self) -> dict[str, dict]:
        out: dict[str, list[float]] = {}
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
        >>> m = Metric("judgement_accuracy", 0.625, "test", 2, 0, {"truncated": 1}, [0.25, 1.0], ["a", "b"],
        ...            ["p1", "p2"], ["g1", "g1"])
        >>> Metric.from_dict(m.to_dict()) == m
        True
        >>> Metric.from_dict(m.to_dict()).clusters
        ['g1', 'g1']
        """
        from dataclasses import fields

        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


def item_ids(rows: Sequence[dict], key: str) -> tuple[list[str], list[str]]:
    """Per row: its id (``row[key]``, else its index) and its cluster (``row["game_id"]``, else its id).

    >>> item_ids([{"pair_id": "p", "game_id": "g"}, {}], "pair_id")
    (['p', '1'], ['g', '1'])
    """
    items = [str(r.get(key, i)) for i, r in enumerate(rows)]
    return items, [str(r.get("game_id", item)) for r, item in zip(rows, items)]


def bootstrap_ci(outcomes: Sequence[float], seed: int, resamples: int = 2000) -> tuple[float, float] | None:
    """95 % percentile bootstrap of a mean of per-item outcomes (0/1, or shares in [0, 1]) over
    items; None when there are none.

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


def _decoding(temperature: float, samples: int, max_new_tokens: int, seed: int) -> SamplingParams:
    """Greedy (``temperature <= 0``) is one sample per item; sampling draws ``samples`` per item.

    >>> _decoding(0.0, 5, 8, 0).n, _decoding(0.7, 5, 8, 0).n, _decoding(0.7, 0, 8, 0).n
    (1, 5, 1)
    """
    temperature = float(temperature)
    n = max(1, int(samples)) if temperature > 0 else 1
    return SamplingParams(n=n, temperature=max(0.0, temperature), max_new_tokens=max_new_tokens, seed=seed)


def _outcome(right: Sequence[bool]) -> float:
    """An item's outcome: 1/0 from one sample, the share right (a float) from several.

    >>> _outcome([True]), _outcome([True, False, False, True])
    (1, 0.5)
    """
    if len(right) == 1:
        return int(bool(right[0]))
    return sum(bool(r) for r in right) / len(right)


def _decoding_detail(params: SamplingParams, completions: Sequence[str], parsed: int) -> dict:
    """What every metric reports about its completions: how many, how many parsed, how many hit the
    token limit (``truncated``, ``truncation_rate``), and how they were decoded."""
    total = len(completions)
    cut = sum(is_truncated(c) for c in completions)
    return {"completions": total, "parsed": parsed, "truncated": cut,
            "truncation_rate": round(cut / total, 4) if total else 0.0,
            "samples": params.n, "temperature": params.temperature, "max_new_tokens": params.max_new_tokens}


def judgement_accuracy(sampler: Sampler, tokenizer, pairs: Sequence[dict], split: str, seed: int,
                       history_len: int = 3, thinking: bool = False, max_new_tokens: int = 8,
                       temperature: float = 0.0, samples: int = 1, judgement: str = "generate") -> Metric:
    """Critic picks on held-out pairs.

    ``judgement="generate"``: generated answers parsed strictly (:func:`parse_choice`, with the pair's
    two actions as candidates): an unparsable or truncated answer counts as wrong. Greedy by default
    (one sample per pair, outcome 1/0); with ``temperature > 0`` and ``samples > 1`` a pair's outcome
    is the share of its samples that pick the expert's slot.

    ``judgement="choice"``: the critic's pick is the more likely of the answer tokens "1" and "2"
    right after the prompt (:func:`choice_picks`: greedy decoding restricted to the answers), so
    every pair gets an answer; ``detail["expert_prob"]`` is the mean probability, renormalised over
    the two answers, of the expert's slot."""
    if judgement not in ("generate", "choice"):
        raise ValueError(f"judgement must be generate or choice, got {judgement!r}")
    prompts = [critic_prompt(tokenizer, State.from_row(r), r["action_1"], r["action_2"], history_len, thinking)
               for r in pairs]
    n = len(pairs)
    if judgement == "choice":
        if thinking:
            raise ValueError("judgement choice reads the answer token right after the prompt: no thinking")
        from act_pipeline.sampling.constrained import model_of

        picks = choice_picks(model_of(sampler), tokenizer, prompts)
        choices = [[c] for c, _ in picks]
        outs = [[Completion(str(c))] for c, _ in picks]
        expert_p = [p1 if int(r["expert_slot"]) == 1 else 1.0 - p1 for (_, p1), r in zip(picks, pairs)]
        detail = {"completions": n, "parsed": n, "truncated": 0, "truncation_rate": 0.0, "samples": 1,
                  "temperature": 0.0, "max_new_tokens": 1, "judgement": "choice",
                  "expert_prob": round(sum(expert_p) / n, 4) if n else None}
    else:
        params = _decoding(temperature, samples, max_new_tokens, seed)
        outs = sampler.generate(prompts, params)
        choices = [[parse_choice(c, (r["action_1"], r["action_2"]), thinking=thinking) for c in o]
                   for o, r in zip(outs, pairs)]
        flat = [c for cs in choices for c in cs]
        detail = _decoding_detail(params, [c for o in outs for c in o], sum(c is not None for c in flat))
        detail["judgement"] = "generate"
    outcomes = [_outcome([c == int(r["expert_slot"]) for c in cs]) for cs, r in zip(choices, pairs)]
    detail.update(picked_slot_1=sum(c == 1 for cs in choices for c in cs), examples=[
        {"candidates": f"Action 1: {r['action_1']}\nAction 2: {r['action_2']}", "completion": str(o[0]),
         "truncated": is_truncated(o[0]), "expert_slot": int(r["expert_slot"]), "choice": cs[0]}
        for r, o, cs in list(zip(pairs, outs, choices))[:2]])
    return Metric("judgement_accuracy", sum(outcomes) / n if n else float("nan"), split, n, seed, detail,
                  outcomes, [r.get("task_type", "") for r in pairs], *item_ids(pairs, "pair_id"))


def choice_picks(model, tokenizer, prompts: Sequence[str], batch_size: int = 16) -> list[tuple[int, float]]:
    """Per critic prompt (ending in the pre-filled ``<answer>``): the slot (1 or 2) whose answer token
    is the more likely right after it (slot 1 on a tie), and slot 1's probability renormalised over
    the two answers; log-probabilities in float32.

    Prompts that share a beginning (the pairs of one state: the same state block, other candidates)
    are encoded once up to the longest prefix they all share (token by token, ``use_cache=True``);
    each prompt's rest is then one row of a batched forward over copies of that cache. The
    result is the same as one forward per prompt (``tests/test_choice_critic.py`` compares them)."""
    import torch
    from transformers import DynamicCache

    from act_pipeline.sampling.constrained import _cache_kwarg

    ids = choice_token_ids(tokenizer)
    enc = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    if any(not e for e in enc):
        raise ValueError("empty critic prompt")
    # group prompts by their state block: the text before the candidates
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(prompts):
        groups.setdefault(p.rsplit("Action 1:", 1)[0], []).append(i)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    key = _cache_kwarg(model)
    out: list[tuple[int, float] | None] = [None] * len(prompts)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for members in groups.values():
                # the tokens all members share, leaving each at least one of its own (its last position's logits)
                shared = min(len(os.path.commonprefix([enc[i] for i in members])), min(len(enc[i]) for i in members) - 1)
                prefix = None
                if shared > 0:
                    prefix = DynamicCache(config=model.config)
                    model(input_ids=torch.tensor([enc[members[0]][:shared]], device=model.device), use_cache=True,
                          logits_to_keep=1, **{key: prefix})
                for start in range(0, len(members), max(1, batch_size)):
                    chunk = members[start:start + max(1, batch_size)]
                    rests = [enc[i][shared:] for i in chunk]
                    n, width = len(chunk), max(len(r) for r in rests)
                    inp = torch.full((n, width), pad, dtype=torch.long)
                    mask = torch.zeros((n, shared + width), dtype=torch.long)
                    mask[:, :shared] = 1
                    for r, rest in enumerate(rests):
                        inp[r, :len(rest)] = torch.tensor(rest)
                        mask[r, shared:shared + len(rest)] = 1
                    kwargs = {}
                    if prefix is not None:
                        cache = copy.deepcopy(prefix)
                        cache.batch_repeat_interleave(n)
                        kwargs[key] = cache
                    pos = torch.arange(shared, shared + width).unsqueeze(0).expand(n, -1)
                    logits = model(input_ids=inp.to(model.device), attention_mask=mask.to(model.device),
                                   position_ids=pos.to(model.device), use_cache=prefix is not None, **kwargs).logits
                    last = torch.tensor([len(r) - 1 for r in rests])
                    rows = logits[torch.arange(n), last.to(logits.device)].float()
                    two = torch.log_softmax(rows, dim=-1)[:, ids]
                    p1 = torch.softmax(two, dim=-1)[:, 0]
                    for r, i in enumerate(chunk):
                        out[i] = (1 if two[r, 0] >= two[r, 1] else 2, float(p1[r]))
    finally:
        if was_training:
            model.train()
    return out  # type: ignore[return-value]


def next_action_accuracy(sampler: Sampler, tokenizer, states: Sequence[dict], split: str, seed: int,
                         history_len: int = 3, thinking: bool = False, max_new_tokens: int = 16,
                         temperature: float = 0.0, samples: int = 1) -> Metric:
    """Next action vs the expert's, exact match after normalisation, parsed strictly
    (:func:`parse_action`: an unparsable or truncated completion counts as wrong).

    Greedy by default; with ``temperature > 0`` and ``samples > 1`` a state's outcome is the share
    of its samples that name the expert's action."""
    params = _decoding(temperature, samples, max_new_tokens, seed)
    prompts = [agent_prompt(tokenizer, State.from_row(r), history_len, thinking) for r in states]
    outs = sampler.generate(prompts, params)
    actions = [[parse_action(c, thinking=thinking) for c in o] for o in outs]
    outcomes = [_outcome([a == normalize_action(r["expert_action"]) for a in acts])
                for acts, r in zip(actions, states)]
    admissible = sum(a is not None and a in {normalize_action(x) for x in r["admissible"]}
                     for acts, r in zip(actions, states) for a in acts)
    n = len(states)
    parsed = sum(a is not None for acts in actions for a in acts)
    detail = {"admissible": admissible, **_decoding_detail(params, [c for o in outs for c in o], parsed)}
    return Metric("next_action_accuracy", sum(outcomes) / n if n else float("nan"), split, n, seed, detail,
                  outcomes, [r.get("task_type", "") for r in states], *item_ids(states, "state_id"))


NOTHING_HAPPENS = "Nothing happens."  # what ALFWorld answers to a command it cannot run
UNPARSABLE = "[unparsable]"  # the history's entry for a step whose completion named no action


@dataclass
class Episode:
    game_id: str
    task_type: str
    won: bool
    steps: int
    # (action sent, observation back); a step whose completion did not parse is
    # ("[unparsable: <the completion's start>]", "Nothing happens.") and was not sent to the game
    trace: list[tuple[str, str]]
    unparsable: int = 0  # steps whose completion named no action (the game was not stepped)
    truncated: int = 0  # completions that hit the token limit
    sample: int = 0  # which of the game's episodes (``samples`` > 1)


def _unparsable_entry(completion: str) -> str:
    """The trace's action cell for a step whose completion did not parse.

    >>> _unparsable_entry("Okay, the task is\\nto put")
    '[unparsable: Okay, the task is to put]'
    """
    text = " ".join(str(completion).split())
    cut = " (cut off)" if is_truncated(completion) else ""
    return f"[unparsable: {text[:60]}{'…' if len(text) > 60 else ''}]{cut}"


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
    temperature: float = 0.0,
    samples: int = 1,
) -> tuple[Metric, list[Episode]]:
    """Play each game to ``max_steps``; all live episodes share one batched generate per step.

    ``games`` rows carry ``game_id``, ``task_type`` and ``gamefile``; ``make_env(gamefile)``
    returns an object with ``reset() -> (obs, info)``, ``step(cmd) -> (obs, done, info)``, ``task``
    — in this process, or in a worker process (:class:`act_pipeline.envs.workers.WorkerPool`).

    A completion is parsed strictly (:func:`parse_action`). One that names no action (unparsable,
    or cut off at the token limit before ``</action>``) is never sent to the game: the step counts,
    the game is not stepped, the observation is "Nothing happens." (what ALFWorld answers to an
    invalid command), the history shows ``[unparsable]`` and the trace the completion's start.
    The metric's detail counts them (``unparsable_steps``) and the completions that hit the token
    limit (``truncated``, ``truncation_rate``).

    Greedy by default (one episode per game, outcome won 1/0); with ``temperature > 0`` and
    ``samples > 1`` each game is played ``samples`` times and its outcome is the share won.

    An :class:`EnvFault` (a hung reset or step, a dead worker, a worker past its memory limit)
    starts that episode again from its first step on a fresh worker, up to ``retries`` times;
    after that the episode counts as not won and is listed in the metric's ``env_failures`` with
    the reason. N stays the number of games.
    """
    from act_pipeline.envs.workers import EnvFault

    t0 = time.time()
    params = _decoding(temperature, samples, max_new_tokens, seed)
    per_game = params.n
    envs: list[dict] = [{"game": g, "sample": k, "attempts": 0, "failed": None, "won": False}
                        for g in games for k in range(per_game)]

    def start(e: dict) -> bool:
        """(Re)start an episode; False when it has used up its attempts."""
        while True:
            e["attempts"] += 1
            e.update(env=None, hist=[], trace=[], steps=0, won=False, unparsable=0, truncated=0)
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
    rounds = 0
    while live:
        rounds += 1
        prompts = []
        for i in live:
            e = envs[i]
            st = State(task=e["env"].task, observation=e["obs"], history=e["hist"],
                       admissible=e["info"]["admissible"])
            prompts.append(agent_prompt(tokenizer, st, history_len, thinking))
        # one completion per live episode; a new seed each round when sampling
        step_params = SamplingParams(n=1, temperature=params.temperature, top_p=params.top_p,
                                     max_new_tokens=max_new_tokens, seed=seed + rounds - 1)
        outs = sampler.generate(prompts, step_params)
        still = []
        for i, out in zip(live, outs):
            e = envs[i]
            completion = out[0]
            action = parse_action(completion, thinking=thinking)
            if action is None:  # never sent: the game is not stepped
                obs, done, info = NOTHING_HAPPENS, False, e["info"]
                sent, shown = UNPARSABLE, _unparsable_entry(completion)
            else:
                try:
                    obs, done, info = e["env"].step(action)
                except EnvFault as f:
                    if retry(e, f) and start(e):
                        still.append(i)
                    continue
                sent = shown = action
            e["unparsable"] += action is None
            e["truncated"] += is_truncated(completion)
            e["hist"].append((sent, e["obs"]))  # same shape as the expert rows' history
            e["trace"].append((shown, obs))
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
        episodes.append(Episode(e["game"]["game_id"], e["game"]["task_type"], e["won"], e["steps"], e["trace"],
                                e.get("unparsable", 0), e.get("truncated", 0), e["sample"]))
    n = len(games)
    outcomes = [_outcome([ep.won for ep in episodes[g * per_game:(g + 1) * per_game]]) for g in range(n)]
    wins = sum(ep.won for ep in episodes)
    failures = [{"game_id": e["game"]["game_id"], "reason": e["failed"],
                 **({"sample": e["sample"]} if per_game > 1 else {})} for e in envs if e["failed"]]
    restarts = sum(e["attempts"] - 1 for e in envs)
    steps = sum(ep.steps for ep in episodes)
    unparsable = sum(ep.unparsable for ep in episodes)
    cut = sum(ep.truncated for ep in episodes)
    metric = Metric("success_rate", sum(outcomes) / n if n else float("nan"), split, n, seed,
                    {"won": wins, "episodes": len(episodes), "max_steps": max_steps,
                     "seconds": round(time.time() - t0, 1), "env_failures": failures, "episode_restarts": restarts,
                     "steps": steps, "parsed": steps - unparsable, "unparsable_steps": unparsable,
                     "truncated": cut, "truncation_rate": round(cut / steps, 4) if steps else 0.0,
                     "samples": per_game, "temperature": params.temperature, "max_new_tokens": max_new_tokens},
                    outcomes, [g["task_type"] for g in games], *item_ids(games, "game_id"))
    return metric, episodes


def split_by_origin(metric: Metric, pairs: Sequence[dict]) -> dict[str, dict]:
    """A judgement metric's value and N per origin of the pairs' alternatives (items in order).

    >>> m = Metric("judgement_accuracy", 0.5, "valid_unseen", 4, 0, outcomes=[1, 0, 1, 0])
    >>> split_by_origin(m, [{"origin": "model"}, {"origin": "model"}, {"origin": "model_constrained"},
    ...                     {"origin": "model_constrained"}])
    {'model': {'value': 0.5, 'n': 2}, 'model_constrained': {'value': 0.5, 'n': 2}}
    """
    by: dict[str, list[float]] = {}
    for r, o in zip(pairs, metric.outcomes):
        by.setdefault(r.get("origin") or "model", []).append(o)
    return {k: {"value": sum(v) / len(v), "n": len(v)} for k, v in sorted(by.items())}
