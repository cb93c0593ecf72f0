"""Early Experience (self-reflection): alternatives executed in real ALFWorld games on env workers
(replayed to the state, observations checked, faults retried), reflections written by a real tiny
model, the SFT examples they make, and the arm's row in the report."""

import os

import pytest

from act_pipeline.data.outcomes import execute_alternatives
from act_pipeline.data.trajectories import play_expert
from act_pipeline.envs import alfworld as aw
from act_pipeline.envs.workers import WorkerLimits, WorkerPool

from .conftest import REPO

STEPS = 3  # expert steps played: states 0, 1, 2


@pytest.fixture(autouse=True)
def _importable_tests(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))


@pytest.fixture(scope="module")
def played(alfworld_data, tmp_path_factory):
    spec = aw.discover_games(alfworld_data, "train")[0]
    gamefile = str(aw.build_game(spec.path, tmp_path_factory.mktemp("game")))
    game = aw.AlfworldGame(gamefile, "handcoded")
    try:
        rows, _ = play_expert(game, spec.game_id, "train", spec.task_type, STEPS, 2)
    finally:
        game.close()
    for r in rows:
        r["won"] = True
    alts = {r["state_id"]: [a for a in r["admissible"] if a != r["expert_action"]][:2] for r in rows}
    return {"game": {"game_id": spec.game_id, "gamefile": gamefile}, "rows": rows, "alts": alts}


def _direct(gamefile: str, before: list[str], action: str) -> str:
    """What ``action`` leads to after the expert's ``before``, played by hand in this process."""
    game = aw.AlfworldGame(gamefile, None)
    try:
        game.reset()
        for a in before:
            game.step(a)
        return game.step(action)[0]
    finally:
        game.close()


def test_alternatives_run_on_workers_and_a_fault_is_retried(played, tmp_path):
    rows, alts, g = played["rows"], played["alts"], played["game"]
    lim = WorkerLimits(reset_timeout_s=120, step_timeout_s=60)
    kw = {"fault": "die", "state_file": str(tmp_path / "count"), "times": 1, "at": "step", "expert": None}
    logs = []
    with WorkerPool("tests.faults:FaultyGame", kw, lim, 1, logs.append) as pool:
        table, stats = execute_alternatives([g], rows, alts, pool, log=logs.append, retries=1)
    assert [f["fault"].split(":")[0] for f in stats["env_faults"]] == ["died"]  # the worker died once ...
    assert stats["status"] == {"ok": len(rows) + sum(map(len, alts.values()))}  # ... and the retry ran every branch
    out = table.to_pylist()
    # one row per (state, action), the expert's first; each outcome is what playing it by hand gives
    assert [(r["step"], r["action"]) for r in out] == [(r["step"], a) for r in rows
                                                      for a in [r["expert_action"], *alts[r["state_id"]]]]
    expert_actions = [r["expert_action"] for r in rows]
    for r in out:
        if r["is_expert"] and r["step"] + 1 < len(rows):  # the expert's outcome is the next recorded state
            assert r["next_observation"] == rows[r["step"] + 1]["observation"]
    last = out[-1]
    assert last["next_observation"] == _direct(g["gamefile"], expert_actions[:last["step"]], last["action"])


def test_a_replay_that_drifts_is_recorded_not_trusted(played):
    rows = [dict(r) for r in played["rows"]]
    rows[1]["observation"] = "a state the game never shows"
    table, stats = execute_alternatives([played["game"]], rows, played["alts"],
                                        lambda f: aw.AlfworldGame(f, None), retries=0)
    by_step = {}
    for r in table.to_pylist():
        by_step.setdefault(r["step"], set()).add(r["status"])
    assert by_step == {0: {"ok"}, 1: {"desync"}, 2: {"desync"}}  # state 1 and after cannot be reached
    assert "not the recorded 'a state the game never shows'" in stats["not_ok"][0]["reason"]
    # a game missing from the games table (an imported trajectory) has nothing to replay
    table, _ = execute_alternatives([], rows[:1], {}, lambda f: None)
    assert table.column("status").to_pylist() == ["no_game"]


def test_reflections_and_their_sft_examples(played, tiny_model):
    from act_pipeline.act.prompts import State, agent_prompt
    from act_pipeline.models import load_model
    from act_pipeline.sampling.base import SamplingParams
    from act_pipeline.sampling.hf import TransformersSampler
    from act_pipeline.sampling.reflections import STOPS, write_reflections
    from act_pipeline.training.sft import reflection_dataset

    rows, alts = played["rows"], played["alts"]
    # outcomes as the outcomes asset writes them: state 2's replay failed
    outcomes = [{"state_id": r["state_id"], "is_expert": True, "action": r["expert_action"], "status": "ok",
                 "next_observation": f"after {r['expert_action']}"} for r in rows[:2]]
    outcomes += [{"state_id": rows[0]["state_id"], "is_expert": False, "action": a, "status": "ok",
                  "next_observation": "Nothing happens."} for a in alts[rows[0]["state_id"]]]
    outcomes.append({"state_id": rows[2]["state_id"], "is_expert": True, "action": rows[2]["expert_action"],
                     "status": "desync", "next_observation": None})
    model, tok = load_model(tiny_model)
    sampler = TransformersSampler(model, tok, batch_size=4, stop_strings=STOPS)
    table = write_reflections(sampler, tok, rows, outcomes, SamplingParams(n=1, temperature=0.0, max_new_tokens=6), 2)
    out = table.to_pylist()
    assert [r["state_id"] for r in out] == [r["state_id"] for r in rows]  # every state IL trains on
    assert [r["grounded"] for r in out] == [True, True, False]
    assert out[2]["reflection"] == ""  # never a reflection without executed outcomes
    assert [a["action"] for a in out[0]["alternatives"]] == alts[rows[0]["state_id"]] and out[1]["alternatives"] == []
    assert out[0]["expert_outcome"] == f"after {rows[0]['expert_action']}"
    assert all("</think>" not in r["reflection"] and "<action>" not in r["reflection"] for r in out)
    ds = reflection_dataset(out, tok, 2)
    for ex, r in zip(ds, out):
        assert ex["prompt"] == agent_prompt(tok, State.from_row(r), 2, thinking=True)  # it reasons first
        assert ex["completion"] == f"{r['reflection']}</think>\n<action>{r['expert_action']}</action>"


def test_the_report_grid_has_every_row_of_table_1(tmp_path):
    from act_pipeline.evaluation.metrics import Metric
    from act_pipeline.evaluation.report import write_report

    m = Metric("next_action_accuracy", 0.5, "valid_unseen", 2, 0, {}, [1, 0])
    results = {a: [m] for a in ("prompt_no_thinking", "il_baseline", "early_experience", "il_policy")}
    md = write_report(tmp_path, results, {"profile": "t", "seed": 0})["markdown"].read_text()
    grid = md.split("\n\n")[2].splitlines()[2:]
    assert [ln.split(" | ")[0].lstrip("| ") for ln in grid] == [
        "Prompt w/o thinking (base model)", "Prompt w/ thinking (base model)", "ACT only", "IL (SFT from base)",
        "Early Experience (self-reflection)", "IL w/ ACT", "RL (GRPO from base)", "RL w/ ACT"]
    assert grid[4] == "| Early Experience (self-reflection) | 50.0% [0–100] (N=2) |"
    assert grid[6] == "| RL (GRPO from base) | not run (the profile's `arms`) |"
    assert "| Early Experience (self-reflection) | 87.86 | 85.82 | 31.00 | 45.60 | `early_experience` |" in md
