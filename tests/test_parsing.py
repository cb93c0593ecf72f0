"""The strict parsers, table-driven: what counts as an answer, and what a non-answer looks like.

Each row: the completion, whether it hit the token limit (``truncated``), whether the prompt
pre-filled ``<think>`` (``thinking``), and the parse. Completions start after the pre-filled
opening tag (``<answer>`` / ``<action>``) or after ``<think>``.
"""

import pytest

from act_pipeline.act.parsing import parse_action, parse_choice
from act_pipeline.act.rewards import action_reward, judgement_reward, make_action_reward, make_judgement_reward
from act_pipeline.sampling.base import Completion

CANDS = ("look", "go to shelf 1")

CHOICES = [
    # (completion, truncated, thinking, candidates, expected)
    ("1</answer>", False, False, None, 1),
    ("Action 2</answer>", False, False, None, 2),
    ("action 1</answer>", False, False, None, 1),
    ("ACTION 2.</answer>", False, False, None, 2),
    ("2)</answer>", False, False, None, 2),
    ("  1  </answer>", False, False, None, 1),
    ("1</ANSWER>", False, False, None, 1),
    ("1</answer> because it moves towards the goal", True, False, None, 1),  # closed, then cut: fine
    ("2", False, False, None, 2),  # ended at end of sequence: the rest is the body
    ("2", True, False, None, None),  # a bare 2 that hit the limit may be "2 or 1 ..."
    ("1 or 2</answer>", False, False, None, None),
    ("1 and 2</answer>", False, False, None, None),
    ("Action 1 is better</answer>", False, False, None, None),
    ("Okay, the task is to put the mug on shelf 1</answer>", False, False, None, None),
    ("Okay, the task is to put the mug on shelf 1", True, False, None, None),
    ("go to cabinet 12", True, False, None, None),
    ("neither</answer>", False, False, None, None),
    ("</answer>", False, False, None, None),
    ("", False, False, None, None),
    ("12</answer>", False, False, None, None),
    ("Action: 1</answer>", False, False, None, None),
    ("1\n2", False, False, None, None),
    # the opening tag repeated: what follows the last one
    ("<answer>1</answer>", False, False, None, 1),
    ("<answer><answer>2</answer>", False, False, None, 2),
    ("Let me answer. <answer>2</answer>", False, False, None, 2),
    ("<answer>2", True, False, None, None),
    # reasoning
    ("<think>Action 1 wastes a step</think><answer>2</answer>", False, False, None, 2),
    ("reasoning</think><answer>1</answer>", False, True, None, 1),
    ("reasoning</think>\n\n<answer> 1 </answer>", False, True, None, 1),
    ("reasoning</think><answer>1", False, True, None, 1),  # ended at EOS after the answer
    ("reasoning</think><answer>1", True, True, None, None),
    ("reasoning</think>1</answer>", False, True, None, None),  # after </think> the answer needs its tag
    ("<think>Action 1 is clearly better because", True, False, None, None),
    ("<think>Action 1 is clearly better", False, False, None, None),  # never closed, even at EOS
    ("Action 1 is clearly better because", True, True, None, None),
    ("1</answer>", False, True, None, None),  # thinking prompt, but the reasoning was never closed
    ("a</think><answer>1</answer><think>more", False, True, None, None),  # a new unclosed reasoning block
    ("<answer>2</answer> I think</think><answer>1</answer>", False, True, None, 1),
    # candidate text, mapped to its slot
    ("go to shelf 1</answer>", False, False, CANDS, 2),
    ("Go to Shelf 1.</answer>", False, False, CANDS, 2),
    ("look</answer>", False, False, CANDS, 1),
    ("Action 2: go to shelf 1</answer>", False, False, CANDS, 2),
    ("Action 1: go to shelf 1</answer>", False, False, CANDS, None),  # contradicts itself
    ("go to shelf 1</answer>", False, False, None, None),  # no candidates given
    ("go to shelf 10</answer>", False, False, CANDS, None),
    ("go to shelf 1", True, False, CANDS, None),  # maybe "go to shelf 12", cut off
    ("go to shelf 1", False, False, CANDS, 2),
    ("I would go to shelf 1</answer>", False, False, CANDS, None),
    ("go to shelf 1</answer>", False, False, ("go to shelf 1", "Go to shelf 1."), None),  # ambiguous
]


@pytest.mark.parametrize("completion,truncated,thinking,candidates,expected", CHOICES)
def test_parse_choice(completion, truncated, thinking, candidates, expected):
    assert parse_choice(completion, candidates, truncated=truncated, thinking=thinking) == expected
    # the flag may come with the completion itself (what the samplers return)
    assert parse_choice(Completion(completion, truncated), candidates, thinking=thinking) == expected


ACTIONS = [
    # (completion, truncated, thinking, expected)
    ("go to sink 1</action>", False, False, "go to sink 1"),
    ("Go to  Sink 1.</action>", False, False, "go to sink 1"),
    ("<action>open drawer 2</action>", False, False, "open drawer 2"),
    ("go to sink 1</action> and then", True, False, "go to sink 1"),
    ("go to sink 1", False, False, "go to sink 1"),  # ended at EOS
    ("go to cabinet 1", True, False, None),  # maybe "go to cabinet 12", cut off
    ("go to cabinet 12", True, False, None),
    ("take apple 1 from table 1\nThen I will", False, False, None),
    ("take apple 1 from table 1\nThen I will", True, False, None),
    ("take apple 1 from table 1\n</action>", False, False, "take apple 1 from table 1"),
    ("go to sink 1\ngo to sink 2</action>", False, False, None),
    ("</action>", False, False, None),
    ("   ", False, False, None),
    ("", False, False, None),
    ("look</answer>", False, False, None),  # the wrong closing tag
    ("<action>go to sink 1", True, False, None),
    # reasoning
    ("the mug is in the sink</think>\n<action>go to sink 1</action>", False, True, "go to sink 1"),
    ("<think>need the key</think><action>take keychain 1 from drawer 2</action>", False, False,
     "take keychain 1 from drawer 2"),
    ("the mug is in the sink</think>\n<action>go to sink 1", False, True, "go to sink 1"),
    ("the mug is in the sink</think>\n<action>go to sink 1", True, True, None),
    ("the mug is in the sink</think>\ngo to sink 1</action>", False, True, None),
    # a truncated reasoning line never parses as an action
    ("I should go to sink 1 to find the mug", True, True, None),
    ("I should go to sink 1", True, False, None),
    ("I should go to sink 1", False, True, None),  # a thinking prompt: the reasoning was never closed
    ("<think>I should go to sink 1", False, False, None),
    ("<think>I should go to sink 1</think>", False, False, None),  # closed, but no action after it
]


@pytest.mark.parametrize("completion,truncated,thinking,expected", ACTIONS)
def test_parse_action(completion, truncated, thinking, expected):
    assert parse_action(completion, truncated=truncated, thinking=thinking) == expected
    assert parse_action(Completion(completion, truncated), thinking=thinking) == expected


def test_a_plain_string_is_never_truncated_and_the_argument_wins():
    assert parse_choice("2") == 2 and parse_action("look") == "look"
    assert parse_choice(Completion("2", truncated=True), truncated=False) == 2  # an explicit flag wins
    assert parse_choice(Completion("2", truncated=False), truncated=True) is None


def test_rewards_penalise_truncation_and_non_answers():
    assert judgement_reward("go to cabinet 12", 1) == -0.5  # no number is read out of a sentence
    assert judgement_reward(Completion("1", truncated=True), 1) == -0.5
    assert judgement_reward(Completion("1", truncated=False), 1) == 1.0
    assert judgement_reward("go to shelf 1</answer>", 2, candidates=CANDS) == 1.0
    assert judgement_reward("look</answer>", 2, candidates=CANDS) == 0.0
    assert action_reward(Completion("go to sink 1", truncated=True), "go to sink 1", ["go to sink 1"]) == -0.5
    assert action_reward("I should go to sink 1", "go to sink 1", ["go to sink 1"], thinking=True) == -0.5


def test_trl_reward_functions_read_truncation_from_completion_ids():
    # TRL cuts completion_ids after the first EOS: ids ending in an EOS ended; others hit the limit
    eos = [0, 9]
    fn = make_judgement_reward(eos_token_ids=eos)
    got = fn(prompts=["p"] * 5, completions=["1", "1", "1</answer> because", "look", "go to shelf 1"],
             completion_ids=[[5, 0], [5], [5, 6, 7], [3, 9], [4, 4]], expert_slot=[1, 1, 1, 1, 2],
             action_1=["look"] * 5, action_2=["go to shelf 1"] * 5, trainer_state=None)
    assert got == [1.0, -0.5, 1.0, 1.0, -0.5]
    # without candidate columns the candidate text is not an answer
    assert fn(completions=["look"], completion_ids=[[3, 0]], expert_slot=[1]) == [-0.5]
    # conversational completions
    assert fn(completions=[[{"role": "assistant", "content": "2"}]], completion_ids=[[1, 0]], expert_slot=[2]) == [1.0]
    # thinking: the reasoning must be closed before the answer
    th = make_judgement_reward(eos_token_ids=eos, thinking=True)
    got = th(completions=["1", "x</think><answer>1"], completion_ids=[[1, 0], [1, 0]], expert_slot=[1, 1])
    assert got == [-0.5, 1.0]
    rl = make_action_reward(eos_token_ids=eos)
    adm = [["go to sink 1", "look"]] * 3
    assert rl(completions=["go to sink 1", "go to sink 1", "look</action>"], completion_ids=[[1, 0], [1, 2], [1, 2]],
              expert_action=["go to sink 1"] * 3, admissible=adm) == [1.0, -0.5, 0.1]
    # no ids (or no EOS ids given): the Completion flag, else not truncated
    assert make_action_reward()(completions=[Completion("look", True), "look"], expert_action=["look"] * 2,
                                admissible=[["look"]] * 2) == [-0.5, 1.0]
