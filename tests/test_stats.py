"""The paired statistics (evaluation/stats.py) on cases whose answer is known, and the item ids
and clusters the metrics record so that arms and seeds can be paired item by item."""

import pytest

from act_pipeline.evaluation.metrics import Metric, judgement_accuracy, next_action_accuracy, rollout_success
from act_pipeline.evaluation.stats import (clustered_mean, mcnemar_exact, pair_seeds, paired_difference,
                                           sign_flip_p)
from act_pipeline.sampling.base import Completion, Sampler


def games(g: int, k: int) -> list[str]:
    """Cluster labels of ``g`` games with ``k`` items each, items of a game adjacent."""
    return [f"g{i}" for i in range(g) for _ in range(k)]


# ---- clustered mean ---------------------------------------------------------------------------

def test_the_mean_is_the_mean_over_seeds_of_each_seeds_item_mean():
    r = clustered_mean({0: [1, 1, 1, 0], 1: [0, 0, 0, 0], 2: [1, 1, 1, 1]}, games(2, 2), resamples=500)
    assert r["mean"] == pytest.approx((0.75 + 0 + 1) / 3)
    assert (r["n"], r["n_clusters"], r["n_seeds"]) == (4, 2, 3)
    assert r["ci"][0] <= r["mean"] <= r["ci"][1]


def test_seeds_are_resampled_too():
    """Seed 0 right everywhere, seed 1 wrong everywhere: a quarter of resamples draw seed 0 twice
    (mean 1), a quarter seed 1 twice (mean 0), so the 95 % interval is [0, 1] however many games."""
    r = clustered_mean({0: [1] * 40, 1: [0] * 40}, games(20, 2), resamples=2000)
    assert r["mean"] == 0.5 and r["ci"] == [0.0, 1.0]


def test_the_same_seed_gives_the_same_interval():
    x, c = {0: [1, 0, 1, 1, 0, 0, 1, 0]}, games(4, 2)
    assert clustered_mean(x, c, seed=3) == clustered_mean(x, c, seed=3)


def test_outcomes_must_match_the_clusters():
    with pytest.raises(ValueError, match="one outcome per item"):
        clustered_mean({0: [1, 0, 1]}, games(2, 2))


# ---- paired difference ------------------------------------------------------------------------

def test_identical_arms_differ_by_nothing():
    a = {s: [1, 0, 1, 1, 0, 1] * 5 for s in (0, 1, 2)}
    r = paired_difference(a, a, games(10, 3), resamples=500, permutations=500)
    assert r["mean"] == 0 and r["ci"] == [0.0, 0.0] and r["p"] == 1.0
    assert all(m["b"] == m["c"] == 0 and m["p"] == 1.0 for m in r["mcnemar"]["per_seed"])


def test_a_large_constant_improvement_on_many_games_is_detected():
    c = games(30, 4)
    r = paired_difference({s: [1] * 120 for s in (0, 1)}, {s: [0] * 120 for s in (0, 1)}, c,
                          resamples=1000, permutations=2000)
    assert r["mean"] == 1.0 and r["ci"] == [1.0, 1.0]
    assert r["p"] == pytest.approx(1 / 2001)  # Monte Carlo: 2^30 patterns, only the identity (and -1) as extreme
    assert "Monte Carlo" in r["p_method"]
    assert [m["c"] for m in r["mcnemar"]["per_seed"]] == [0, 0] and r["mcnemar"]["per_seed"][0]["b"] == 120


def test_one_game_improving_is_not_mistaken_for_an_effect_across_games():
    """All 10 items of game 0 improve, the other 3 games' do not: an item-level bootstrap calls
    that an effect (its interval excludes 0); resampling games does not (game 0 is missing from
    (3/4)^4 = 32 % of resamples), and the sign-flip test cannot tell either (p = 1)."""
    c = games(4, 10)
    a, b = {0: [1] * 10 + [0] * 30}, {0: [0] * 40}
    clustered = paired_difference(a, b, c, resamples=4000)
    items = paired_difference(a, b, [str(i) for i in range(40)], resamples=4000)
    assert clustered["mean"] == items["mean"] == 0.25
    assert items["ci"][0] > 0
    assert clustered["ci"][0] == 0.0
    assert clustered["ci"][1] - clustered["ci"][0] > items["ci"][1] - items["ci"][0]
    assert clustered["p"] == 1.0 and clustered["n_clusters"] == 4


def test_exact_enumeration_on_three_games_gives_multiples_of_an_eighth():
    c = games(3, 2)
    seen = set()
    for a, b in [([1, 1, 1, 1, 1, 1], [0] * 6), ([1, 0, 1, 1, 0, 0], [0, 0, 0, 1, 1, 0]),
                 ([1, 1, 0, 0, 0, 0], [0] * 6), ([0.5, 1, 0, 0.25, 1, 1], [0, 0, 0.75, 0, 0, 1])]:
        r = paired_difference({0: a}, {0: b}, c, resamples=100)
        assert "exact (all 8" in r["p_method"]
        assert (r["p"] * 8) == pytest.approx(round(r["p"] * 8))
        seen.add(r["p"])
    assert 0.25 in seen  # every game improves: only the all-+ and all-- patterns are as extreme
    assert sign_flip_p([1, 2, 4]) == (0.25, "cluster sign-flip, exact (all 8 sign patterns)")
    assert sign_flip_p([0, 1, 1])[0] == 0.5  # as extreme whenever the two games that moved agree: 4 of 8


def test_the_exact_mcnemar_p():
    assert mcnemar_exact(0, 10) == 2 * 0.5 ** 10
    assert mcnemar_exact(10, 0) == 2 * 0.5 ** 10
    assert mcnemar_exact(1, 3) == pytest.approx(2 * (1 + 4) / 16)
    r = paired_difference({0: [0] * 10 + [1] * 5}, {0: [1] * 10 + [1] * 5}, games(15, 1), resamples=100)
    assert r["mcnemar"]["per_seed"] == [{"seed": 0, "b": 0, "c": 10, "p": 2 * 0.5 ** 10}]


def test_mcnemar_is_skipped_for_shares():
    r = paired_difference({0: [0.5, 1]}, {0: [0, 1]}, games(2, 1), resamples=100)
    assert "per_seed" not in r["mcnemar"] and "0/1" in r["mcnemar"]["skipped"]


def test_a_seed_independent_side_is_broadcast_to_every_seed():
    base = {"-": [0, 1, 0, 1]}
    trained = {0: [1, 1, 0, 1], 1: [1, 1, 1, 1], 2: [0, 1, 0, 1]}
    r = paired_difference(trained, base, games(2, 2), resamples=200)
    assert r["n_seeds"] == 3 and r["seeds"] == [0, 1, 2]
    assert r["mean"] == pytest.approx((0.25 + 0.5 + 0) / 3)
    assert [(m["seed"], m["b"], m["c"]) for m in r["mcnemar"]["per_seed"]] == [(0, 1, 0), (1, 2, 0), (2, 0, 0)]
    flipped = paired_difference(base, trained, games(2, 2), resamples=200)
    assert flipped["mean"] == pytest.approx(-r["mean"]) and flipped["seeds"] == [0, 1, 2]


def test_seeds_are_paired_by_seed_and_a_missing_one_is_named():
    a = {0: [1, 0], 1: [1, 1], 2: [0, 0]}
    assert [s for s, _, _ in pair_seeds(a, {2: [0, 0], 0: [0, 0], 1: [0, 0]})] == [0, 1, 2]
    with pytest.raises(ValueError, match=r"seed\(s\) \[2\] are missing from B and \[5\] from A"):
        paired_difference(a, {0: [1, 0], 1: [1, 1], 5: [0, 0]}, ["g", "h"])


# ---- the metrics record item ids and clusters -------------------------------------------------

class Template:
    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True, enable_thinking=False):
        return "".join(m["content"] for m in messages)


class Always(Sampler):
    name = "always"

    def __init__(self, text):
        self.text = text

    def generate(self, prompts, params, progress=None):
        return [[Completion(self.text)] * params.n for _ in prompts]


STATE = {"task": "put a mug on the shelf", "observation": "You see a mug.", "admissible": ["take mug", "look"],
         "history": [], "task_type": "pick"}


def test_judgement_and_next_action_record_item_ids_and_games():
    pairs = [{**STATE, "pair_id": f"p{i}", "game_id": f"g{i // 2}", "action_1": "take mug", "action_2": "look",
              "expert_slot": 1} for i in range(4)]
    m = judgement_accuracy(Always("1</answer>"), Template(), pairs, "valid_unseen", 0)
    assert (m.value, m.items, m.clusters) == (1.0, ["p0", "p1", "p2", "p3"], ["g0", "g0", "g1", "g1"])
    assert Metric.from_dict(m.to_dict()) == m
    states = [{**STATE, "state_id": f"s{i}", "game_id": "g9", "expert_action": "take mug"} for i in range(3)]
    m = next_action_accuracy(Always("take mug</action>"), Template(), states, "valid_unseen", 0)
    assert (m.value, m.items, m.clusters) == (1.0, ["s0", "s1", "s2"], ["g9"] * 3)
    bare = next_action_accuracy(Always("look</action>"), Template(), [STATE | {"expert_action": "look"}] * 2, "x", 0)
    assert (bare.items, bare.clusters) == (["0", "1"], ["0", "1"])  # no ids: the index, its own cluster


class OneStepGame:
    task = "win"

    def reset(self):
        return "start", {"admissible": ["win"], "won": False}

    def step(self, action):
        return "done", True, {"admissible": ["win"], "won": action == "win"}


def test_rollouts_record_the_game_as_item_and_cluster():
    gs = [{"game_id": f"g{i}", "task_type": "pick", "gamefile": "-"} for i in range(2)]
    m, _ = rollout_success(Always("win</action>"), Template(), gs, "valid_seen", 0, 3, lambda f: OneStepGame(),
                           log=lambda s: None)
    assert (m.value, m.items, m.clusters) == (1.0, ["g0", "g1"], ["g0", "g1"])
