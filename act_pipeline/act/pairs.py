"""Stage 1: filter sampled alternatives and build contrast pairs.

An alternative is kept when it parses, differs from the expert action after normalisation, is
admissible, and has not been kept already at the same state. Everything dropped is recorded
with its reason, so a user can see what the model proposed.
"""

from __future__ import annotations

from collections.abc import Sequence

from act_pipeline.act.normalize import admissible_lookup, normalize_action
from act_pipeline.act.parsing import parse_action

KEPT = "kept"
UNPARSABLE = "unparsable"
EQUALS_EXPERT = "equals_expert"
INADMISSIBLE = "inadmissible"
DUPLICATE = "duplicate"


def filter_alternatives(
    completions: Sequence[str], expert_action: str, admissible: Sequence[str]
) -> list[tuple[str | None, str]]:
    """(action in the environment's spelling or None, reason) for each completion, in order.

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
        action = parse_action(c)
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
# episodes the expert won. The slot order is a
# seeded permutation: pairs are ranked by a hash of (pair key, seed) and alternate slots along
# that ranking, so exactly half (±1) of each split puts the expert action in slot 1, and the
# assignment is reproducible for a seed. The views' names are parameters: each benchmark has its own.
_PAIRS_SQL = """
WITH kept AS (
    SELECT t.state_id, t.split, t.game_id, t.task_type, t.step, t.task, t.observation,
           t.history, t.admissible, t.expert_action, a.action AS alternative
    FROM {trajectories} t
    JOIN {alternatives} a USING (state_id)
    WHERE a.reason = 'kept' AND t.won
), ranked AS (
    SELECT *, row_number() OVER (
        PARTITION BY split ORDER BY hash(state_id || '|' || alternative || '|' || ?), state_id, alternative
    ) AS rnk
    FROM kept
)
SELECT
    md5(state_id || '|' || alternative) AS pair_id,
    state_id, split, game_id, task_type, step, task, observation, history, admissible,
    expert_action, alternative,
    CASE WHEN rnk % 2 = 1 THEN expert_action ELSE alternative END AS action_1,
    CASE WHEN rnk % 2 = 1 THEN alternative ELSE expert_action END AS action_2,
    CASE WHEN rnk % 2 = 1 THEN 1 ELSE 2 END AS expert_slot
FROM ranked
ORDER BY split, game_id, step, alternative
"""


def pairs_sql(trajectories: str = "expert_trajectories", alternatives: str = "sampled_alternatives") -> str:
    """The pair-building query over two warehouse views; its one parameter is the slot seed."""
    for name in (trajectories, alternatives):
        if not name.isidentifier():
            raise ValueError(f"invalid view name {name!r}")
    return _PAIRS_SQL.format(trajectories=trajectories, alternatives=alternatives)


PAIRS_SQL = pairs_sql()
