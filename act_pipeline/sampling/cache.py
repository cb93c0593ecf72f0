"""A cache of sampled completions in the DuckDB warehouse.

Keyed by (state content hash, sampling key): the sampling key hashes the sampler model's content
hash, the sampling parameters and the prompt settings, so adding expert games samples only the
new states, and changing the model or any parameter samples everything again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import pyarrow as pa

from act_pipeline.data.store import Warehouse

_DDL = """CREATE TABLE IF NOT EXISTS sampling_cache (
    state_id VARCHAR, sampling_key VARCHAR, completions VARCHAR[], PRIMARY KEY (state_id, sampling_key))"""


def sampling_key(**parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


class SampleCache:
    def __init__(self, warehouse: Warehouse, key: str):
        self.warehouse = warehouse
        self.key = key

    def lookup(self, state_ids: Sequence[str]) -> dict[str, list[str]]:
        if not state_ids:
            return {}
        with self.warehouse.connect() as con:
            con.execute(_DDL)
            ids = pa.table({"state_id": pa.array(list(state_ids), pa.string())})
            con.register("wanted", ids)
            rows = con.execute(
                "SELECT c.state_id, c.completions FROM sampling_cache c JOIN wanted w USING (state_id) "
                "WHERE c.sampling_key = ?", [self.key]).fetchall()
        return {sid: list(comps) for sid, comps in rows}

    def store(self, completions: dict[str, list[str]]) -> None:
        if not completions:
            return
        table = pa.table({"state_id": pa.array(list(completions), pa.string()),
                          "sampling_key": pa.array([self.key] * len(completions), pa.string()),
                          "completions": pa.array(list(completions.values()), pa.list_(pa.string()))})
        with self.warehouse.connect() as con:
            con.execute(_DDL)
            con.register("new_rows", table)
            con.execute("BEGIN")
            con.execute("INSERT OR IGNORE INTO sampling_cache SELECT state_id, sampling_key, completions FROM new_rows")
            con.execute("COMMIT")
