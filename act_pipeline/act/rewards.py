"""Reward functions as plain callables, in the signature TRL's ``GRPOTrainer`` calls them with.

TRL passes ``prompts``, ``completions`` and every extra dataset column as keyword arguments,
each a list aligned with ``completions``.
"""

from __future__ import annotations

from collections.abc import Sequence

from act_pipeline.act.normalize import admissible_lookup, normalize_action
from act_pipeline.act.parsing import parse_action, parse_choice

CORRECT = 1.0
WRONG = 0.0
UNPARSABLE = -0.5


def judgement_reward(completion: str, expert_slot: int, penalty: float = UNPARSABLE) -> float:
    """Stage-2 (ACT) reward for one critic completion.

    >>> judgement_reward("1</answer>", expert_slot=1)
    1.0
    >>> judgement_reward("2</answer>", expert_slot=1)
    0.0
    >>> judgement_reward("no idea", expert_slot=1)
    -0.5
    """
    choice = parse_choice(completion)
    if choice is None:
        return penalty
    return CORRECT if choice == int(expert_slot) else WRONG


def _text(c) -> str:
    # conversational completions arrive as [{"role": "assistant", "content": ...}]
    if isinstance(c, list):
        return "".join(m.get("content", "") for m in c)
    return str(c)


def make_judgement_reward(penalty: float = UNPARSABLE):
    """A TRL reward function over a dataset with an ``expert_slot`` column."""

    def act_judgement_reward(completions: Sequence, expert_slot: Sequence[int], **_) -> list[float]:
        return [judgement_reward(_text(c), s, penalty) for c, s in zip(completions, expert_slot)]

    return act_judgement_reward


EXPERT = 1.0
ADMISSIBLE = 0.1
MALFORMED = -0.5


def action_reward(completion: str, expert_action: str, admissible: Sequence[str]) -> float:
    """Stage-3 RL reward: 1.0 the expert action, 0.1 another admissible action, -0.5 malformed.

    An action that parses but is not admissible earns 0.

    >>> action_reward("go to shelf 1</action>", "go to shelf 1", ["go to shelf 1", "look"])
    1.0
    >>> action_reward("look</action>", "go to shelf 1", ["go to shelf 1", "look"])
    0.1
    >>> action_reward("fly away</action>", "go to shelf 1", ["go to shelf 1", "look"])
    0.0
    >>> action_reward("", "go to shelf 1", ["go to shelf 1"])
    -0.5
    """
    action = parse_action(completion)
    if action is None:
        return MALFORMED
    if action == normalize_action(expert_action):
        return EXPERT
    if action in admissible_lookup(admissible):
        return ADMISSIBLE
    return 0.0


def make_action_reward():
    """A TRL reward function over a dataset with ``expert_action`` and ``admissible`` columns."""

    def rl_action_reward(completions: Sequence, expert_action: Sequence[str], admissible: Sequence, **_) -> list[float]:
        return [action_reward(_text(c), e, a) for c, e, a in zip(completions, expert_action, admissible)]

    return rl_action_reward
