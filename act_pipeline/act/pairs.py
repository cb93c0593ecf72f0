"""Stage 1: filter sampled alternatives and build contrast pairs.

An alternative is kept when it parses, differs from the expert action after normalisation, is
admissible, and has not been kept already at the same state. Everything dropped is recorded
with its reason, so a user can see what the model proposed.
"""

from __future__ import annotations

from collections.abc import Sequence

from act_pipeline.envs.actions import admissible_lookup, normalize_action
from act_pipeline.act.parsing import parse_action

KEPT = "kept"
UNPARSABLE = "unparsable"
EQUALS_EXPERT = "equals_expert"
INADMISSIBLE = "inadmissible"
DUPLICATE = "duplicate"


def filter_alternatives(
    completions: Sequence[str], expert_action: str, admissible: Sequence[str], thinking: bool = False
) -> list[tuple[str | None, str]]:
    """(action in the environment's spelling or None, reason) for each completion, in order.

    Completions are parsed strictly (``thinking``: the prompt pre-filled ``<think>``, so the
    reasoning must be closed before the action; a truncated completion is unparsable).

    >>> filter_alternatives(
    ...     ["Go to shelf 1</action>", "go to shelf 1.", "look</action>", "look", "fly", ""],
    ...     "go to shelf 1", ["go to shelf 1", "look"])
    [('go to shelf 1', 'equals_expert'), ('go to shelf 1', 'equals_expert'), ('look', 'kept'), ('look', 'duplicate'), ('fly', 'inadmissible'), (None, 'unparsable')]
    """
    lookup = admissible_lookup(admissible)
    expert = normalize_action(expert_action)
    seen: set[str] = set()
    out: list[tuple[str | None, str]] = []
    for c in completions:
        action = parse_action(c, thinking=thinking)
        if action is None:
            out.append((None, UNPARSABLE))
        elif action == expert:
            out.append((lookup.get(action, action), EQUALS_EXPERT))
        elif action not in lookup:
            out.append((action, INADMISSIBLE))
        elif action in seen:
            out.append((lookup[action], DUPLICATE))
        else:
            seen.add(action)
            out.append((lookup[action], KEPT))
    return out


# Contrast pairs are built in DuckDB from the two Parquet-backed views, from the states of
# episodes the expert won. Each pair keeps the ``origin`` of its alternative (``model``: a free
# sample of pi_0; ``model_constrained``: pi_0's distribution restricted to the admissible actions;
# ``random_fill``: a random admissible action), so every number can be split by it.
#
# The cap (``pairs.max_pairs``) applies to the training pairs only, as a seeded sample stratified
# by task type (each type keeps its share of the training pairs, largest remainder, at least one
# pair per type when the cap allows); held-out pairs are never capped. ``quotas`` is a
# (task_type, quota) table; without a cap it is empty and every training pair is kept.
#
# The slot order is a seeded permutation: the kept pairs are ranked by a hash of (pair key, seed)
# and alternate slots along that ranking, so exactly half (±1) of each split puts the expert action
# in slot 1, and the assignment is reproducible for a seed. The views' names are parameters: each
# benchmark has its own.
_CANDIDATES_SQL = """
SELECT t.state_id, t.split, t.game_id, t.task_type, t.step, t.task, t.observation,
       t.history, t.admissible, t.expert_action, a.action AS alternative, a.origin
FROM {trajectories} t
JOIN {alternatives} a USING (state_id)
WHERE a.reason = 'kept' AND t.won
"""

_PAIRS_SQL = """
WITH kept AS ({candidates}),
sampled AS (
    SELECT *, row_number() OVER (
        PARTITION BY split, task_type ORDER BY hash(state_id || '|' || alternative || '|cap|' || $seed),
        state_id, alternative
    ) AS type_rank
    FROM kept
), capped AS (
    SELECT s.* EXCLUDE (type_rank) FROM sampled s LEFT JOIN {quotas} q USING (task_type)
    WHERE s.split <> 'train' OR NOT $capped OR s.type_rank <= coalesce(q.quota, 0)
), ranked AS (
    SELECT *, row_number() OVER (
        PARTITION BY split ORDER BY hash(state_id || '|' || alternative || '|' || $seed), state_id, alternative
    ) AS rnk
    FROM capped
)
SELECT
    md5(state_id || '|' || alternative) AS pair_id,
    state_id, split, game_id, task_type, step, task, observation, history, admissible,
    expert_action, alternative, origin,
    CASE WHEN rnk % 2 = 1 THEN expert_action ELSE alternative END AS action_1,
    CASE WHEN rnk % 2 = 1 THEN alternative ELSE expert_action END AS action_2,
    CASE WHEN rnk % 2 = 1 THEN 1 ELSE 2 END AS expert_slot
FROM ranked
ORDER BY split, game_id, step, alternative
"""

MODEL_DRIVEN = ("model", "model_constrained")
"""Origins of alternatives the model proposed (free samples, or draws from its own distribution
restricted to the admissible actions); ``random_fill`` pairs are reported apart."""


def _check_views(*names: str) -> None:
    for name in names:
        if not name.isidentifier():
            raise ValueError(f"invalid view name {name!r}")


def candidates_sql(trajectories: str = "expert_trajectories", alternatives: str = "sampled_alternatives") -> str:
    """Every kept alternative joined with its (won) expert state: the rows pairs are made from."""
    _check_views(trajectories, alternatives)
    return _CANDIDATES_SQL.format(trajectories=trajectories, alternatives=alternatives)


def pairs_sql(trajectories: str = "expert_trajectories", alternatives: str = "sampled_alternatives",
              quotas: str = "pair_quotas") -> str:
    """The pair-building query over two warehouse views and a quotas table; its named parameters
    are ``seed`` (a string: slot order and cap sample) and ``capped`` (whether the quotas apply)."""
    _check_views(quotas)
    return _PAIRS_SQL.format(candidates=candidates_sql(trajectories, alternatives), quotas=quotas)


def stratified_quotas(counts: dict[str, int], cap: int) -> dict[str, int]:
    """How many training pairs each task type keeps under a cap of ``cap`` pairs in all.

    Proportional to each type's share, by largest remainder (ties broken by name), and at least
    one pair for every type while the cap allows; no cap (0) or a cap above the total keeps all.

    >>> stratified_quotas({"pick": 80, "clean": 15, "heat": 5}, 10)
    {'clean': 2, 'heat': 1, 'pick': 7}
    >>> stratified_quotas({"pick": 3, "clean": 1}, 0)
    {'clean': 1, 'pick': 3}
    >>> sum(stratified_quotas({"a": 7, "b": 7, "c": 7}, 10).values())
    10
    >>> stratified_quotas({"a": 100, "b": 1, "c": 1}, 2)  # fewer slots than types: the biggest first
    {'a': 1, 'b': 1, 'c': 0}
    """
    types = sorted(counts)
    total = sum(counts.values())
    if cap <= 0 or cap >= total:
        return {t: counts[t] for t in types}
    quotas = {t: 0 for t in types}
    # every type gets one while the cap allows (largest types first), then the rest proportionally
    floor_first = sorted(types, key=lambda t: (-counts[t], t))
    for t in floor_first[:cap]:
        quotas[t] = 1
    left = cap - sum(quotas.values())
    if left > 0:
        spare = {t: counts[t] - quotas[t] for t in types}
        pool = sum(spare.values())
        exact = {t: left * spare[t] / pool for t in types}
        for t in types:
            quotas[t] += int(exact[t])
        rest = cap - sum(quotas.values())
        for t in sorted(types, key=lambda t: (-(exact[t] - int(exact[t])), t))[:rest]:
            quotas[t] += 1
    return quotas


PAIRS_SQL = pairs_sql()


def build_pairs(warehouse, trajectories: str, alternatives: str, seed: int | str, max_pairs: int = 0):
    """The contrast pairs over two warehouse views (a pyarrow table) and what the cap did.

    ``max_pairs`` caps the *training* pairs (0: no cap) by a seeded sample stratified by task type
    (:func:`stratified_quotas`); held-out pairs are never capped. Returns ``(table, info)`` with
    ``info = {"train_candidates": {type: n}, "quotas": {type: n} | None}``.
    """
    import pyarrow as pa

    with warehouse.connect() as con:
        counts = dict(con.execute(
            f"SELECT task_type, count(*) FROM ({candidates_sql(trajectories, alternatives)}) "
            "WHERE split = 'train' GROUP BY task_type").fetchall())
        capped = bool(max_pairs) and sum(counts.values()) > max_pairs
        quotas = stratified_quotas(counts, max_pairs) if capped else {}
        con.register("pair_quotas", pa.table({"task_type": pa.array(list(quotas), pa.string()),
                                              "quota": pa.array(list(quotas.values()), pa.int64())}))
        rel = con.sql(pairs_sql(trajectories, alternatives, "pair_quotas"),
                      params={"seed": str(seed), "capped": capped})
        # duckdb >= 2 names it to_arrow_table; 1.x arrow()
        table = rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()
        con.unregister("pair_quotas")
    return table, {"train_candidates": dict(sorted(counts.items())), "quotas": quotas or None}


def origin_shares(rows) -> dict[str, dict]:
    """Per split: the pairs of each alternative origin, their N and share.

    >>> origin_shares([{"split": "train", "origin": "model"}, {"split": "train", "origin": "random_fill"},
    ...                {"split": "train", "origin": "model"}, {"split": "valid_unseen", "origin": "model"}])
    {'train': {'model': {'n': 2, 'share': 0.6667}, 'random_fill': {'n': 1, 'share': 0.3333}}, 'valid_unseen': {'model': {'n': 1, 'share': 1.0}}}
    """
    counts: dict[str, dict[str, int]] = {}
    for r in rows:
        c = counts.setdefault(r["split"], {})
        c[r["origin"]] = c.get(r["origin"], 0) + 1
    return {split: {o: {"n": n, "share": round(n / sum(c.values()), 4)} for o, n in sorted(c.items())}
            for split, c in sorted(counts.items())}


def probe_pairs(rows, heldout_split: str, n: int, seed: int) -> list[dict]:
    """The held-out pairs ACT's judgement probe measures: a seeded sample of ``n`` pairs of the
    held-out split, model-driven ones only when there are any (the headline's population), else
    whatever the held-out split has (the pairs' ``origin`` says which).

    >>> rows = [{"split": "valid_unseen", "origin": "random_fill", "pair_id": "r"},
    ...         {"split": "valid_unseen", "origin": "model_constrained", "pair_id": "m"},
    ...         {"split": "train", "origin": "model", "pair_id": "t"}]
    >>> [r["pair_id"] for r in probe_pairs(rows, "valid_unseen", 8, 0)]
    ['m']
    """
    import random

    held = [r for r in rows if r["split"] == heldout_split]
    driven = [r for r in held if r.get("origin", "model") in MODEL_DRIVEN]
    pool = driven or held
    return random.Random(seed).sample(pool, min(n, len(pool)))
