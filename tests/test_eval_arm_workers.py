"""The arms of an evaluation scored in 2 processes at once (``eval.arm_workers``) give the scores,
traces and cache entries of one process, on real ALFWorld games (roll-outs in game workers) with the
tiny model; a failing arm fails the evaluation after the others are scored and cached."""

import json
from functools import partial

import pytest

from act_pipeline.config import EnvsConfig, EvalConfig, ModelConfig
from act_pipeline.data.trajectories import collect_expert_trajectories
from act_pipeline.envs import alfworld as aw
from act_pipeline.envs.workers import game_env_set, game_envs
from act_pipeline.evaluation import run

FACTORY = "act_pipeline.envs.alfworld:AlfworldGame"
ENVS = EnvsConfig(reset_timeout_s=120.0, step_timeout_s=60.0)


@pytest.fixture(scope="module")
def items(alfworld_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("games")
    specs = aw.discover_games(alfworld_data, "valid_seen")[:2]
    games = [{"game_id": s.game_id, "split": "valid_seen", "task_type": s.task_type,
              "gamefile": str(aw.build_game(s.path, out / str(i)))} for i, s in enumerate(specs)]
    with game_env_set(ENVS, FACTORY, {"expert": "planner"}, 1, lambda m: None) as make_games:
        table, _ = collect_expert_trajectories(games, make_games, 30, 2, log=lambda m: None)
    states = [dict(r, split="valid_unseen") for r in table.to_pylist() if r["won"]][:6]
    pairs = []
    for k, r in enumerate(states):  # the expert's action against another admissible one, slots alternating
        other = next(a for a in r["admissible"] if a != r["expert_action"])
        a1, a2 = (r["expert_action"], other) if k % 2 == 0 else (other, r["expert_action"])
        pairs.append(dict(r, pair_id=f"p{k}", action_1=a1, action_2=a2, expert_slot=1 if k % 2 == 0 else 2,
                          origin="model"))
    return games, {"model_driven": pairs, "random_fill": []}, states


def _evaluate(items, tiny_model, cache_root, workers, arms=None):
    games, pairs, states = items
    e = EvalConfig(heldout_pairs=6, heldout_states=6, max_steps=3, max_new_tokens=8, thinking_max_new_tokens=12,
                   batch_size=8, arm_workers=workers)
    plan = run.eval_plan(ModelConfig(), e, {"uri": tiny_model, "hash": "base"},
                         arms or {"act_checkpoint": {"uri": tiny_model, "hash": "act"}})
    rollouts = run.Rollouts({"valid_seen": games}, partial(game_envs, ENVS, FACTORY, {"expert": None}, 2), e, 2, 1,
                            "valid_seen")
    logs = []
    cache = run.EvalCache(cache_root, "v1")
    results, traces = run.evaluate_arms(plan, pairs, states, "valid_unseen", 2, ModelConfig(), e, "alfworld",
                                        rollouts, log=logs.append, cache=cache)
    return {a: [_timeless(m.to_dict()) for m in ms] for a, ms in results.items()}, traces, logs


def _timeless(metric: dict) -> dict:
    """A metric as scored: without the seconds it took (roll-outs time themselves)."""
    return dict(metric, detail={k: v for k, v in metric["detail"].items() if k != "seconds"})


def test_arms_in_two_processes_score_as_in_one(items, tiny_model, tmp_path):
    one, traces1, logs1 = _evaluate(items, tiny_model, tmp_path / "one", 1)
    two, traces2, logs2 = _evaluate(items, tiny_model, tmp_path / "two", 2)
    assert list(one) == ["prompt_no_thinking", "prompt_thinking", "act_checkpoint"]
    names = {m["name"] for ms in one.values() for m in ms}
    assert {"judgement_accuracy", "next_action_accuracy", "success_rate"} <= names, names
    assert all(m["n"] > 0 for ms in one.values() for m in ms if m["name"] != "judgement_accuracy_random_fill")
    assert two == one  # every metric, its outcomes and its detail
    assert traces2 == traces1 and traces1["act_checkpoint"]
    # the cache keys leave the speed knob out: the same entries, with the same contents
    entries = sorted(p.name for p in (tmp_path / "one").glob("*.json"))
    assert len(entries) == 3 and entries == sorted(p.name for p in (tmp_path / "two").glob("*.json"))
    for n in entries:
        a, b = (json.loads((tmp_path / d / n).read_text()) for d in ("one", "two"))
        assert a["trace"] == b["trace"] and [_timeless(m) for m in a["metrics"]] == [_timeless(m) for m in b["metrics"]]
    assert not any(m.startswith("[") for m in logs1)
    assert any("in 2 processes at once" in m for m in logs2)
    # every arm's log lines come back from its process, named by the arm
    for arm in one:
        assert any(m.startswith(f"[{arm}] alfworld {arm}: ") for m in logs2), arm
    # read back with 2 workers: no process is started
    again, _, logs3 = _evaluate(items, tiny_model, tmp_path / "two", 2)
    assert again == one and sum("scored before" in m for m in logs3) == 3
    assert not any("processes at once" in m for m in logs3)


def test_a_failing_arm_fails_after_the_others_are_cached(items, tiny_model, tmp_path):
    arms = {"act_checkpoint": {"uri": str(tmp_path / "no-such-checkpoint"), "hash": "gone"},
            "il_baseline": {"uri": tiny_model, "hash": "il"}}
    with pytest.raises(Exception, match="no-such-checkpoint"):
        _evaluate(items, tiny_model, tmp_path / "c", 2, arms)
    # the three arms that could be scored were kept: a rerun scores only the missing one
    assert len(list((tmp_path / "c").glob("*.json"))) == 3

