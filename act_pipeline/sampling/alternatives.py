"""Stage 1 sampling: K alternative actions per expert state from the current model.

Where the alternatives come from is ``sampling.policy`` (every row keeps its ``origin``):

* ``free``: K free generations of pi_0 (origin ``model``); unparsable / inadmissible ones are
  dropped with their reason.
* ``constrained``: no free generation; K draws from pi_0's own distribution restricted to the
  admissible actions (``act_pipeline.sampling.constrained``; origin ``model_constrained``).
* ``free+random_fill``: free, and each unparsable / inadmissible sample *also* replaced by a random
  admissible action that is neither the expert's nor already kept (Early Experience; origin
  ``random_fill``).
* ``free+constrained_fill``: free, and each unparsable / inadmissible sample replaced by a
  constrained draw not already kept (origin ``model_constrained``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import pyarrow as pa

from act_pipeline.envs.actions import normalize_action
from act_pipeline.act.pairs import INADMISSIBLE, KEPT, UNPARSABLE, filter_alternatives
from act_pipeline.act.prompts import State, agent_prompt
from act_pipeline.config import SAMPLING_POLICIES
from act_pipeline.sampling import constrained
from act_pipeline.sampling.base import Sampler, SamplingParams
from act_pipeline.sampling.cache import SampleCache

ALTERNATIVES_SCHEMA = pa.schema([
    ("state_id", pa.string()),
    ("split", pa.string()),
    ("sample_index", pa.int32()),
    ("completion", pa.string()),  # the free completion; "" for drawn / filled rows
    ("action", pa.string()),
    ("reason", pa.string()),  # kept | unparsable | equals_expert | inadmissible | duplicate
    ("origin", pa.string()),  # model | model_constrained | random_fill
    # model_constrained rows: pi_0's mean token log-likelihood of `action</action>` after the agent
    # prompt (the score the draw was made from); null for the other origins
    ("logprob", pa.float64()),
])


def sample_alternatives(
    sampler: Sampler,
    tokenizer,
    states: Sequence[dict],
    params: SamplingParams,
    history_len: int = 3,
    thinking: bool = False,
    progress: Callable[[int, int], None] | None = None,
    policy: str = "free",
    cache: SampleCache | None = None,
    score_batch_size: int = 64,
    constrained_temperature: float | None = None,
    score_processes: constrained.ScoringProcesses | None = None,
) -> tuple[pa.Table, dict]:
    """One row per sampled completion or drawn alternative, with its verdict and origin.

    ``policy``: one of ``SAMPLING_POLICIES`` (module docstring). The constrained policies score
    the admissible actions with the sampler's transformers model (``sampler.model``); K =
    ``params.n``, T = ``constrained_temperature`` (None: ``params.temperature``), the draws seeded by
    (``params.seed``, state).

    With a ``cache``, states already sampled (free completions) or scored (constrained scores)
    under the same sampling key are not sampled or scored again. With ``score_processes`` the
    states still to score are scored in that many spawned processes (the same scores, so the same
    table; ``sampling.workers``). Returns the table and counts:
    ``sampled`` (states that needed the model now: generation or scoring), ``cached`` (the others),
    and in detail ``generated`` / ``generated_cached`` / ``scored`` / ``scores_cached``.
    """
    if policy not in SAMPLING_POLICIES:
        raise ValueError(f"unknown sampling policy {policy!r} (one of {', '.join(SAMPLING_POLICIES)})")
    t_draw = params.temperature if constrained_temperature is None else constrained_temperature
    free = policy != "constrained"
    ids = [s["state_id"] for s in states]
    completions: dict[str, list[str]] = {}
    generated: set[str] = set()
    n_gen_cached = 0
    if free:
        cached = cache.lookup(ids) if cache else {}
        todo = [s for s in states if s["state_id"] not in cached]
        prompts = [agent_prompt(tokenizer, State.from_row(s), history_len, thinking) for s in todo]
        outs = sampler.generate(prompts, params, progress) if todo else []
        fresh = {s["state_id"]: list(o) for s, o in zip(todo, outs)}
        if cache:
            cache.store(fresh)
        completions = {**cached, **fresh}
        generated = set(fresh)
        n_gen_cached = len(cached)
    verdicts = {s["state_id"]: filter_alternatives(completions[s["state_id"]], s["expert_action"], s["admissible"],
                                                   thinking)
                for s in states} if free else {}

    # the constrained draws each state needs (K, or one per unparsable / inadmissible sample)
    want = {}
    for s in states:
        if policy == "constrained":
            want[s["state_id"]] = params.n
        elif policy == "free+constrained_fill":
            want[s["state_id"]] = sum(r in (UNPARSABLE, INADMISSIBLE) for _, r in verdicts[s["state_id"]])
    need = [s for s in states if want.get(s["state_id"], 0) > 0]
    scores, scored_now, n_scores_cached = _scores(sampler, tokenizer, need, history_len, cache, progress,
                                                score_batch_size, score_processes)

    rows = []
    for s in states:
        sid = s["state_id"]
        base = {"state_id": sid, "split": s["split"], "logprob": None}
        v = verdicts.get(sid, [])
        for j, (c, (action, reason)) in enumerate(zip(completions.get(sid, []), v)):
            rows.append({**base, "sample_index": j, "completion": str(c), "action": action, "reason": reason,
                         "origin": "model"})
        if policy == "free+random_fill":
            rows.extend(_random_fill(s, v, params.seed))
        elif want.get(sid, 0) > 0:
            kept = [a for a, reason in v if reason == KEPT and a]
            draws = constrained.draw_constrained(s, scores[sid], want[sid], t_draw, params.seed,
                                                 exclude=kept)
            rows.extend({**base, "sample_index": len(v) + i, "completion": "", "action": a, "reason": KEPT,
                         "origin": constrained.ORIGIN, "logprob": lp} for i, (a, lp) in enumerate(draws))
    busy = generated | scored_now
    counts = {"sampled": sum(sid in busy for sid in ids), "cached": sum(sid not in busy for sid in ids),
              "generated": len(generated), "generated_cached": n_gen_cached,
              "scored": len(scored_now), "scores_cached": n_scores_cached}
    return pa.Table.from_pylist(rows, schema=ALTERNATIVES_SCHEMA), counts


def _scores(sampler, tokenizer, states: Sequence[dict], history_len: int, cache: SampleCache | None,
            progress, batch_size: int, processes: constrained.ScoringProcesses | None = None,
            ) -> tuple[dict[str, list[float]], set[str], int]:
    """The constrained scores of ``states`` (cached ones reused when their admissible actions match),
    the ids scored now, and how many came from the cache."""
    if not states:
        return {}, set(), 0
    hits = cache.lookup_scores([s["state_id"] for s in states], constrained.SCORER_ID) if cache else {}
    scores: dict[str, list[float]] = {}
    for s in states:
        if s["state_id"] in hits:
            actions, sc = hits[s["state_id"]]
            by_action = dict(zip(actions, sc))
            if len(actions) == len(s["admissible"]) and set(by_action) == set(s["admissible"]):
                scores[s["state_id"]] = [by_action[a] for a in s["admissible"]]
    todo = [s for s in states if s["state_id"] not in scores]
    n_cached = len(states) - len(todo)
    fresh = {}
    if todo:
        model = constrained.model_of(sampler)  # a sampler without a transformers model: a clear error
        if processes is not None and processes.workers > 1 and len(todo) > 1:
            fresh = constrained.score_admissible_in_processes(processes, todo, history_len, batch_size, progress)
        else:
            fresh = constrained.score_admissible(model, tokenizer, todo, history_len, batch_size, progress)
    if cache:
        cache.store_scores({s["state_id"]: (s["admissible"], fresh[s["state_id"]]) for s in todo},
                           constrained.SCORER_ID)
    scores.update(fresh)
    return scores, set(fresh), n_cached


def _random_fill(state: dict, verdicts: list[tuple[str | None, str]], seed: int) -> list[dict]:
    n_bad = sum(reason in (UNPARSABLE, INADMISSIBLE) for _, reason in verdicts)
    taken = {normalize_action(state["expert_action"])}
    taken |= {normalize_action(a) for a, reason in verdicts if reason == KEPT and a}
    pool = [a for a in sorted(state["admissible"]) if normalize_action(a) not in taken]
    rng = random.Random(f"{seed}|{state['state_id']}")
    picks = rng.sample(pool, min(n_bad, len(pool)))
    return [{"state_id": state["state_id"], "split": state["split"], "sample_index": len(verdicts) + i,
             "completion": "", "action": a, "reason": KEPT, "origin": "random_fill", "logprob": None}
            for i, a in enumerate(picks)]


def states_per_game(states: list[dict], n: int, seed: int) -> list[dict]:
    """At most ``n`` states of each game (``game_id``), a seeded choice that does not depend on the
    other games or the row order; ``n = 0`` keeps every state. Rows keep their order.

    >>> rows = [{"game_id": g, "state_id": f"{g}{i}"} for g in "ab" for i in range(3)]
    >>> [r["state_id"] for r in states_per_game(rows, 2, 0)] == [r["state_id"] for r in states_per_game(rows[::-1], 2, 0)][::-1]
    True
    >>> sorted({r["game_id"]: 1 for r in states_per_game(rows, 2, 0)}), len(states_per_game(rows, 2, 0)), len(states_per_game(rows, 0, 0))
    (['a', 'b'], 4, 6)
    """
    if n <= 0:
        return list(states)
    import hashlib

    rank = lambda r: hashlib.sha256(f"{seed}|{r['state_id']}".encode()).hexdigest()  # noqa: E731
    keep: dict[str, list[str]] = {}
    for r in sorted(states, key=rank):
        chosen = keep.setdefault(r["game_id"], [])
        if len(chosen) < n:
            chosen.append(r["state_id"])
    ids = {i for v in keep.values() for i in v}
    return [r for r in states if r["state_id"] in ids]
