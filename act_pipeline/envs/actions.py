"""Action normalisation: the one definition of "the same action" used everywhere.

Alternatives equal to the expert action *after normalisation* are dropped, admissibility is
checked on normalised strings, and next-action accuracy compares normalised strings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_WS = re.compile(r"\s+")
_PREFIX = re.compile(r"^(?:>\s*|action\s*\d*\s*[:\-]\s*|next action\s*[:\-]\s*)+", re.IGNORECASE)
_TRAILING = re.compile(r"[\s\.\!\?,;:'\"`\*]+$")
_LEADING = re.compile(r"^[\s'\"`\*\-]+")


def normalize_action(text: str) -> str:
    """Canonical form of an action string.

    Lower-case, whitespace collapsed, quotes/markdown and a leading ``Action:``/``>`` prefix and
    trailing punctuation removed.

    >>> normalize_action("  Go to  Shelf 1. ")
    'go to shelf 1'
    >>> normalize_action('Action: "take apple 1 from countertop 2"')
    'take apple 1 from countertop 2'
    >>> normalize_action("> open fridge 1")
    'open fridge 1'
    >>> normalize_action("")
    ''
    """
    s = _WS.sub(" ", text.strip())
    s = _LEADING.sub("", s)
    s = _PREFIX.sub("", s)
    s = _TRAILING.sub("", s)
    s = _LEADING.sub("", s)
    return s.lower().strip()


def admissible_lookup(admissible: Iterable[str]) -> dict[str, str]:
    """Map normalised form -> the environment's own spelling of each admissible action.

    >>> admissible_lookup(["go to shelf 1", "look"])["go to shelf 1"]
    'go to shelf 1'
    """
    return {normalize_action(a): a for a in admissible}
