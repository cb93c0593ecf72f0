"""The sampler interface: prompts in, K completions per prompt out.

Backends (transformers on CPU by default, vLLM on GPUs as an optional extra) implement
``generate``; everything downstream sees only this interface, so the output tables are the same
whichever backend produced them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass


class Completion(str):
    """A completion's text that also says whether generation stopped at the token limit.

    A plain ``str`` everywhere (tables, JSON, the cache's text column); ``truncated`` is True when
    the sampler hit ``max_new_tokens`` before the end of sequence or a stop string, so a parser
    can refuse an answer that was cut off (``go to cabinet 1`` cut from ``go to cabinet 12``).

    >>> c = Completion("go to cabinet 1", truncated=True)
    >>> c == "go to cabinet 1", c.truncated, Completion("look").truncated
    (True, True, False)
    """

    truncated: bool

    def __new__(cls, text: str, truncated: bool = False):
        obj = super().__new__(cls, text)
        obj.truncated = bool(truncated)
        return obj


def is_truncated(completion) -> bool:
    """Whether a completion (a :class:`Completion` or a plain string, which is never) was cut off."""
    return bool(getattr(completion, "truncated", False))


@dataclass(frozen=True)
class SamplingParams:
    n: int = 1
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    max_new_tokens: int = 16
    seed: int = 0


class Sampler(ABC):
    name: str = "sampler"

    @abstractmethod
    def generate(
        self,
        prompts: Sequence[str],
        params: SamplingParams,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[list[str]]:
        """For each prompt, ``params.n`` completions (text after the prompt, special tokens removed),
        each a :class:`Completion` that says whether it hit the token limit."""
