"""Batched sampling with transformers (the CPU default).

Prompts are sorted by length and batched with left padding, so each ``generate`` call pads
little. For K samples per prompt the prompt is encoded once and its KV cache copied K times
(``generate`` with ``num_return_sequences`` would encode every prompt K times; on a CPU the
prompt encoding dominates the cost). On a CPU each prompt of a batch is encoded on its own, without
padding (``ragged_prefill``): encoding is compute-bound there, so batching it buys nothing while the
padding costs FLOPs; the caches are then laid out left-padded and decoded as one batch
(benchmarks/: the rollouts' before/after).

Prompts that share a long prefix (the critic prompts of one state's contrast pairs: the state block,
then only the two actions differ) are encoded once up to the shared part (``share_across_prompts``,
with ``ragged_prefill``): the prompts are then ordered by their text, so those sharing a prefix are
neighbours, and each prompt reuses the previous one's cache for their longest common token prefix
(at least ``MIN_SHARED_TOKENS``), also across batches, encoding only the rest.

The batch then decodes into a cache that grows in place (``grow_cache``, :mod:`act_pipeline.sampling.kv`):
transformers' DynamicCache copies the whole cache into new tensors at every generated token.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from act_pipeline.machine import tune_malloc
from act_pipeline.sampling.base import Completion, Sampler, SamplingParams
from act_pipeline.sampling.repeated import cache_argument


class TransformersSampler(Sampler):
    name = "transformers"
    MIN_SHARED_TOKENS = 16  # a shorter common prefix is encoded again (copying its cache is not worth it)

    def __init__(self, model, tokenizer, batch_size: int = 16, stop_strings: Sequence[str] = (),
                 share_prefix: bool = True, ragged_prefill: bool | None = None,
                 share_across_prompts: bool = True, grow_cache: bool = True):
        tune_malloc()  # decoding grows the KV cache a token at a time: keep freed blocks for reuse
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.share_prefix = share_prefix
        self.ragged_prefill = model.device.type == "cpu" if ragged_prefill is None else ragged_prefill
        self.share_across_prompts = share_across_prompts
        self.grow_cache = grow_cache
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
        # the caller's tokenizer is left as it was: its padding side, and a fast tokenizer's padding
        # state, which `padding=True` switches on (a trainer saving this tokenizer would write it
        # into tokenizer.json)
        old_side, backend = tok.padding_side, getattr(tok, "backend_tokenizer", None)
        old_padding = backend.padding if backend is not None else None
        tok.padding_side = "left"
        self.model.eval()
        out: list[list[str] | None] = [None] * len(prompts)
        # ragged prefill pads nothing, so order by text (prompts sharing a prefix become neighbours,
        # whose caches are reused); otherwise by length (little padding)
        order = sorted(range(len(prompts)), key=(lambda i: prompts[i]) if self.ragged_prefill
                       else (lambda i: len(prompts[i])))
        self._last_prefill = None  # (token ids, cache) of the last prompt encoded: reused across batches
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
                # a batch of one prompt too where its prefix may be reused (one token: nothing to encode)
                ragged = self.ragged_prefill and (len(idx) > 1 or (self.share_across_prompts
                                                                   and enc["input_ids"].shape[1] > 1))
                if (params.n > 1 and self.share_prefix) or (params.n == 1 and ragged):
                    seqs = self._generate_shared_prefix(enc, params.n, kwargs)
                else:
                    seqs = self.model.generate(**enc, **kwargs)
                new = seqs[:, enc["input_ids"].shape[1]:]
                texts = tok.batch_decode(new, skip_special_tokens=True)
                cut = self._truncated(new, texts, params.max_new_tokens)
                comps = [Completion(t, c) for t, c in zip(texts, cut)]
                for j, i in enumerate(idx):
                    out[i] = comps[j * params.n : (j + 1) * params.n]
                done += len(idx)
                if progress:
                    progress(done, len(prompts))
        finally:
            tok.padding_side = old_side
            if backend is not None:
                backend.no_padding() if old_padding is None else backend.enable_padding(**old_padding)
            self._last_prefill = None
        return out  # type: ignore[return-value]

    def _end_ids(self) -> set[int]:
        """Token ids that end a sequence: the generation config's EOS ids, the tokenizer's EOS and pad
        (rows that finished early are padded with the pad id)."""
        eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        ids = [eos] if isinstance(eos, int) else list(eos or [])
        ids += [self.tokenizer.eos_token_id, self.tokenizer.pad_token_id]
        return {int(t) for t in ids if t is not None}

    def _truncated(self, new, texts: list[str], max_new_tokens: int) -> list[bool]:
        """Per generated row: whether it hit ``max_new_tokens`` — all of them generated, the last one
        neither an EOS/pad nor the end of a stop string (generation stops at the first stop string,
        so a full-length row that contains one ended with it)."""
        if new.shape[1] < max_new_tokens:
            return [False] * new.shape[0]  # every row stopped before the limit
        end = self._end_ids()
        last = new[:, -1].tolist()
        return [int(t) not in end and not any(s in text for s in self.stop_strings)
                for t, text in zip(last, texts)]

    def _generate_shared_prefix(self, enc, n: int, kwargs: dict):
        """Encode each prompt once (all but its last token), copy the cache n times, then decode (into
        a cache with room for the new tokens: :mod:`act_pipeline.sampling.kv`)."""
        ids, mask = enc["input_ids"], enc["attention_mask"]
        key = cache_argument(self.model)
        room = int(kwargs.get("max_new_tokens") or 64)
        cache = (self._ragged_prefill(ids, mask, key, self.share_across_prompts, room)
                 if self.ragged_prefill else None)
        if cache is None:
            # the position ids generate() derives from a left-padded attention mask
            pos = mask.long().cumsum(-1) - 1
            pos.masked_fill_(mask == 0, 1)
            cache = self._decode_cache(room)
            self.model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=pos[:, :-1],
                       use_cache=True, logits_to_keep=1, **{key: cache})
        if n > 1:
            cache.batch_repeat_interleave(n)
        kw = dict(kwargs, num_return_sequences=1)
        return self.model.generate(input_ids=ids.repeat_interleave(n, 0),
                                   attention_mask=mask.repeat_interleave(n, 0), **{key: cache}, **kw)

    def _decode_cache(self, room: int):
        """The cache a batch decodes into: one that grows in place with room for ``room`` new
        tokens (``grow_cache``, the default), or transformers' DynamicCache (a copy of the whole cache
        per token: the benchmarks' before)."""
        from transformers import DynamicCache

        from act_pipeline.sampling.kv import GrowingCache

        if self.grow_cache:
            return GrowingCache(headroom=room, config=self.model.config)
        return DynamicCache(config=self.model.config)

    def _ragged_prefill(self, ids, mask, key: str, share_across: bool = False, room: int = 64):
        """The batch's cache (all but each prompt's last token) with every prompt encoded alone and
        the caches left-padded to the batch's width; None where that does not apply (a prompt of one
        token, or a model whose cache layers are not plain dynamic ones, e.g. sliding windows).

        With ``share_across`` a prompt whose longest common token prefix with the prompt encoded
        before it (in this batch or, via ``_last_prefill``, the last one of the previous batch) is at
        least ``MIN_SHARED_TOKENS`` long starts from that prompt's cache cut to the common prefix and
        encodes only its remaining tokens (at positions common prefix, common prefix + 1, ...)."""
        import torch.nn.functional as F
        from transformers import DynamicCache

        from act_pipeline.sampling.kv import plain_growable

        prev = getattr(self, "_last_prefill", None) if share_across else None
        caches = []
        for r in range(ids.shape[0]):
            real = ids[r][mask[r].bool()][:-1]  # left padding: the real tokens come last
            if real.numel() == 0:
                return None
            c = DynamicCache(config=self.model.config)
            lcp = _common_prefix(prev[0], real) if prev is not None else 0
            if lcp >= self.MIN_SHARED_TOKENS and plain_growable(c):
                for li, layer in enumerate(prev[1].layers):  # slices: update() concatenates into new tensors
                    c.update(layer.keys[..., :lcp, :], layer.values[..., :lcp, :], li)
            else:
                lcp = 0
            if lcp < real.numel():
                pos = torch.arange(lcp, real.numel(), device=real.device)[None]
                self.model(input_ids=real[None, lcp:], position_ids=pos, use_cache=True, logits_to_keep=1,
                           **{key: c})
            if not plain_growable(c):
                return None
            caches.append(c)
            if share_across:
                prev = (real, c)
        if share_across:
            self._last_prefill = prev
        width = ids.shape[1] - 1
        cache = self._decode_cache(room)
        for li in range(len(caches[0].layers)):
            pads = [(0, 0, width - c.layers[li].keys.shape[-2], 0) for c in caches]
            cache.update(torch.cat([F.pad(c.layers[li].keys, p) for c, p in zip(caches, pads)]),
                         torch.cat([F.pad(c.layers[li].values, p) for c, p in zip(caches, pads)]), li)
        return cache


def _common_prefix(a, b) -> int:
    """The length of the longest common prefix of two 1-d token id tensors."""
    n = min(a.numel(), b.numel())
    diff = (a[:n] != b[:n]).nonzero()
    return int(diff[0]) if diff.numel() else n

