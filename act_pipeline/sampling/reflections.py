"""Early Experience (self-reflection): the model writes, for each expert state, why the expert action
is better, given what it and the alternatives led to when executed (``act_pipeline.data.outcomes``).

One row per expert step it is given (the trajectory's columns, so the SFT reads it as it reads the
expert steps), with the outcomes shown and the reflection. A state whose expert outcome is unknown
(its replay drifted or faulted) gets no reflection, never one made up without the environment: its
``reflection`` is empty (``grounded`` false), so its SFT example is the expert action alone and every
state IL trains on is trained on here too (the same data budget).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pyarrow as pa

from act_pipeline.act.prompts import State
from act_pipeline.act.reflection import clean_reflection, reflection_prompt
from act_pipeline.data.trajectories import TRAJECTORY_SCHEMA
from act_pipeline.sampling.base import Sampler, SamplingParams, is_truncated

OUTCOME_TYPE = pa.list_(pa.struct([("action", pa.string()), ("observation", pa.string())]))
REFLECTION_SCHEMA = pa.schema([
    *TRAJECTORY_SCHEMA,
    ("expert_outcome", pa.string()),  # the expert action's next observation (null: unknown)
    ("alternatives", OUTCOME_TYPE),  # the executed alternatives and their next observations
    ("grounded", pa.bool_()),  # the reflection was written from executed outcomes (else empty)
    ("reflection", pa.string()),
    ("truncated", pa.bool_()),  # the reflection hit the token limit
])
# the reflection's stop strings: it ends where an answer or thinking tag would begin
STOPS = ["</think>", "<action>"]


def outcomes_by_state(outcome_rows: Sequence[dict]) -> tuple[dict[str, str], dict[str, list[dict]]]:
    """From ``alternative_outcomes`` rows: state → the expert's next observation, state → the
    alternatives that ran (``ok``) with theirs, in table order."""
    expert: dict[str, str] = {}
    alts: dict[str, list[dict]] = {}
    for r in outcome_rows:
        if r["status"] != "ok":
            continue
        if r["is_expert"]:
            expert[r["state_id"]] = r["next_observation"]
        else:
            alts.setdefault(r["state_id"], []).append({"action": r["action"], "observation": r["next_observation"]})
    return expert, alts


def write_reflections(sampler: Sampler, tokenizer, steps: Sequence[dict], outcome_rows: Sequence[dict],
                      params: SamplingParams, history_len: int = 3,
                      progress: Callable[[int, int], None] | None = None) -> pa.Table:
    """A reflection for every expert step in ``steps`` whose expert outcome is known (module docstring)."""
    expert, alts = outcomes_by_state(outcome_rows)
    todo = [s for s in steps if s["state_id"] in expert]
    prompts = [reflection_prompt(tokenizer, State.from_row(s), s["expert_action"], expert[s["state_id"]],
                                 [(a["action"], a["observation"]) for a in alts.get(s["state_id"], [])], history_len)
               for s in todo]
    outs = sampler.generate(prompts, SamplingParams(n=1, temperature=params.temperature, top_p=params.top_p,
                                                    max_new_tokens=params.max_new_tokens, seed=params.seed),
                            progress) if todo else []
    written = {s["state_id"]: o[0] for s, o in zip(todo, outs)}
    rows = []
    for s in steps:
        sid = s["state_id"]
        text = written.get(sid)
        rows.append({**{f: s.get(f) for f in TRAJECTORY_SCHEMA.names}, "expert_outcome": expert.get(sid),
                     "alternatives": alts.get(sid, []), "grounded": text is not None,
                     "reflection": clean_reflection(text) if text is not None else "",
                     "truncated": is_truncated(text) if text is not None else False})
    return pa.Table.from_pylist(rows, schema=REFLECTION_SCHEMA)
