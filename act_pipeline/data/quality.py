"""Data-quality checks on the expert trajectories and contrast pairs (DuckDB over the Parquet files).

Each check returns ``(passed, description, metadata)``; the Dagster layer turns them into
blocking asset checks, so a failing check stops training in the same run.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from act_pipeline.envs.actions import normalize_action
from act_pipeline.data.store import parquet_scan

Result = tuple[bool, str, dict]


def _views(**tables: str | Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for name, parquet in tables.items():
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM {parquet_scan(parquet)}")
    return con


def _con(parquet: str | Path) -> duckdb.DuckDBPyConnection:
    return _views(p=parquet)


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


EVAL_ROLES = ("eval", "heldout_states")  # games-manifest roles of every evaluation set


def no_eval_state_in_training(parquet: str | Path, games: str | Path,
                              trajectories: str | Path | None = None) -> Result:
    """No training row (``split = 'train'``) shares a game or a state with any evaluation set.

    ``parquet``: the rows to check (expert trajectories, imported steps included; or contrast
    pairs); ``games``: the games manifest, whose games with a role ``eval`` or ``heldout_states``
    are every evaluation set (ALFWorld's valid_seen and valid_unseen roll-out games and held-out
    states, ScienceWorld's test variations); ``trajectories``: the expert steps the pairs were
    built from, whose held-out states count too. Evaluation games are every manifest game with
    an evaluation role, every game of a held-out row; a game whose file (``game_hash``) is
    identical to an evaluation game's counts as that game. States: the state ids of held-out rows.
    """
    tables = {"p": parquet, "g": games, **({"t": trajectories} if trajectories else {})}
    con = _views(**tables)
    held = ["SELECT game_id, state_id FROM p WHERE split <> 'train'"]
    if trajectories:
        held.append("SELECT game_id, state_id FROM t WHERE split <> 'train'")
    roles = "list_has_any(roles, ['" + "', '".join(EVAL_ROLES) + "'])"
    con.execute(f"CREATE VIEW held AS {' UNION ALL '.join(held)}")
    same_file = ""  # the same game file under another id is the same game
    if "game_hash" in {r[0] for r in con.execute("DESCRIBE g").fetchall()}:
        same_file = f"UNION SELECT game_id FROM g WHERE game_hash IN (SELECT game_hash FROM g WHERE {roles})"
    con.execute(f"CREATE VIEW eval_games AS SELECT game_id FROM g WHERE {roles} "
                f"UNION SELECT game_id FROM held {same_file}")
    by_game = con.execute(
        "SELECT DISTINCT game_id FROM p WHERE split = 'train' AND game_id IN (SELECT game_id FROM eval_games) "
        "ORDER BY game_id").fetchall()
    by_state = con.execute(
        "SELECT count(*) FROM p WHERE split = 'train' AND state_id IN (SELECT state_id FROM held)").fetchone()[0]
    rows = con.execute(
        "SELECT count(*) FROM p WHERE split = 'train' AND (game_id IN (SELECT game_id FROM eval_games) "
        "OR state_id IN (SELECT state_id FROM held))").fetchone()[0]
    n_eval = con.execute("SELECT count(DISTINCT game_id) FROM eval_games").fetchone()[0]
    games_bad = [g for (g,) in by_game]
    return rows == 0, (f"{rows} training rows share a game ({len(games_bad)} games) or a state ({by_state} rows) "
                       f"with an evaluation set ({n_eval} evaluation games)"), {
        "bad": int(rows), "bad_games": games_bad[:20], "bad_state_rows": int(by_state), "eval_games": int(n_eval)}


def heldout_pairs_nonempty(parquet: str | Path, heldout_split: str) -> Result:
    """The held-out split (judgement accuracy, the ACT probe) has pairs."""
    splits = {s: int(n) for s, n in _con(parquet).execute("SELECT split, count(*) FROM p GROUP BY split").fetchall()}
    n = splits.get(heldout_split, 0)
    return n > 0, f"{n} held-out {heldout_split} pairs (pairs per split: {splits})", {
        "heldout": n, "split": heldout_split, "splits": splits}


def training_task_types_covered(parquet: str | Path, trajectories: str | Path) -> Result:
    """Every task type of the training games (the won train expert steps, imported ones included)
    has training pairs."""
    con = _views(p=parquet, t=trajectories)
    want = {r[0] for r in con.execute("SELECT DISTINCT task_type FROM t WHERE split = 'train' AND won").fetchall()}
    have = dict(con.execute("SELECT task_type, count(*) FROM p WHERE split = 'train' GROUP BY task_type").fetchall())
    missing = sorted(want - set(have))
    ok = bool(want) and not missing
    return ok, (f"training pairs cover {len(want) - len(missing)} of the {len(want)} task types of the won training "
                f"games" + (f"; missing: {missing}" if missing else "")), {
        "missing": missing, "pairs_by_task_type": {k: int(v) for k, v in sorted(have.items())},
        "task_types": sorted(want)}


def expert_action_admissible(parquet: str | Path) -> Result:
    """Every expert action (played or imported) is among its state's admissible actions, after
    normalisation: what imported files are checked for. Steps of games the expert did not win
    never reach pairs, training or evaluation; they are counted apart and do not fail the check."""
    rows = _con(parquet).execute("SELECT state_id, game_id, won, expert_action, admissible FROM p").fetchall()
    bad = [(sid, gid, won, e) for sid, gid, won, e, adm in rows
           if normalize_action(e) not in {normalize_action(a) for a in adm or []}]
    used = [b for b in bad if b[2]]
    return not used, (f"{len(used)} expert actions of won games are not admissible at their state"
                      f" ({len(bad) - len(used)} more in games the expert did not win)"), {
        "bad": len(used), "bad_unwon": len(bad) - len(used),
        "examples": [{"state_id": s, "game_id": g, "expert_action": e} for s, g, _, e in used[:5]]}


def prompts_fit_context(lengths: list[int], max_tokens: int) -> Result:
    longest = max(lengths) if lengths else 0
    return longest <= max_tokens, f"longest critic prompt {longest} tokens (model context {max_tokens})", {
        "longest": longest, "context": max_tokens}
