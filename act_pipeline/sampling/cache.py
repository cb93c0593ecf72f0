"""A cache of sampled completions and of constrained scores in the DuckDB warehouse.

Keyed by (state content hash, sampling key): the sampling key hashes the sampler model's content
hash, the sampling parameters, the policy and the prompt settings, so adding expert games samples
(or scores) only the new states, and changing the model or any parameter samples everything again.

Two tables: ``sampling_cache_v2`` holds each state's free completions with, in a parallel column,
whether each one hit the token limit (so a cached :class:`Completion` gets the same verdict as a
fresh one); ``constrained_score_cache`` holds each state's admissible actions with pi_0's score of
each (``act_pipeline.sampling.constrained``), under a key derived from the sampling key and the
scorer's definition. The first version's ``sampling_cache`` (no truncation flags) is not read:
its completions could not be given the same verdicts again, so those states are sampled anew.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from act_pipeline.data.store import Warehouse
from act_pipeline.files import sha256_json
from act_pipeline.sampling.base import Completion, is_truncated

_DDL = """CREATE TABLE IF NOT EXISTS sampling_cache_v2 (
    state_id VARCHAR, sampling_key VARCHAR, completions VARCHAR[], truncated BOOLEAN[],
    PRIMARY KEY (state_id, sampling_key))"""
_SCORES_DDL = """CREATE TABLE IF NOT EXISTS constrained_score_cache (
    state_id VARCHAR, scoring_key VARCHAR, actions VARCHAR[], scores DOUBLE[],
    PRIMARY KEY (state_id, scoring_key))"""


def sampling_key(**parts) -> str:
    return sha256_json(parts)[:32]


class SampleCache:
    def __init__(self, warehouse: Warehouse, key: str):
        self.warehouse = warehouse
        self.key = key

    def _select(self, ddl: str, sql: str, key: str, state_ids: Sequence[str]) -> list[tuple]:
        with self.warehouse.connect() as con:
            con.execute(ddl)
            con.register("wanted", pa.table({"state_id": pa.array(list(state_ids), pa.string())}))
            return con.execute(sql, [key]).fetchall()

    def lookup(self, state_ids: Sequence[str]) -> dict[str, list[Completion]]:
        """Cached free completions per state, each a :class:`Completion` with its ``truncated`` flag."""
        if not state_ids:
            return {}
        rows = self._select(
            _DDL, "SELECT c.state_id, c.completions, c.truncated FROM sampling_cache_v2 c "
                  "JOIN wanted w USING (state_id) WHERE c.sampling_key = ?", self.key, state_ids)
        return {sid: [Completion(c, t) for c, t in zip(comps, flags)] for sid, comps, flags in rows}

    def store(self, completions: dict[str, list[str]]) -> None:
        if not completions:
            return
        table = pa.table({"state_id": pa.array(list(completions), pa.string()),
                          "sampling_key": pa.array([self.key] * len(completions), pa.string()),
                          "completions": pa.array([[str(c) for c in cs] for cs in completions.values()],
                                                  pa.list_(pa.string())),
                          "truncated": pa.array([[is_truncated(c) for c in cs] for cs in completions.values()],
                                                pa.list_(pa.bool_()))})
        self.warehouse.insert(_DDL, "sampling_cache_v2", table)

    def scoring_key(self, scorer: str) -> str:
        """The score cache's key: the sampling key and the scorer's definition."""
        return sampling_key(sampling_key=self.key, scorer=scorer)

    def lookup_scores(self, state_ids: Sequence[str], scorer: str) -> dict[str, tuple[list[str], list[float]]]:
        """Cached constrained scores per state: (admissible actions, score of each)."""
        if not state_ids:
            return {}
        rows = self._select(
            _SCORES_DDL, "SELECT c.state_id, c.actions, c.scores FROM constrained_score_cache c "
                         "JOIN wanted w USING (state_id) WHERE c.scoring_key = ?",
            self.scoring_key(scorer), state_ids)
        return {sid: (list(actions), [float(x) for x in scores]) for sid, actions, scores in rows}

    def store_scores(self, scores: dict[str, tuple[Sequence[str], Sequence[float]]], scorer: str) -> None:
        if not scores:
            return
        table = pa.table({"state_id": pa.array(list(scores), pa.string()),
                          "scoring_key": pa.array([self.scoring_key(scorer)] * len(scores), pa.string()),
                          "actions": pa.array([list(a) for a, _ in scores.values()], pa.list_(pa.string())),
                          "scores": pa.array([[float(x) for x in s] for _, s in scores.values()],
                                             pa.list_(pa.float64()))})
        self.warehouse.insert(_SCORES_DDL, "constrained_score_cache", table)
