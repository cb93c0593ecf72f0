"""5. Contrast pairs at 10^6 alternative rows: the pipeline's DuckDB SQL over Parquet views vs pandas."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa

from benchmarks.common import Ctx, entry, interleaved, way

K = 4  # samples per state


def _arr(values, type=None) -> pa.Array:
    """One Arrow array (pyarrow returns a chunked one for large numpy string arrays)."""
    a = pa.array(values, type=type)
    return a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a


def synthesize(n_alt: int, seed: int, out: Path) -> tuple[Path, Path]:
    """``n_alt`` alternative rows (K per state) and the matching expert rows, as Parquet, with the
    pipeline's schemas: 90% train / 10% valid_unseen, 95% of states won, ~60% of samples kept."""
    from act_pipeline.data.store import write_parquet_atomic
    from act_pipeline.data.trajectories import HISTORY_TYPE, TRAJECTORY_SCHEMA
    from act_pipeline.sampling.alternatives import ALTERNATIVES_SCHEMA

    rng = np.random.default_rng(seed)
    n = n_alt // K
    idx = np.arange(n)
    sid = np.char.add("s", idx.astype(str))
    game = idx // 20
    split = np.where(game % 10 == 9, "valid_unseen", "train")
    verbs = np.array(["go to", "open", "close", "take", "examine"])
    objs = np.array([f"{o} {j}" for o in ("drawer", "shelf", "cabinet", "countertop", "mug", "apple")
                     for j in range(1, 9)])
    n_adm = 12
    adm_values = np.char.add(np.char.add(verbs[rng.integers(0, len(verbs), n * n_adm)], " "),
                             objs[rng.integers(0, len(objs), n * n_adm)])
    adm = pa.ListArray.from_arrays(_arr(np.arange(0, n * n_adm + 1, n_adm, dtype=np.int32)), _arr(adm_values))
    hist_len = 2
    hist_struct = pa.StructArray.from_arrays(
        [_arr(adm_values[: n * hist_len]), _arr(np.char.add("You arrive at ", adm_values[: n * hist_len]))],
        names=["action", "observation"])
    hist = pa.ListArray.from_arrays(_arr(np.arange(0, n * hist_len + 1, hist_len, dtype=np.int32)), hist_struct)
    traj = pa.Table.from_arrays([
        _arr(sid), _arr(np.char.add("g", game.astype(str))), _arr(split),
        _arr(np.full(n, "pick_and_place_simple")), _arr(np.full(n, "put a clean mug in the coffeemachine.")),
        _arr((idx % 20).astype(np.int32)),
        _arr(np.char.add("You arrive at countertop ", (idx % 7).astype(str))),
        hist.cast(HISTORY_TYPE), adm, _arr(adm_values[::n_adm]), _arr(rng.random(n) < 0.95),
    ], schema=TRAJECTORY_SCHEMA)
    reasons = np.array(["kept", "kept", "kept", "unparsable", "inadmissible", "duplicate", "equals_expert", "kept",
                        "kept", "kept"])
    alts = pa.Table.from_arrays([
        _arr(np.repeat(sid, K)), _arr(np.repeat(split, K)), _arr(np.tile(np.arange(K, dtype=np.int32), n)),
        _arr(np.full(n * K, "")),
        # distinct actions per state: the expert's admissible list shifted by 1..K
        _arr(adm_values.reshape(n, n_adm)[:, 1:K + 1].reshape(-1)),
        _arr(reasons[rng.integers(0, len(reasons), n * K)]), _arr(np.full(n * K, "model")),
        pa.nulls(n * K, pa.float64()),  # logprob: constrained draws only
    ], schema=ALTERNATIVES_SCHEMA)
    return (write_parquet_atomic(traj, out / "steps.parquet"), write_parquet_atomic(alts, out / "alternatives.parquet"))


def duckdb_pairs(wh, seed: int, out: Path) -> int:
    from act_pipeline.act.pairs import build_pairs
    from act_pipeline.data.store import write_parquet_atomic

    # the pipeline's own call (PAIRS_SQL with its named parameters; no cap, as the pandas way)
    table, _ = build_pairs(wh, "expert_trajectories", "sampled_alternatives", seed)
    p = write_parquet_atomic(table, out / "pairs_duckdb.parquet")
    wh.register("contrast_pairs", p)
    return table.num_rows


def pandas_pairs(traj: Path, alts: Path, seed: int, out: Path) -> int:
    """PAIRS_SQL's steps in pandas: join, filter, seeded rank per split, alternate slots, md5 pair id,
    order. (The rank hash is pandas' own, so the slot assignment differs from DuckDB's; the counts
    and the per-split balance do not.)"""
    import pandas as pd

    t = pd.read_parquet(traj)
    a = pd.read_parquet(alts, columns=["state_id", "action", "reason"])
    a = a[a["reason"] == "kept"].drop(columns="reason").rename(columns={"action": "alternative"})
    k = t[t["won"]].drop(columns="won").merge(a, on="state_id")
    key = (k["state_id"] + "|" + k["alternative"] + "|" + str(seed)).to_numpy(dtype=object)
    k["h"] = pd.util.hash_array(key)
    k = k.sort_values(["split", "h", "state_id", "alternative"], kind="stable")
    k["rnk"] = k.groupby("split").cumcount() + 1
    odd = (k["rnk"] % 2 == 1).to_numpy()
    k["action_1"] = np.where(odd, k["expert_action"], k["alternative"])
    k["action_2"] = np.where(odd, k["alternative"], k["expert_action"])
    k["expert_slot"] = np.where(odd, 1, 2)
    k["pair_id"] = [hashlib.md5(f"{s}|{x}".encode()).hexdigest() for s, x in zip(k["state_id"], k["alternative"])]
    k = k.drop(columns=["h", "rnk"]).sort_values(["split", "game_id", "step", "alternative"], kind="stable")
    k.to_parquet(out / "pairs_pandas.parquet", index=False)
    return len(k)


QUERIES_SQL = [
    "SELECT split, count(*) AS pairs FROM contrast_pairs GROUP BY split ORDER BY split",
    "SELECT split, avg(n) AS mean, max(n) AS max FROM (SELECT split, state_id, count(*) AS n FROM contrast_pairs "
    "GROUP BY split, state_id) GROUP BY split ORDER BY split",
    "SELECT split, avg(CASE WHEN expert_slot = 1 THEN 1.0 ELSE 0.0 END) AS slot1 FROM contrast_pairs "
    "GROUP BY split ORDER BY split",
]


def duckdb_queries(wh) -> list:
    return [wh.query(q).to_pylist() for q in QUERIES_SQL]


def duckdb_queries_one_connection(wh) -> list:
    """The same queries on one read-only connection (Warehouse.query opens one per query)."""
    with wh.connect(read_only=True) as con:
        return [con.sql(q).fetchall() for q in QUERIES_SQL]


def pandas_queries(path: Path) -> list:
    import pandas as pd

    p = pd.read_parquet(path, columns=["split", "state_id", "expert_slot"])
    by = p.groupby("split")
    per_state = p.groupby(["split", "state_id"]).size().groupby("split")
    return [by.size().to_dict(), per_state.mean().to_dict() | {"max": per_state.max().to_dict()},
            (p["expert_slot"] == 1).groupby(p["split"]).mean().to_dict()]


def run(ctx: Ctx) -> list[dict]:
    from act_pipeline.data.store import Warehouse

    n_alt = 100_000 if ctx.quick else 1_000_000
    out = ctx.scratch / "pairs"
    out.mkdir(parents=True, exist_ok=True)
    traj, alts = synthesize(n_alt, ctx.seed, out)
    wh = Warehouse(out / "warehouse.duckdb")
    wh.register("expert_trajectories", traj)
    wh.register("sampled_alternatives", alts)
    t = interleaved({"pandas": lambda: pandas_pairs(traj, alts, ctx.seed, out),
                     "duckdb": lambda: duckdb_pairs(wh, ctx.seed, out)}, 2, ctx.log)
    rows = t["duckdb"]["result"]
    q = interleaved({"pandas": lambda: pandas_queries(out / "pairs_pandas.parquet"),
                     "duckdb": lambda: duckdb_queries(wh)}, 3, ctx.log)
    dq, pq_ = q["duckdb"]["result"], q["pandas"]["result"]
    counts_duck = {r["split"]: r["pairs"] for r in dq[0]}
    slot1_duck = {r["split"]: r["slot1"] for r in dq[2]}
    common = dict(n_alternative_rows=n_alt, n_expert_rows=n_alt // K, seed=ctx.seed,
                  duckdb_threads="DuckDB default (all cores)", pandas_threads=1)
    build = entry(
        "pairs_build", f"contrast pairs from {n_alt:,} alternative rows (Parquet in, Parquet out)",
        way("pandas: merge, filter, hash-rank per split, md5 ids, sort", t["pandas"], n_alt, "input rows/s"),
        way("DuckDB: PAIRS_SQL over the warehouse's Parquet views", t["duckdb"], n_alt, "input rows/s"),
        t["pandas"]["median_s"] / t["duckdb"]["median_s"], "report (no goal set)", None,
        pairs=rows, checks={"same_pair_count": rows == t["pandas"]["result"],
                            "same_pairs_per_split": counts_duck == {k: int(v) for k, v in pq_[0].items()},
                            "slot1_share_duckdb": slot1_duck,
                            "slot1_share_pandas": {k: float(v) for k, v in pq_[2].items()}}, **common)
    query = entry(
        "pairs_query", f"3 typical queries over the {rows:,} pairs (count by split, pairs per state, slot-1 share)",
        way("pandas: read the Parquet columns, groupby", q["pandas"], rows, "pair rows/s"),
        way("DuckDB: SQL over the contrast_pairs view", q["duckdb"], rows, "pair rows/s"),
        q["pandas"]["median_s"] / q["duckdb"]["median_s"], "report (no goal set)", None, **common)
    one = interleaved({"duckdb_one_connection": lambda: duckdb_queries_one_connection(wh)}, 3, ctx.log)
    query["before_after"] = [{
        "lever": "one DuckDB connection for the 3 queries (Warehouse.query opens a connection per query)",
        "before": query["b"], "after": way("DuckDB: the same SQL on one read-only connection",
                                           one["duckdb_one_connection"], rows, "pair rows/s")}]
    return [build, query]
