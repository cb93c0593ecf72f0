"""Parsers for what models really emit.

Prompts end with the opening tag pre-filled (``<action>`` / ``<answer>``): small models
rarely write tags unprompted. The parsers therefore accept a completion that starts *inside*
the tag as well as one that repeats the opening tag or wraps reasoning in ``<think>``.
"""

from __future__ import annotations

import re

from act_pipeline.act.normalize import normalize_action

_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL | re.IGNORECASE)


def _inside_tag(completion: str, tag: str) -> str | None:
    """Text of the (pre-filled) tag: up to its closing tag, or the first line if unclosed."""
    text = _THINK.sub("", completion)
    # with a pre-filled <think> the completion starts inside the reasoning: drop up to its end
    text = re.sub(r"^.*</think>", "", text, flags=re.DOTALL | re.IGNORECASE)
    # the model may have repeated the opening tag; take what follows the last one
    opens = [m.end() for m in re.finditer(rf"<{tag}>", text, re.IGNORECASE)]
    if opens:
        text = text[opens[-1]:]
    close = re.search(rf"</{tag}>", text, re.IGNORECASE)
    if close:
        body = text[: close.start()]
    else:
        lines = [ln for ln in text.strip().splitlines() if ln.strip()]
        body = lines[0] if lines else ""
        # an unclosed tag body that runs into another tag is cut there
        body = re.split(r"<[/a-zA-Z]", body)[0]
    body = body.strip()
    return body or None


def parse_action(completion: str) -> str | None:
    """The action a completion names (normalised), or None if there is none.

    >>> parse_action("go to shelf 1</action>")
    'go to shelf 1'
    >>> parse_action("<think>the apple is likely on the counter</think><action>Go to countertop 1</action>")
    'go to countertop 1'
    >>> parse_action("take apple 1 from table 1\\nThen I will...")
    'take apple 1 from table 1'
    >>> parse_action("</action>") is None
    True
    >>> parse_action("the mug is in the sink</think>\\n<action>go to sink 1</action>")
    'go to sink 1'
    """
    body = _inside_tag(completion, "action")
    if body is None:
        return None
    action = normalize_action(body)
    return action or None


_CHOICE = re.compile(r"(?:action\s*)?([12])\b", re.IGNORECASE)


def parse_choice(completion: str) -> int | None:
    """Which candidate (1 or 2) a critic completion picks, or None if unparsable.

    >>> parse_choice("2</answer>")
    2
    >>> parse_choice("Action 1</answer> because ...")
    1
    >>> parse_choice("<think>Action 2 repeats a step.</think><answer>1</answer>")
    1
    >>> parse_choice("both are fine</answer>") is None
    True
    >>> parse_choice("1 or 2</answer>") is None
    True
    """
    body = _inside_tag(completion, "answer")
    if body is None:
        return None
    found = {int(m.group(1)) for m in _CHOICE.finditer(body)}
    if len(found) != 1:
        return None
    return found.pop()
