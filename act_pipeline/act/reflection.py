"""Early Experience (self-reflection) prompts: the model, shown what the expert action and the
alternatives led to when executed, writes why the expert action is the better one; SFT then trains
state → reflection + expert action (``act_pipeline.training.sft``).

Kept apart from ``prompts.py`` on purpose: that module's source keys the sample cache and versions
every stage, which this arm must leave as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

from act_pipeline.act.prompts import State, _state_block, render

# Our wording: the action is never called the expert's, the options are
# named inline (no "Action 1"), and outcomes are to be spoken of as expectations, since the trained
# agent reasons before acting and sees no outcome (Early Experience's notes on label and outcome leaks)
REFLECTION_SYSTEM = (
    "You are an agent in a text-based environment, thinking over a decision. "
    "Write your own brief reasoning, in the first person, as you would think it before acting."
)
OUTCOME_CHARS = 300  # each outcome shown to the reflecting model, cut to this many characters


def reflection_messages(state: State, action: str, outcome: str, alternatives: Sequence[tuple[str, str]],
                        history_len: int = 3) -> list[dict]:
    """The reflection prompt: the state, the action taken and what it led to, each alternative and
    what it led to (``alternatives``: (action, next observation)).

    >>> m = reflection_messages(State("t", "o", [], ["a", "b"]), "a", "ok", [("b", "Nothing happens.")])
    >>> print(m[1]["content"].split("\\n\\n")[1])
    I will do: a
    (It would lead to: ok)
    Other things I could do, and where each would lead:
    - b (Nothing happens.)
    """
    cut = lambda s: s if len(s) <= OUTCOME_CHARS else s[:OUTCOME_CHARS - 3] + "..."  # noqa: E731
    lines = [f"I will do: {action}", f"(It would lead to: {cut(outcome)})"]
    if alternatives:
        lines.append("Other things I could do, and where each would lead:")
        lines += [f"- {a} ({cut(o)})" for a, o in alternatives]
    user = (f"{_state_block(state, history_len)}\n\n" + "\n".join(lines) + "\n\n"
            f"In two or three sentences, reason about what the task needs now and why \"{action}\" serves it "
            "better than the other things I could do. The outcomes in brackets are for judging only: speak of "
            "what an action should do, never of what it showed. Do not number the options.")
    return [{"role": "system", "content": REFLECTION_SYSTEM}, {"role": "user", "content": user}]


def reflection_prompt(tokenizer, state: State, action: str, outcome: str, alternatives: Sequence[tuple[str, str]],
                      history_len: int = 3) -> str:
    return render(tokenizer, reflection_messages(state, action, outcome, alternatives, history_len), "")


def clean_reflection(text: str) -> str:
    """A generated reflection as an SFT target's reasoning: cut at any answer or thinking tag (the
    target closes the reasoning itself), whitespace trimmed.

    >>> clean_reflection("  I need the key first.</think><action>x")
    'I need the key first.'
    """
    for tag in ("</think>", "<think>", "<action>", "</action>"):
        text = text.split(tag, 1)[0]
    return text.strip()
