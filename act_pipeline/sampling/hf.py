"""Batched sampling with transformers (the CPU default).

Prompts are sorted by length and batched with left padding, so each ``generate`` call pads
little. For K samples per prompt the prompt is encoded once and its KV cache copied K times
(``generate`` with ``num_return_sequences`` would encode every prompt K times; on a CPU the
prompt encoding dominates the cost).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import torch

from act_pipeline.sampling.base import Sampler, SamplingParams


class TransformersSampler(Sampler):
    name = "transformers"

    def __init__(self, model, tokenizer, batch_size: int = 16, stop_strings: Sequence[str] = (),
                 share_prefix: bool = True):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.share_prefix = share_prefix
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
                          add_special_tokens=False).to(self.model.device)
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
                if params.n > 1 and self.share_prefix:
                    seqs = self._generate_shared_prefix(enc, params.n, kwargs)
                else:
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

    def _generate_shared_prefix(self, enc, n: int, kwargs: dict):
        """Encode each prompt once (all but its last token), copy the cache n times, then decode."""
        from transformers import DynamicCache

        ids, mask = enc["input_ids"], enc["attention_mask"]
        # the position ids generate() derives from a left-padded attention mask
        pos = mask.long().cumsum(-1) - 1
        pos.masked_fill_(mask == 0, 1)
        cache = DynamicCache(config=self.model.config)
        # transformers renamed `past_key_values` to `cache` (5.x); use whichever this one takes
        key = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
        self.model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=pos[:, :-1],
                   use_cache=True, logits_to_keep=1, **{key: cache})
        cache.batch_repeat_interleave(n)
        kw = dict(kwargs, num_return_sequences=1)
        return self.model.generate(input_ids=ids.repeat_interleave(n, 0),
                                   attention_mask=mask.repeat_interleave(n, 0), **{key: cache}, **kw)
