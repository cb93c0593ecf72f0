"""Sampling with vLLM (GPU only; ``pip install act-pipeline[gpu]``).

All prompts go to vLLM in one ``LLM.generate`` call: ``n = K`` samples per prompt, batched over
every state by vLLM's scheduler, the model sharded over ``tensor_parallel_size`` GPUs. The
request/response mapping is plain functions (``build_requests``, ``parse_outputs``) so it is
tested without a GPU; ``vllm`` itself is imported only when a :class:`VLLMSampler` is created.

Equivalences with the transformers backend, so the output table is the same either way:

* prompts are our chat-templated strings, tokenized with ``add_special_tokens=False`` (as
  ``TransformersSampler`` does) and sent as token ids (vLLM would add a BOS to a text prompt);
* ``temperature <= 0`` is greedy (vLLM: ``temperature=0``), no top-k (vLLM: ``top_k=-1``);
* a stop string ends the completion and is kept in the text (``include_stop_str_in_output``),
  as ``generate(stop_strings=...)`` keeps it; special tokens are dropped from the text;
* each prompt has its own seed (``seed + index``), so a prompt's samples do not depend on
  how vLLM batches the requests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from act_pipeline.sampling.base import Completion, Sampler, SamplingParams


def vllm_sampling_kwargs(params: SamplingParams, stop: Sequence[str], seed: int | None) -> dict[str, Any]:
    """Keyword arguments for ``vllm.SamplingParams`` equivalent to our ``params``.

    >>> vllm_sampling_kwargs(SamplingParams(n=4, temperature=1.0, max_new_tokens=12), ["</action>"], 7)["n"]
    4
    >>> vllm_sampling_kwargs(SamplingParams(temperature=0.0), [], 0)["temperature"]
    0.0
    """
    greedy = params.temperature <= 0
    return {
        "n": params.n,
        "temperature": 0.0 if greedy else float(params.temperature),
        "top_p": 1.0 if greedy else float(params.top_p),
        "top_k": -1,
        "max_tokens": params.max_new_tokens,
        "seed": seed,
        "stop": list(stop) or None,
        "include_stop_str_in_output": True,
        "skip_special_tokens": True,
    }


def build_requests(prompts: Sequence[str], params: SamplingParams, encode: Callable[[str], list[int]],
                   stop: Sequence[str] = ()) -> tuple[list[dict], list[dict[str, Any]]]:
    """One vLLM request per prompt: (``TokensPrompt``-shaped dicts, ``SamplingParams`` kwargs).

    >>> reqs, sp = build_requests(["ab", "c"], SamplingParams(n=2, seed=10), lambda s: [ord(ch) for ch in s])
    >>> reqs
    [{'prompt_token_ids': [97, 98]}, {'prompt_token_ids': [99]}]
    >>> [p["seed"] for p in sp], [p["n"] for p in sp]
    ([10, 11], [2, 2])
    """
    requests = [{"prompt_token_ids": list(encode(p))} for p in prompts]
    kwargs = [vllm_sampling_kwargs(params, stop, params.seed + i) for i in range(len(prompts))]
    return requests, kwargs


def parse_outputs(outputs: Sequence[Any], n_prompts: int, n: int) -> list[list[str]]:
    """vLLM ``RequestOutput``s (``.outputs``: ``CompletionOutput``s with ``.index``, ``.text`` and
    ``.finish_reason``), in request order, to our ``list[list[str]]``: ``n`` completions per prompt,
    by sample index, each a :class:`Completion`, truncated when vLLM stopped it at ``max_tokens``
    (``finish_reason == "length"``).

    >>> from types import SimpleNamespace as O
    >>> out = parse_outputs([O(outputs=[O(index=1, text="go to", finish_reason="length"),
    ...                                 O(index=0, text="look</action>", finish_reason="stop")])], 1, 2)
    >>> out, [c.truncated for c in out[0]]
    ([['look</action>', 'go to']], [False, True])
    """
    if len(outputs) != n_prompts:
        raise ValueError(f"vLLM returned {len(outputs)} results for {n_prompts} prompts")
    result = []
    for i, out in enumerate(outputs):
        comps = sorted(out.outputs, key=lambda c: c.index)
        if len(comps) != n:
            raise ValueError(f"vLLM returned {len(comps)} completions for prompt {i}, expected {n}")
        result.append([Completion(c.text, getattr(c, "finish_reason", None) == "length") for c in comps])
    return result


class VLLMSampler(Sampler):
    """The :class:`Sampler` on vLLM. ``llm`` may be given (an existing ``vllm.LLM``, e.g. shared;
    the tests pass stand-ins for ``llm`` and ``sampling_params_cls``)."""

    name = "vllm"

    def __init__(self, model_path: str, tokenizer, stop_strings: Sequence[str] = (), tensor_parallel_size: int = 1,
                 gpu_memory_utilization: float = 0.9, dtype: str = "bfloat16", trust_remote_code: bool = False,
                 max_model_len: int | None = None, llm=None, sampling_params_cls=None):
        self.tokenizer = tokenizer
        self.sampling_params_cls = sampling_params_cls  # vllm.SamplingParams unless given
        self.stop_strings = list(stop_strings)
        if llm is None:
            try:
                from vllm import LLM
            except ImportError as e:  # pragma: no cover - depends on the install
                raise ImportError("sampling.backend: vllm needs vLLM and a GPU: pip install 'act-pipeline[gpu]'") from e
            llm = LLM(model=model_path, tokenizer=model_path, tensor_parallel_size=tensor_parallel_size,
                      gpu_memory_utilization=gpu_memory_utilization, dtype=dtype,
                      trust_remote_code=trust_remote_code, max_model_len=max_model_len)
        self.llm = llm

    def _encode(self, prompt: str) -> list[int]:
        return self.tokenizer(prompt, add_special_tokens=False)["input_ids"]

    def generate(self, prompts: Sequence[str], params: SamplingParams,
                 progress: Callable[[int, int], None] | None = None) -> list[list[str]]:
        if not prompts:
            return []
        cls = self.sampling_params_cls
        if cls is None:
            from vllm import SamplingParams as cls
        requests, kwargs = build_requests(prompts, params, self._encode, self.stop_strings)
        outputs = self.llm.generate(requests, [cls(**k) for k in kwargs], use_tqdm=False)
        result = parse_outputs(outputs, len(prompts), params.n)
        if progress:
            progress(len(prompts), len(prompts))
        return result
