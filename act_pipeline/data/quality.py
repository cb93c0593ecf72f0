"""Data-quality checks on the contrast pairs (run in DuckDB over the Parquet file).

Each check returns ``(passed, description, metadata)``; the Dagster layer turns them into
blocking asset checks, so a failing check stops training in the same run.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from act_pipeline.act.normalize import normalize_action
from act_pipeline.data.store import parquet_scan

Result = tuple[bool, str, dict]


def _con(parquet: str | Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(f"CREATE VIEW p AS SELECT * FROM {parquet_scan(parquet)}")
    return con


def alternative_differs_from_expert(parquet: str | Path) -> Result:
    con = _con(parquet)
    rows = con.execute("SELECT expert_action, alternative FROM p").fetchall()
    bad = [(e, a) for e, a in rows if normalize_action(e) == normalize_action(a)]
    return not bad, f"{len(bad)} pairs whose alternative equals the expert action", {"bad": len(bad), "examples": bad[:5]}


def alternative_admissible(parquet: str | Path) -> Result:
    n = _con(parquet).execute("SELECT count(*) FROM p WHERE NOT list_contains(admissible, alternative)").fetchone()[0]
    return n == 0, f"{n} pairs whose alternative is not admissible", {"bad": int(n)}


def slot_share(parquet: str | Path, tolerance: float = 0.05) -> Result:
    rows = _con(parquet).execute(
        "SELECT split, count(*), avg(CASE WHEN expert_slot = 1 THEN 1.0 ELSE 0.0 END) FROM p GROUP BY split ORDER BY split"
    ).fetchall()
    shares = {s: float(x) for s, _, x in rows}
    # a split of n pairs can only be balanced to within 1/(2n); never fail a tiny split for that
    ok = all(abs(x - 0.5) <= max(tolerance, 1 / (2 * n)) for _, n, x in rows)
    return ok, f"expert slot-1 share per split {shares} (must be 50 ± {tolerance * 100:.0f}%)", {"shares": shares}


def no_duplicate_pairs(parquet: str | Path) -> Result:
    n = _con(parquet).execute(
        "SELECT count(*) FROM (SELECT state_id, alternative FROM p GROUP BY ALL HAVING count(*) > 1)"
    ).fetchone()[0]
    return n == 0, f"{n} duplicated (state, alternative) pairs", {"bad": int(n)}


def no_eval_state_in_training(parquet: str | Path) -> Result:
    """No training pair may come from an evaluation game (by game id or by state)."""
    con = _con(parquet)
    n = con.execute(
        "SELECT count(*) FROM p t WHERE t.split = 'train' AND (t.game_id IN "
        "(SELECT game_id FROM p WHERE split <> 'train') OR t.state_id IN (SELECT state_id FROM p WHERE split <> 'train'))"
    ).fetchone()[0]
    return n == 0, f"{n} training pairs share a game or state with an evaluation split", {"bad": int(n)}


def prompts_fit_context(lengths: list[int], max_tokens: int) -> Result:
    longest = max(lengths) if lengths else 0
    return longest <= max_tokens, f"longest critic prompt {longest} tokens (model context {max_tokens})", {
        "longest": longest, "context": max_tokens}
