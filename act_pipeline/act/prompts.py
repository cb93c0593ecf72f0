"""The agent prompt (next action) and the critic prompt (which of two actions is better).

Both are rendered through the model's own chat template and end with the opening answer tag
pre-filled, so even a 135M model answers in a parsable form. With ``thinking=True`` (models
that reason, e.g. Qwen3) the pre-fill is ``<think>`` instead and the model writes its
reasoning before the tag.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

AGENT_SYSTEM = (
    "You are an agent in a text-based environment. "
    "Choose the single best next action from the admissible actions."
)
CRITIC_SYSTEM = (
    "You are an expert judge of agents in a text-based environment. "
    "Decide which of two candidate next actions is better for completing the task."
)



@dataclass(frozen=True)
class State:
    """What the agent sees at one step."""

    task: str
    observation: str
    history: Sequence[tuple[str, str]]  # (action, the observation it was taken at), oldest first
    admissible: Sequence[str]

    @classmethod
    def from_row(cls, row: dict) -> State:
        """The state of a trajectory or pair row (``history``: a list of {action, observation}).

        >>> State.from_row({"task": "t", "observation": "o", "admissible": ["look"],
        ...                 "history": [{"action": "go", "observation": "o0"}]}).history
        [('go', 'o0')]
        """
        hist = [(h["action"], h["observation"]) for h in (row.get("history") or [])]
        return cls(task=row["task"], observation=row["observation"], history=hist, admissible=list(row["admissible"]))


def _state_block(state: State, history_len: int) -> str:
    lines = [f"Task: {state.task}"]
    hist = list(state.history)[-history_len:] if history_len > 0 else []
    if hist:
        lines.append("Recent history:")
        for act, obs in hist:
            lines.append(f"{obs}\n> {act}")
    lines.append(f"Current observation: {state.observation}")
    lines.append("Admissible actions: " + ", ".join(state.admissible))
    return "\n".join(lines)


def agent_messages(state: State, history_len: int = 3, thinking: bool = False) -> list[dict]:
    how = (
        "Think step by step inside <think></think>, then give the action inside <action></action>."
        if thinking
        else "Answer with exactly one of the admissible actions inside <action></action>."
    )
    user = f"{_state_block(state, history_len)}\n\nWhat is the next action? {how}"
    return [{"role": "system", "content": AGENT_SYSTEM}, {"role": "user", "content": user}]


def critic_messages(
    state: State, action_1: str, action_2: str, history_len: int = 3, thinking: bool = False
) -> list[dict]:
    how = (
        "Think inside <think></think>, then answer 1 or 2 inside <answer></answer>."
        if thinking
        else "Answer 1 or 2 inside <answer></answer>."
    )
    user = (
        f"{_state_block(state, history_len)}\n\n"
        f"Action 1: {action_1}\nAction 2: {action_2}\n\n"
        f"Which action is better? {how}"
    )
    return [{"role": "system", "content": CRITIC_SYSTEM}, {"role": "user", "content": user}]


def render(tokenizer, messages: list[dict], prefill: str, thinking: bool = False) -> str:
    """Chat-template the messages and append the pre-filled start of the answer."""
    # honoured by templates that know it (Qwen3 thinks unless told not to); others ignore it
    text = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True, enable_thinking=thinking
    )
    return text + ("<think>" if thinking else prefill)


def agent_prompt(tokenizer, state: State, history_len: int = 3, thinking: bool = False) -> str:
    return render(tokenizer, agent_messages(state, history_len, thinking), "<action>", thinking)


CHOICES = ("1", "2")  # the critic's answers, slot 1 and slot 2


def choice_token_ids(tokenizer, prefill: str = "<answer>") -> list[int]:
    """The token id of each answer in :data:`CHOICES` as the tokenizer writes it right after the
    pre-filled ``prefill`` (``act.answer`` / ``eval.judgement``: choice). An answer that is not one
    token there is an error: a restricted one-token answer could not spell it."""
    base = tokenizer(prefill, add_special_tokens=False)["input_ids"]
    ids = []
    for c in CHOICES:
        full = tokenizer(prefill + c, add_special_tokens=False)["input_ids"]
        if full[:len(base)] != base or len(full) != len(base) + 1:
            raise ValueError(f"answer {c!r} after {prefill!r} is {len(full) - len(base)} tokens for this tokenizer, "
                             "not one: the restricted critic answer (act.answer / eval.judgement: choice) needs "
                             "one token per answer; use free / generate")
        ids.append(int(full[-1]))
    if len(set(ids)) != len(ids):
        raise ValueError(f"the answers {CHOICES} share a token id ({ids})")
    return ids


def critic_prompt(
    tokenizer, state: State, action_1: str, action_2: str, history_len: int = 3,
    thinking: bool = False,
) -> str:
    msgs = critic_messages(state, action_1, action_2, history_len, thinking)
    return render(tokenizer, msgs, "<answer>", thinking)
