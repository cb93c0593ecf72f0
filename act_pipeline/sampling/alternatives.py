"""Stage 1 sampling: K alternative actions per expert state from the current model."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import pyarrow as pa

from act_pipeline.act.normalize import normalize_action
from act_pipeline.act.pairs import INADMISSIBLE, KEPT, UNPARSABLE, filter_alternatives
from act_pipeline.act.prompts import agent_prompt
from act_pipeline.sampling.base import Sampler, SamplingParams
from act_pipeline.sampling.cache import SampleCache
from act_pipeline.training.common import row_state

ALTERNATIVES_SCHEMA = pa.schema([
    ("state_id", pa.string()),
    ("split", pa.string()),
    ("sample_index", pa.int32()),
    ("completion", pa.string()),
    ("action", pa.string()),
    ("reason", pa.string()),  # kept | unparsable | equals_expert | inadmissible | duplicate
    ("origin", pa.string()),  # model | random_fill
])


def sample_alternatives(
    sampler: Sampler,
    tokenizer,
    states: Sequence[dict],
    params: SamplingParams,
    history_len: int = 3,
    thinking: bool = False,
    progress: Callable[[int, int], None] | None = None,
    fill_inadmissible: bool = False,
    cache: SampleCache | None = None,
) -> tuple[pa.Table, dict]:
    """One row per sampled completion with its verdict.

    With ``fill_inadmissible`` (Early Experience's choice), each unparsable or inadmissible
    sample is *also* replaced by a random admissible action that is neither the expert's nor
    already kept (seeded per state); those rows have ``origin = random_fill``.

    With a ``cache``, states already sampled under the same sampling key are not sampled again.
    Returns the table and counts of states sampled now and taken from the cache.
    """
    cached = cache.lookup([s["state_id"] for s in states]) if cache else {}
    todo = [s for s in states if s["state_id"] not in cached]
    prompts = [agent_prompt(tokenizer, row_state(s), history_len, thinking) for s in todo]
    outs = sampler.generate(prompts, params, progress) if todo else []
    fresh = {s["state_id"]: list(o) for s, o in zip(todo, outs)}
    if cache:
        cache.store(fresh)
    rows = []
    for s in states:
        completions = fresh.get(s["state_id"]) or cached[s["state_id"]]
        verdicts = filter_alternatives(completions, s["expert_action"], s["admissible"])
        for j, (c, (action, reason)) in enumerate(zip(completions, verdicts)):
            rows.append({"state_id": s["state_id"], "split": s["split"], "sample_index": j,
                         "completion": c, "action": action, "reason": reason, "origin": "model"})
        if fill_inadmissible:
            rows.extend(_random_fill(s, verdicts, params.seed))
    return pa.Table.from_pylist(rows, schema=ALTERNATIVES_SCHEMA), {"sampled": len(todo), "cached": len(cached)}


def _random_fill(state: dict, verdicts: list[tuple[str | None, str]], seed: int) -> list[dict]:
    n_bad = sum(reason in (UNPARSABLE, INADMISSIBLE) for _, reason in verdicts)
    taken = {normalize_action(state["expert_action"])}
    taken |= {normalize_action(a) for a, reason in verdicts if reason == KEPT and a}
    pool = [a for a in sorted(state["admissible"]) if normalize_action(a) not in taken]
    rng = random.Random(f"{seed}|{state['state_id']}")
    picks = rng.sample(pool, min(n_bad, len(pool)))
    return [{"state_id": state["state_id"], "split": state["split"], "sample_index": len(verdicts) + i,
             "completion": "", "action": a, "reason": KEPT, "origin": "random_fill"}
            for i, a in enumerate(picks)]
