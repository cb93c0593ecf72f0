"""Batched sampling with transformers (the CPU default).

Prompts are sorted by length and batched with left padding, so each ``generate`` call pads
little; ``num_return_sequences=n`` samples the K alternatives of a state in the same call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from act_pipeline.sampling.base import Sampler, SamplingParams


class TransformersSampler(Sampler):
    name = "transformers"

    def __init__(self, model, tokenizer, batch_size: int = 16, stop_strings: Sequence[str] = ()):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.stop_strings = list(stop_strings)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token

    @torch.inference_mode()
    def generate(
        self,
        prompts: Sequence[str],
        params: SamplingParams,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[list[str]]:
        tok = self.tokenizer
        old_side = tok.padding_side
        tok.padding_side = "left"
        self.model.eval()
        out: list[list[str] | None] = [None] * len(prompts)
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        # with n samples per prompt the effective batch is batch_size rows
        per_batch = max(1, self.batch_size // max(1, params.n))
        greedy = params.temperature <= 0
        gen = torch.Generator().manual_seed(params.seed)
        done = 0
        try:
            for start in range(0, len(order), per_batch):
                idx = order[start : start + per_batch]
                enc = tok([prompts[i] for i in idx], return_tensors="pt", padding=True,
                          add_special_tokens=False)
                torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
                kwargs = dict(
                    max_new_tokens=params.max_new_tokens,
                    num_return_sequences=params.n,
                    pad_token_id=tok.pad_token_id,
                )
                if greedy:
                    kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
                else:
                    kwargs.update(do_sample=True, temperature=params.temperature,
                                  top_p=params.top_p, top_k=0)
                if self.stop_strings:
                    kwargs.update(stop_strings=self.stop_strings, tokenizer=tok)
                seqs = self.model.generate(**enc, **kwargs)
                new = seqs[:, enc["input_ids"].shape[1]:]
                texts = tok.batch_decode(new, skip_special_tokens=True)
                for j, i in enumerate(idx):
                    out[i] = texts[j * params.n : (j + 1) * params.n]
                done += len(idx)
                if progress:
                    progress(done, len(prompts))
        finally:
            tok.padding_side = old_side
        return out  # type: ignore[return-value]
