"""The pair cap and pair origins: real DuckDB warehouse, real Parquet views, the real pair SQL.

Before the fix, ``pairs.max_pairs`` kept the first rows in ``ORDER BY split, game_id, step`` order:
with a cap below the number of training pairs it trained on the first task types only and dropped
every held-out pair (held-out judgement accuracy over N = 0).
"""

from collections import Counter

import pyarrow as pa
import pytest

from act_pipeline.act.pairs import build_pairs, origin_shares
from act_pipeline.data.store import Warehouse, write_parquet_atomic
from act_pipeline.data.trajectories import TRAJECTORY_SCHEMA
from act_pipeline.sampling.alternatives import ALTERNATIVES_SCHEMA

# ALFWorld's six task types, unevenly represented as in the train split
TYPES = {"look_at_obj_in_light": 10, "pick_and_place_simple": 40, "pick_clean_then_place_in_recep": 25,
         "pick_cool_then_place_in_recep": 15, "pick_heat_then_place_in_recep": 6, "pick_two_obj_and_place": 4}


def _warehouse(tmp_path, heldout_split="valid_unseen"):
    states, alts = [], []
    i = 0
    for split, scale in (("train", 1), (heldout_split, 0.3)):
        for t, n in TYPES.items():
            for j in range(max(1, int(n * scale))):
                sid = f"{split}-{t}-{j}"
                states.append({"state_id": sid, "game_id": f"{split}-{t}-{j // 5}", "split": split, "task_type": t,
                               "task": "task", "step": j % 5, "observation": "obs", "history": [],
                               "admissible": ["a", "b", "c", "d"], "expert_action": "a", "won": True})
                for k, (a, origin) in enumerate((("b", "model_constrained"), ("c", "random_fill"))):
                    alts.append({"state_id": sid, "split": split, "sample_index": k, "completion": "", "action": a,
                                 "reason": "kept", "origin": origin})
                i += 1
    wh = Warehouse(tmp_path / "w.duckdb")
    wh.register("t", write_parquet_atomic(pa.Table.from_pylist(states, TRAJECTORY_SCHEMA), tmp_path / "t.parquet"))
    wh.register("a", write_parquet_atomic(pa.Table.from_pylist(alts, ALTERNATIVES_SCHEMA), tmp_path / "a.parquet"))
    return wh


@pytest.mark.parametrize("heldout", ["valid_unseen", "test"])  # ScienceWorld's held-out split sorts after train
def test_cap_applies_to_training_pairs_only_stratified_by_task_type(tmp_path, heldout):
    wh = _warehouse(tmp_path, heldout)
    full, info = build_pairs(wh, "t", "a", 0, 0)
    assert info["quotas"] is None
    full_heldout = [r for r in full.to_pylist() if r["split"] == heldout]
    train_total = sum(r["split"] == "train" for r in full.to_pylist())
    assert train_total == 2 * sum(TYPES.values())

    cap = 40
    capped, info = build_pairs(wh, "t", "a", 0, cap)
    rows = capped.to_pylist()
    train = [r for r in rows if r["split"] == "train"]
    held = [r for r in rows if r["split"] == heldout]
    assert len(train) == cap
    # held-out pairs are never capped: exactly the same pairs as without a cap
    assert sorted(r["pair_id"] for r in held) == sorted(r["pair_id"] for r in full_heldout) and held
    # every task type present, each about its share of the training pairs
    per_type = Counter(r["task_type"] for r in train)
    assert set(per_type) == set(TYPES)
    for t, n in TYPES.items():
        assert abs(per_type[t] - cap * n / sum(TYPES.values())) <= 1.5, (t, per_type[t])
    assert per_type == Counter(info["quotas"])  and sum(info["quotas"].values()) == cap
    # slots balanced within the capped training split, and the sample is seeded
    assert abs(sum(r["expert_slot"] == 1 for r in train) - cap / 2) <= 1
    again, _ = build_pairs(wh, "t", "a", 0, cap)
    assert again.column("pair_id").to_pylist() == capped.column("pair_id").to_pylist()
    other, _ = build_pairs(wh, "t", "a", 1, cap)
    assert set(other.column("pair_id").to_pylist()) != set(capped.column("pair_id").to_pylist())


def test_cap_above_the_total_keeps_everything(tmp_path):
    wh = _warehouse(tmp_path)
    full, _ = build_pairs(wh, "t", "a", 0, 0)
    big, info = build_pairs(wh, "t", "a", 0, 10_240)  # the paper profile's cap
    assert info["quotas"] is None and big.num_rows == full.num_rows


def test_pairs_carry_the_origin_of_their_alternative(tmp_path):
    wh = _warehouse(tmp_path)
    rows = build_pairs(wh, "t", "a", 0, 0)[0].to_pylist()
    assert {(r["alternative"], r["origin"]) for r in rows} == {("b", "model_constrained"), ("c", "random_fill")}
    shares = origin_shares(rows)
    assert shares["train"]["model_constrained"] == {"n": sum(TYPES.values()), "share": 0.5}
    assert shares["train"]["random_fill"]["share"] == 0.5
