"""The sampler interface: prompts in, K completions per prompt out.

Backends (transformers on CPU by default, vLLM on GPUs as an optional extra) implement
``generate``; everything downstream sees only this interface, so the output tables are the same
whichever backend produced them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass


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
        """For each prompt, ``params.n`` completions (text after the prompt, special tokens removed)."""
