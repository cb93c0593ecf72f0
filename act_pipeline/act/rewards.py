"""Reward functions as plain callables, in the signature TRL's ``GRPOTrainer`` calls them with.

TRL passes ``prompts``, ``completions`` (decoded with ``skip_special_tokens=True``),
``completion_ids`` (each completion's token ids, cut after the first EOS) and every extra dataset
column as keyword arguments, each a list aligned with ``completions``. Parsing is strict
(:mod:`act_pipeline.act.parsing`): a completion that hit the token limit before its closing tag
earns the malformed penalty, so GRPO learns to finish its answer. TRL generates without stop
strings, so a completion is truncated when its ids do not end with an EOS token (given to the
factories as ``eos_token_ids``).
"""

from __future__ import annotations

from collections.abc import Sequence

from act_pipeline.envs.actions import admissible_lookup, normalize_action
from act_pipeline.act.parsing import parse_action, parse_choice

CORRECT = 1.0
WRONG = 0.0
UNPARSABLE = -0.5


def judgement_reward(completion: str, expert_slot: int, penalty: float = UNPARSABLE,
                     candidates: Sequence[str] | None = None, truncated: bool | None = None,
                     thinking: bool = False) -> float:
    """Stage-2 (ACT) reward for one critic completion (strict :func:`parse_choice`).

    >>> judgement_reward("1</answer>", expert_slot=1)
    1.0
    >>> judgement_reward("2</answer>", expert_slot=1)
    0.0
    >>> judgement_reward("no idea", expert_slot=1)
    -0.5
    >>> judgement_reward("Okay, the task is to put the mug on shelf 1</answer>", expert_slot=1)
    -0.5
    >>> judgement_reward("1", expert_slot=1, truncated=True)  # cut off at the token limit
    -0.5
    >>> judgement_reward("go to shelf 1</answer>", 2, candidates=("look", "go to shelf 1"))
    1.0
    """
    choice = parse_choice(completion, candidates, truncated, thinking)
    if choice is None:
        return penalty
    return CORRECT if choice == int(expert_slot) else WRONG


def _text(c) -> str:
    # conversational completions arrive as [{"role": "assistant", "content": ...}]
    if isinstance(c, list):
        return "".join(m.get("content", "") for m in c)
    return str(c)


def _truncation(n: int, completion_ids: Sequence | None,
                eos_token_ids: Sequence[int] | None) -> list[bool | None]:
    """Per completion: True/False from its token ids (last id not an EOS = cut off at the limit),
    or None (the parser then reads ``.truncated``, a plain ``str`` never is) where TRL gave no ids
    or the factory no EOS ids.

    >>> _truncation(3, [[5, 2], [5, 6], []], [2])
    [False, True, True]
    >>> _truncation(1, None, [2])
    [None]
    """
    if completion_ids is None or not eos_token_ids:
        return [None] * n
    eos = {int(t) for t in eos_token_ids}
    return [not (len(ids) > 0 and int(ids[-1]) in eos) for ids in completion_ids]


def make_judgement_reward(penalty: float = UNPARSABLE, eos_token_ids: Sequence[int] | None = None,
                          thinking: bool = False, one_token_choice: bool = False):
    """A TRL reward function over a dataset with an ``expert_slot`` column (and optionally
    ``action_1``/``action_2``: a completion may then answer with a candidate's text).

    ``eos_token_ids`` (the trainer's EOS ids and pad id; see
    :func:`act_pipeline.training.act_grpo.stop_token_ids`) tell a completion that ended from one cut
    off at ``max_completion_length``; ``thinking`` when the prompts pre-fill ``<think>``.
    ``one_token_choice`` (``act.answer: choice``): generation was restricted to one answer token,
    so a completion is complete by construction (no EOS follows it) and parsed as it is.

    >>> fn = make_judgement_reward(eos_token_ids=[0])
    >>> fn(completions=["1</answer>", "1", "1", "Action 2"], completion_ids=[[7, 8], [7], [7, 0], [9, 0]],
    ...    expert_slot=[1, 1, 1, 1], action_1=["look"] * 4, action_2=["go to sink 1"] * 4)
    [1.0, -0.5, 1.0, 0.0]
    >>> make_judgement_reward(eos_token_ids=[0], one_token_choice=True)(
    ...    completions=["1", "2", ""], completion_ids=[[7], [8], [0]], expert_slot=[2, 2, 2])
    [0.0, 1.0, -0.5]
    """

    def act_judgement_reward(completions: Sequence, expert_slot: Sequence[int], completion_ids=None,
                             action_1: Sequence[str] | None = None, action_2: Sequence[str] | None = None,
                             **_) -> list[float]:
        cut = ([False] * len(completions) if one_token_choice
               else _truncation(len(completions), completion_ids, eos_token_ids))
        cands = (list(zip(action_1, action_2)) if action_1 is not None and action_2 is not None
                 else [None] * len(completions))
        return [judgement_reward(c if isinstance(c, str) else _text(c), s, penalty, cd, t, thinking)
                for c, s, cd, t in zip(completions, expert_slot, cands, cut)]

    return act_judgement_reward


EXPERT = 1.0
ADMISSIBLE = 0.1
MALFORMED = -0.5


def action_reward(completion: str, expert_action: str, admissible: Sequence[str], truncated: bool | None = None,
                  thinking: bool = False) -> float:
    """Stage-3 RL reward: 1.0 the expert action, 0.1 another admissible action, -0.5 malformed
    (strict :func:`parse_action`: no closing tag and cut off at the token limit is malformed).

    An action that parses but is not admissible earns 0.

    >>> action_reward("go to shelf 1</action>", "go to shelf 1", ["go to shelf 1", "look"])
    1.0
    >>> action_reward("look</action>", "go to shelf 1", ["go to shelf 1", "look"])
    0.1
    >>> action_reward("fly away</action>", "go to shelf 1", ["go to shelf 1", "look"])
    0.0
    >>> action_reward("", "go to shelf 1", ["go to shelf 1"])
    -0.5
    >>> action_reward("go to shelf 1", "go to shelf 1", ["go to shelf 1"], truncated=True)
    -0.5
    >>> action_reward("go to shelf 1\\nThen I will", "go to shelf 1", ["go to shelf 1"])
    -0.5
    """
    action = parse_action(completion, truncated, thinking)
    if action is None:
        return MALFORMED
    if action == normalize_action(expert_action):
        return EXPERT
    if action in admissible_lookup(admissible):
        return ADMISSIBLE
    return 0.0


def make_action_reward(eos_token_ids: Sequence[int] | None = None, thinking: bool = False):
    """A TRL reward function over a dataset with ``expert_action`` and ``admissible`` columns;
    ``eos_token_ids`` and ``thinking`` as in :func:`make_judgement_reward`.

    >>> fn = make_action_reward(eos_token_ids=[0])
    >>> fn(completions=["look</action>", "go to sink 1", "go to sink 1"], completion_ids=[[3, 4], [5], [5, 0]],
    ...    expert_action=["go to sink 1"] * 3, admissible=[["go to sink 1", "look"]] * 3)
    [0.1, -0.5, 1.0]
    """

    def rl_action_reward(completions: Sequence, expert_action: Sequence[str], admissible: Sequence,
                         completion_ids=None, **_) -> list[float]:
        cut = _truncation(len(completions), completion_ids, eos_token_ids)
        return [action_reward(c if isinstance(c, str) else _text(c), e, a, t, thinking)
                for c, e, a, t in zip(completions, expert_action, admissible, cut)]

    return rl_action_reward
