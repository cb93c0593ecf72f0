"""Strict parsers for what models really emit.

Prompts end with the opening tag pre-filled (``<answer>`` / ``<action>``), or with ``<think>``
when thinking is on. The rules (the same for both parsers):

* **Reasoning.** A ``<think>`` block must be closed: with ``thinking=True`` (the prompt pre-filled
  ``<think>``) or a ``<think>`` in the completion, no ``</think>`` means unparsable. After the
  last ``</think>`` the answer must be inside its own opening tag (``<answer>`` / ``<action>``).
* **Repeated opening tag.** The model may repeat the opening tag; the body starts after the last one.
* **Body.** The text up to the closing tag. Without a closing tag the body is the rest of the text
  only when the completion ended on its own (end of sequence); a *truncated* completion (it hit the
  token limit: ``truncated=True``, or a :class:`~act_pipeline.sampling.base.Completion` whose
  ``.truncated`` is set) without its closing tag is unparsable — ``go to cabinet 1`` may be
  ``go to cabinet 12`` cut off.
* **A choice** is a body that is a standalone choice — ``1``, ``2``, ``Action 1``, ``action 2``,
  optionally followed by ``.`` or ``)`` — or, given ``candidates=(action_1, action_2)``, exactly one
  candidate's text (after :func:`~act_pipeline.envs.actions.normalize_action`), mapped to its slot.
  Anything else (``1 or 2``, a sentence that mentions a number) is unparsable.
* **An action** is a body that is one non-empty line without tags, normalised.

Whitespace around tags and bodies and the case of tags and ``Action`` are tolerated.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from act_pipeline.envs.actions import normalize_action

_THINK_OPEN = re.compile(r"<\s*think\s*>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"<\s*/\s*think\s*>", re.IGNORECASE)
_ANY_TAG = re.compile(r"<\s*/?\s*[a-zA-Z|]")
_CHOICE = re.compile(r"(?:action\s*)?([12])\s*[.)]?", re.IGNORECASE)
_SLOT_PREFIX = re.compile(r"action\s*([12])\s*[:\-]", re.IGNORECASE)


def _truncated(completion, truncated: bool | None) -> bool:
    # the same as act_pipeline.sampling.base.is_truncated (act/ does not import sampling/)
    return bool(getattr(completion, "truncated", False)) if truncated is None else bool(truncated)


def answer_body(completion: str, tag: str, truncated: bool | None = None, thinking: bool = False) -> str | None:
    """The stripped text inside ``<tag>…</tag>`` under the module's rules, or None.

    >>> answer_body("1</answer>", "answer")
    '1'
    >>> answer_body("1", "answer", truncated=True) is None
    True
    >>> answer_body("I think</think>\\n<answer> 2 </answer>", "answer", thinking=True)
    '2'
    >>> answer_body("<answer>2</answer>", "answer", thinking=True) is None  # reasoning never closed
    True
    """
    text = str(completion)
    closes = list(_THINK_CLOSE.finditer(text))
    if closes:
        text = text[closes[-1].end():]
        must_open = True  # after the reasoning the answer is in its own tag
    elif thinking or _THINK_OPEN.search(text):
        return None  # the reasoning was never closed
    else:
        must_open = False  # the prompt pre-filled the opening tag
    if _THINK_OPEN.search(text):
        return None  # a new reasoning block after the last </think>, never closed
    opens = list(re.finditer(rf"<\s*{tag}\s*>", text, re.IGNORECASE))
    if opens:
        text = text[opens[-1].end():]
    elif must_open:
        return None
    close = re.search(rf"<\s*/\s*{tag}\s*>", text, re.IGNORECASE)
    if close:
        body = text[: close.start()]
    elif _truncated(completion, truncated):
        return None  # cut off before the closing tag: the answer may be incomplete
    else:
        body = text
    body = body.strip()
    return body or None


def parse_action(completion: str, truncated: bool | None = None, thinking: bool = False) -> str | None:
    """The action a completion names (normalised), or None if there is none.

    ``truncated=None`` reads ``completion.truncated`` (a plain ``str`` never is); ``thinking=True``
    when the prompt pre-filled ``<think>`` (the reasoning must then be closed).

    >>> parse_action("go to shelf 1</action>")
    'go to shelf 1'
    >>> parse_action("<think>the apple is likely on the counter</think><action>Go to countertop 1</action>")
    'go to countertop 1'
    >>> parse_action("go to sink 1")  # ended at end of sequence: the rest is the body
    'go to sink 1'
    >>> parse_action("go to cabinet 1", truncated=True) is None  # maybe "go to cabinet 12", cut off
    True
    >>> parse_action("take apple 1 from table 1\\nThen I will") is None  # not one line
    True
    >>> parse_action("</action>") is None
    True
    >>> parse_action("the mug is in the sink</think>\\n<action>go to sink 1</action>")
    'go to sink 1'
    >>> parse_action("the mug is in the sink, so I will go to sink 1", thinking=True) is None
    True
    """
    body = answer_body(completion, "action", truncated, thinking)
    if body is None or "\n" in body or _ANY_TAG.search(body):
        return None
    action = normalize_action(body)
    return action or None


def parse_choice(completion: str, candidates: Sequence[str] | None = None, truncated: bool | None = None,
                 thinking: bool = False) -> int | None:
    """Which candidate (1 or 2) a critic completion picks, or None if unparsable.

    ``candidates=(action_1, action_2)`` also accepts the exact text of one of them;
    ``truncated``/``thinking`` as in :func:`parse_action`.

    >>> parse_choice("2</answer>")
    2
    >>> parse_choice("Action 1</answer> because ...")
    1
    >>> parse_choice("action 2.")
    2
    >>> parse_choice("<think>Action 2 repeats a step.</think><answer>1</answer>")
    1
    >>> parse_choice("both are fine</answer>") is None
    True
    >>> parse_choice("1 or 2</answer>") is None
    True
    >>> parse_choice("Okay, the task is to put the mug on shelf 1</answer>") is None
    True
    >>> parse_choice("2", truncated=True) is None  # a bare 2 that hit the token limit
    True
    >>> parse_choice("Go to shelf 1.</answer>", candidates=("look", "go to shelf 1"))
    2
    >>> parse_choice("Action 1: go to shelf 1</answer>", candidates=("look", "go to shelf 1")) is None
    True
    """
    body = answer_body(completion, "answer", truncated, thinking)
    if body is None:
        return None
    m = _CHOICE.fullmatch(body)
    if m:
        return int(m.group(1))
    if candidates is None or "\n" in body or _ANY_TAG.search(body):
        return None
    text = normalize_action(body)
    if not text:
        return None
    slots = [i + 1 for i, c in enumerate(list(candidates)[:2]) if normalize_action(c) == text]
    if len(slots) != 1:
        return None
    label = _SLOT_PREFIX.match(body)
    if label and int(label.group(1)) != slots[0]:
        return None  # "Action 1: <the text of action 2>" contradicts itself
    return slots[0]
