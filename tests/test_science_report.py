"""The science result (evaluation/science.py) on synthetic evaluations whose answers are known:
3 training seeds × 4 arms, 12 held-out games × 5 items."""

import json

import pytest

from act_pipeline.evaluation.metrics import Metric
from act_pipeline.evaluation.science import science_result, write_science

SEEDS = (0, 1, 2)
GAMES, PER_GAME = 12, 5
N = GAMES * PER_GAME
ITEMS = [f"p{i}" for i in range(N)]
CLUSTERS = [f"g{i // PER_GAME}" for i in range(N)]
META = {"commit": "abc1234", "machine": "test box", "load": "2 cores, idle", "profile": "unit",
        "wall_minutes": {"pairs": 3.0, "act": 20.5, "total": 23.5}, "tuning": ["lr 1e-6 vs 3e-6 on valid_seen"]}


def metric(name, outcomes, split="valid_unseen", items=ITEMS, clusters=CLUSTERS, origin="model"):
    detail = {"by_origin": {origin: {"value": sum(outcomes) / len(outcomes), "n": len(outcomes)}}} if origin else {}
    return Metric(name, sum(outcomes) / len(outcomes), split, len(outcomes), 0, detail, list(outcomes),
                  ["pick"] * len(outcomes), list(items), list(clusters)).to_dict()


def arm_metrics(judge, nxt, success):
    games = [f"g{i}" for i in range(GAMES)]
    return [metric("judgement_accuracy", judge), metric("next_action_accuracy", nxt, origin=None),
            metric("success_rate", success, "valid_seen", games, games, origin=None)]


def evals():
    """ACT right on every pair, the base on none; IL w/ ACT exactly IL (IL varies with the seed);
    the base and ACT get no next action right."""
    out = []
    for s in SEEDS:
        il = [int((i + s) % 3 != 0) for i in range(N)]  # 40 of 60 right in every seed
        won = [int((g + s) % 2 == 0) for g in range(GAMES)]
        out.append({"seed": s, "results": {
            "prompt_no_thinking": arm_metrics([0] * N, [0] * N, [0] * GAMES),
            "act_checkpoint": arm_metrics([1] * N, [0] * N, [0] * GAMES),
            "il_baseline": arm_metrics([1] * N, il, won),
            "il_policy": arm_metrics([1] * N, il, won)}})
    return out


CURVES = {s: [{"step": k, "judgement_accuracy": 0.5 + 0.1 * k + 0.01 * s, "n": N, "split": "valid_unseen", "seed": s,
               "origins": ["model"]} for k in range(5)] for s in SEEDS}


@pytest.fixture(scope="module")
def result():
    return science_result(evals(), CURVES, META, resamples=2000, permutations=10000)


def test_the_known_answers(result):
    j = result["judgement_model_only"]
    assert (j["act"]["mean"], j["base"]["mean"]) == (1.0, 0.0)
    assert (j["act"]["n"], j["act"]["n_clusters"], j["act"]["n_seeds"], j["base"]["n_seeds"]) == (N, GAMES, 3, 1)
    d = j["diff_act_minus_base"]
    assert (d["mean"], d["ci"], d["n"]) == (1.0, [1.0, 1.0], N)
    assert d["p"] == pytest.approx(2 / 2 ** GAMES) and d["p"] < 0.01  # exact: only all-+ and all-− are as extreme
    assert [m["c"] for m in d["mcnemar"]["per_seed"]] == [0, 0, 0]
    na = result["next_action"]
    assert na["il"]["mean"] == pytest.approx(2 / 3) and na["il_act"]["mean"] == pytest.approx(2 / 3)
    same = na["diff_il_act_minus_il"]
    assert same["mean"] == 0 and same["p"] == 1.0 and same["ci"][0] <= 0 <= same["ci"][1]
    assert na["diff_il_minus_base"]["mean"] == pytest.approx(2 / 3) and na["diff_il_minus_base"]["ci"][0] > 0
    sr = result["success"]["valid_seen"]
    assert sr["il"]["mean"] == 0.5 and sr["il"]["n"] == GAMES and sr["diff_il_act_minus_il"]["p"] == 1.0
    assert "judgement_random_fill" not in result
    assert result["target"] == {"act_judgement_ge_0_75": True, "act_ci_above_base": True,
                                "il_act_minus_il_ci_excludes_0": False, "act_ci_above_chance": True}


def test_the_bookkeeping_fields(result):
    for k in ("commit", "machine", "load", "wall_minutes", "profile", "tuning"):
        assert result[k] == META[k]
    assert result["seeds"] == [0, 1, 2] and result["curves"] == CURVES
    assert result["per_seed"][1]["act"]["judgement_accuracy"] == {"value": 1.0, "n": N}
    assert result["per_seed"][2]["il_act"]["next_action_accuracy"] == {"value": pytest.approx(2 / 3), "n": N}
    origin = result["judgement_by_origin"]
    assert origin["act"]["model"] == {"value": 1.0, "n": 3 * N, "seeds": 3}
    assert origin["base"]["model"] == {"value": 0.0, "n": N, "seeds": 1}  # seed-independent: once


def test_random_fill_pairs_get_their_own_section():
    ev = evals()
    rf = [f"r{i}" for i in range(N)]
    for e in ev:
        for arm, ms in e["results"].items():
            ms.append(metric("judgement_accuracy_random_fill", [int(arm != "prompt_no_thinking" and i % 4 != 0)
                                                                for i in range(N)], items=rf, origin="random_fill"))
    r = science_result(ev, CURVES, META, resamples=200, permutations=200)
    assert r["judgement_random_fill"]["act"]["mean"] == 0.75
    assert r["judgement_random_fill"]["diff_act_minus_base"]["mean"] == 0.75
    assert r["judgement_by_origin"]["act"]["random_fill"] == {"value": 0.75, "n": 3 * N, "seeds": 3}
    assert r["judgement_by_origin"]["act"]["model"]["value"] == 1.0


def test_a_critic_that_names_one_slot_is_called_a_position_bias(tmp_path):
    """ACT always answers 2 (right exactly on the pairs whose expert is in slot 2: half of them);
    the base never parses. The report must say ACT is at chance and biased, not that it judges."""
    ev = evals()
    half = [i % 2 for i in range(N)]  # expert in slot 2 on odd items: a constant "2" is right there
    for e in ev:
        e["results"]["act_checkpoint"][0] = metric("judgement_accuracy", half)
        e["results"]["act_checkpoint"][0]["detail"].update(completions=N, parsed=N, picked_slot_1=0)
        e["results"]["prompt_no_thinking"][0]["detail"].update(completions=N, parsed=0, picked_slot_1=0)
    r = science_result(ev, CURVES, META, resamples=500, permutations=500)
    assert r["judgement_model_only"]["act"]["mean"] == 0.5
    assert r["target"]["act_ci_above_chance"] is False and r["target"]["act_ci_above_base"] is True
    assert r["answer_bias"]["act"]["1"] == {"completions": N, "parsed_share": 1.0, "slot_1_share": 0.0,
                                            "one_slot": True}
    assert r["answer_bias"]["base"] == {"0": {"completions": N, "parsed_share": 0.0, "slot_1_share": None,
                                              "one_slot": None}}
    md = write_science(tmp_path / "s", r)["markdown"].read_text()
    assert "a position bias, not a judgement" in md and "includes it: no judgement detected" in md
    assert "almost never parse" in md and "| ACT | 2 | 100.0% of 60 | 0.0% |" in md


def test_files_are_written(result, tmp_path):
    paths = write_science(tmp_path / "science", result)
    assert set(paths) == {"json", "markdown", "forest", "curves", "arms"}
    doc = json.loads(paths["json"].read_text())
    assert doc["judgement_model_only"]["diff_act_minus_base"]["mean"] == 1.0
    assert doc["target"]["act_ci_above_base"] is True and doc["per_seed"]["0"]["base"]
    assert doc["next_action"]["il"]["mean"] == 0.6667  # rounded to 4 digits
    md = paths["markdown"].read_text()
    for text in ("abc1234", "test box", "act 20.5", "total 23.5", "| Judgement acc. (model-driven pairs), valid_unseen",
                 "IL w/ ACT − IL", "no effect detected", "an effect detected", "](forest.png)",
                 "](judgement_curves.png)", "](arms.png)", "lr 1e-6 vs 3e-6"):
        assert text in md, text
    for k in ("forest", "curves", "arms"):
        data = paths[k].read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_a_base_model_that_differs_across_seeds_is_refused():
    ev = evals()
    base = ev[1]["results"]["prompt_no_thinking"][0]
    base["outcomes"] = [1] + base["outcomes"][1:]
    with pytest.raises(ValueError, match=r"judgement_accuracy\[valid_unseen\]: arm prompt_no_thinking .* seed 1 "
                                         r"\(1 of 60 outcomes"):
        science_result(ev, CURVES, META, resamples=10, permutations=10)


def test_items_that_differ_are_refused_naming_the_arm():
    ev = evals()
    m = ev[2]["results"]["il_policy"][1]
    m["items"] = m["items"][::-1]
    with pytest.raises(ValueError, match=r"next_action_accuracy\[valid_unseen\]: arm il_policy seed 2 has items"):
        science_result(ev, CURVES, META, resamples=10, permutations=10)


def test_an_arm_missing_for_a_seed_is_refused():
    ev = evals()
    del ev[0]["results"]["act_checkpoint"]
    with pytest.raises(ValueError, match=r"arm act_checkpoint is missing for seed\(s\) \[0\]"):
        science_result(ev, CURVES, META, resamples=10, permutations=10)
