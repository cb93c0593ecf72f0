"""The metrics, end to end with scripted policies: the real metric code, real ALFWorld games and
expert states, and a :class:`Sampler` that answers by rule instead of a model. A policy whose
answers are known gives a number that is known exactly — so a metric that rewards non-answers,
or that sends garbage to the game, shows up here."""

import pytest

from act_pipeline.act.prompts import State, agent_prompt
from act_pipeline.data.trajectories import play_expert
from act_pipeline.envs import alfworld as aw
from act_pipeline.evaluation.metrics import (NOTHING_HAPPENS, Metric, judgement_accuracy, next_action_accuracy,
                                             rollout_success)
from act_pipeline.sampling.base import Completion

from .scripted import TOK, Scripted

HL = 2  # history length, for the expert rows and the prompts alike
FAST_TYPES = ("look_at_obj_in_light", "pick_and_place_simple")  # the planner solves these in seconds


@pytest.fixture(scope="module")
def expert(alfworld_data, tmp_path_factory):
    """Two real valid_seen games, their expert rows (planner), and prompt -> expert action."""
    out = tmp_path_factory.mktemp("games")
    specs = [s for s in aw.discover_games(alfworld_data, "valid_seen") if s.task_type in FAST_TYPES]
    games, rows = [], []
    for i, s in enumerate(aw.select_balanced(specs, 2)):
        g = {"game_id": s.game_id, "split": "valid_seen", "task_type": s.task_type,
             "gamefile": str(aw.build_game(s.path, out / str(i)))}
        env = aw.AlfworldGame(g["gamefile"], "planner")
        try:
            r, won = play_expert(env, g["game_id"], g["split"], g["task_type"], 30, HL)
        finally:
            env.close()
        assert won, g
        games.append(g)
        rows += r
    plan = {agent_prompt(TOK, State.from_row(r), HL): r["expert_action"] for r in rows}
    assert len(plan) == len(rows)  # every state renders to its own prompt
    return games, rows, plan


def _pairs(rows):
    """One contrast pair per expert state: the expert action against another admissible one, the
    expert in slot 1 at every third state (so slot 1 is not half of them)."""
    pairs = []
    for i, r in enumerate(rows):
        alt = next(a for a in r["admissible"] if a != r["expert_action"])
        slot = 1 if i % 3 == 0 else 2
        a1, a2 = (r["expert_action"], alt) if slot == 1 else (alt, r["expert_action"])
        pairs.append({**r, "alternative": alt, "action_1": a1, "action_2": a2, "expert_slot": slot})
    return pairs


def _expert_policy(plan):
    def answer(prompt, k):
        if prompt not in plan:
            raise AssertionError("the scripted expert was asked about a state the expert never saw")
        return f"{plan[prompt]}</action>"
    return answer


# ---- next-action accuracy -------------------------------------------------------------------

def test_the_expert_policy_scores_exactly_one(expert):
    _, rows, plan = expert
    m = next_action_accuracy(Scripted(_expert_policy(plan)), TOK, rows, "valid_seen", 0, HL)
    assert m.value == 1.0 and m.n == len(rows) and m.outcomes == [1] * len(rows)
    assert m.detail["parsed"] == len(rows) and m.detail["admissible"] == len(rows)
    assert m.detail["truncated"] == 0 and m.detail["truncation_rate"] == 0.0


@pytest.mark.parametrize("answer", [
    "I think I should go to the countertop first</action>",  # a sentence, not an action
    "go to countertop 1\nthen take the mug",  # two lines, no closing tag
    "<think>the mug is probably on the countertop",  # reasoning never closed
])
def test_unparsable_next_actions_count_wrong(expert, answer):
    _, rows, _ = expert
    m = next_action_accuracy(Scripted(lambda p, k: answer), TOK, rows, "valid_seen", 0, HL)
    assert m.value == 0.0 and m.detail["parsed"] == (len(rows) if answer.endswith("</action>") else 0)


def test_a_truncated_expert_action_counts_wrong(expert):
    _, rows, plan = expert
    # the expert's own action, but cut off at the token limit before </action>: it may be incomplete
    cut = Scripted(lambda p, k: Completion(plan[p], truncated=True))
    m = next_action_accuracy(cut, TOK, rows, "valid_seen", 0, HL)
    assert m.value == 0.0 and m.detail["parsed"] == 0
    assert m.detail["truncated"] == len(rows) and m.detail["truncation_rate"] == 1.0
    # the same text at end of sequence is a complete answer
    m = next_action_accuracy(Scripted(lambda p, k: Completion(plan[p])), TOK, rows, "valid_seen", 0, HL)
    assert m.value == 1.0 and m.detail["truncated"] == 0


# ---- judgement accuracy ---------------------------------------------------------------------

def test_always_one_scores_the_share_of_pairs_with_the_expert_in_slot_1(expert):
    _, rows, _ = expert
    pairs = _pairs(rows)
    share = sum(p["expert_slot"] == 1 for p in pairs) / len(pairs)
    assert 0 < share < 0.5
    m = judgement_accuracy(Scripted(lambda p, k: "1</answer>"), TOK, pairs, "valid_seen", 0, HL)
    assert m.value == share and m.detail["parsed"] == len(pairs) and m.detail["picked_slot_1"] == len(pairs)
    assert m.outcomes == [int(p["expert_slot"] == 1) for p in pairs]
    assert Metric.from_dict(m.to_dict()) == m


def test_naming_the_expert_action_picks_its_slot(expert):
    _, rows, _ = expert
    pairs = _pairs(rows)
    by_prompt = {}

    def answer(prompt, k):
        return by_prompt[prompt] + "</answer>"

    from act_pipeline.act.prompts import critic_prompt

    for p in pairs:
        by_prompt[critic_prompt(TOK, State.from_row(p), p["action_1"], p["action_2"], HL)] = p["expert_action"]
    m = judgement_accuracy(Scripted(answer), TOK, pairs, "valid_seen", 0, HL)
    assert m.value == 1.0 and m.detail["parsed"] == len(pairs)


@pytest.mark.parametrize("answer", [
    "Okay, the task is to put the mug on shelf 1</answer>",
    "1 or 2</answer>",
    Completion("go to cabinet 12", truncated=True),
    "<think>Action 1 looks right",
])
def test_unparsable_judgements_count_wrong(expert, answer):
    _, rows, _ = expert
    pairs = _pairs(rows)
    m = judgement_accuracy(Scripted(lambda p, k: answer), TOK, pairs, "valid_seen", 0, HL)
    assert m.value == 0.0 and m.detail["parsed"] == 0 and m.outcomes == [0] * len(pairs)


def test_a_truncated_right_answer_counts_wrong(expert):
    _, rows, _ = expert
    pairs = [dict(p, expert_slot=1) for p in _pairs(rows)]
    m = judgement_accuracy(Scripted(lambda p, k: Completion("1", truncated=True)), TOK, pairs, "valid_seen", 0, HL)
    assert m.value == 0.0 and m.detail["truncated"] == len(pairs) and m.detail["truncation_rate"] == 1.0
    m = judgement_accuracy(Scripted(lambda p, k: Completion("1", truncated=False)), TOK, pairs, "valid_seen", 0, HL)
    assert m.value == 1.0 and m.detail["truncated"] == 0


def test_several_samples_give_each_item_the_share_it_got_right(expert):
    _, rows, plan = expert
    pairs = [dict(p, expert_slot=1) for p in _pairs(rows)]
    # 4 samples per item; samples 0 and 3 right, 1 wrong, 2 cut off
    script = {0: "1</answer>", 1: "2</answer>", 2: Completion("1", truncated=True), 3: "Action 1</answer>"}
    sampler = Scripted(lambda p, k: script[k])
    m = judgement_accuracy(sampler, TOK, pairs, "valid_seen", 0, HL, temperature=0.7, samples=4)
    assert sampler.calls[-1].n == 4 and sampler.calls[-1].temperature == 0.7
    assert m.outcomes == [0.5] * len(pairs) and m.value == 0.5 and m.n == len(pairs)
    assert m.detail["completions"] == 4 * len(pairs) and m.detail["parsed"] == 3 * len(pairs)
    assert m.detail["truncated"] == len(pairs) and m.detail["truncation_rate"] == 0.25
    lo, hi = m.ci95()
    assert lo == hi == 0.5  # bootstrap over items, each 0.5
    assert Metric.from_dict(m.to_dict()) == m
    # greedy is one sample, whatever `samples` says
    m = judgement_accuracy(sampler, TOK, pairs, "valid_seen", 0, HL, temperature=0.0, samples=4)
    assert sampler.calls[-1].n == 1 and m.value == 1.0 and m.outcomes == [1] * len(pairs)
    # next-action accuracy the same way: samples 0-2 name the expert's action, sample 3 is cut off
    acts = Scripted(lambda p, k: Completion(plan[p], truncated=(k == 3)))
    m = next_action_accuracy(acts, TOK, rows, "valid_seen", 0, HL, temperature=1.0, samples=4)
    assert m.outcomes == [0.75] * len(rows) and m.detail["truncation_rate"] == 0.25


# ---- rollouts in real ALFWorld games --------------------------------------------------------

class CountingGame(aw.AlfworldGame):
    """A real game that counts the commands sent to it."""

    sent: list = []

    def step(self, command):
        CountingGame.sent.append(command)
        return super().step(command)


def test_replaying_the_expert_plan_wins_every_game(expert):
    games, rows, plan = expert
    m, eps = rollout_success(Scripted(_expert_policy(plan)), TOK, games, "valid_seen", 0, 30,
                             lambda f: aw.AlfworldGame(f), HL, log=lambda s: None)
    assert m.value == 1.0 and m.n == len(games) and m.outcomes == [1] * len(games)
    steps = {g["game_id"]: sum(r["game_id"] == g["game_id"] for r in rows) for g in games}
    assert {ep.game_id: ep.steps for ep in eps} == steps  # the expert's plan, step for step
    assert m.detail["unparsable_steps"] == 0 and m.detail["parsed"] == m.detail["steps"] == sum(steps.values())
    assert m.detail["truncated"] == 0 and m.detail["truncation_rate"] == 0.0
    assert [a for a, _ in eps[0].trace] == [r["expert_action"] for r in rows if r["game_id"] == games[0]["game_id"]]


def test_unparsable_steps_are_never_sent_to_the_game(expert):
    games, _, plan = expert
    CountingGame.sent = []
    # the expert's action, cut off before </action> at the token limit: never sent
    cut = Scripted(lambda p, k: Completion(plan.get(p, "go to"), truncated=True))
    m, eps = rollout_success(cut, TOK, games[:1], "valid_seen", 0, 3, lambda f: CountingGame(f), HL,
                             log=lambda s: None)
    assert CountingGame.sent == []  # the game was never stepped
    assert m.value == 0.0 and eps[0].steps == 3 and eps[0].unparsable == 3 and eps[0].truncated == 3
    assert m.detail["unparsable_steps"] == 3 and m.detail["parsed"] == 0
    assert m.detail["truncated"] == 3 and m.detail["truncation_rate"] == 1.0
    assert all(a.startswith("[unparsable: ") and obs == NOTHING_HAPPENS for a, obs in eps[0].trace)
    # prose that mentions an action is not an action either
    CountingGame.sent = []
    prose = Scripted(lambda p, k: "Okay, the task is to look at the bowl\nunder the desklamp")
    m, eps = rollout_success(prose, TOK, games[:1], "valid_seen", 0, 2, lambda f: CountingGame(f), HL,
                             log=lambda s: None)
    assert CountingGame.sent == [] and m.detail["unparsable_steps"] == 2 and m.detail["truncated"] == 0
    assert eps[0].trace[0][0].startswith("[unparsable: Okay, the task is")


def test_several_episodes_per_game_give_the_share_won(expert):
    games, _, plan = expert
    sampler = Scripted(_expert_policy(plan))
    m, eps = rollout_success(sampler, TOK, games[:1], "valid_seen", 0, 30, lambda f: aw.AlfworldGame(f), HL,
                             log=lambda s: None, temperature=1.0, samples=2)
    assert len(eps) == 2 and [ep.sample for ep in eps] == [0, 1] and all(ep.won for ep in eps)
    assert m.n == 1 and m.outcomes == [1.0] and m.detail["episodes"] == 2 and m.detail["won"] == 2
    assert all(c.temperature == 1.0 and c.n == 1 for c in sampler.calls)
