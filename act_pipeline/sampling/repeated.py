"""Generation for a batch whose rows repeat a few prompts (GRPO's ``num_generations`` copies of
each): each distinct prompt is encoded once and its KV cache copied to its rows.

TRL's GRPOTrainer repeats every prompt ``num_generations`` times before its transformers generation,
and ``generate`` encodes each copy; on a CPU that prompt encoding is most of a one-token or
few-token generation (benchmarks/: the grpo_roofline line's before/after). Used by
:class:`act_pipeline.training.grpo_shared.SharedPromptGRPOTrainer`.
"""

from __future__ import annotations

import inspect

import torch


def cache_argument(model) -> str:
    """The name ``model``'s forward takes its KV cache by: transformers 5.x renamed
    ``past_key_values`` to ``cache``."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


@torch.no_grad()
def generate_repeated_prompts(model, input_ids, attention_mask=None, *, generate=None, grow_cache: bool = True,
                              **kwargs):
    """``generate(input_ids=..., attention_mask=..., **kwargs)`` (``generate``: ``model.generate``)
    for a left-padded batch whose rows repeat a few distinct prompts, as GRPO's ``num_generations``
    copies of each prompt do: each distinct prompt's tokens but its last are encoded once, every row
    gets a copy of its prompt's cache (``batch_select_indices``), and ``generate`` encodes the rows'
    last tokens and decodes (into a cache that grows in place, :mod:`act_pipeline.sampling.kv`,
    unless ``grow_cache`` is False). The rows' logits are the full-sequence forward's to float
    rounding, so the draws are the same as ``generate`` would make from the same seed
    (tests/test_grpo_dedup.py).

    Where it does not apply, ``generate`` runs unchanged: no row repeats another, a prompt of one
    token, a cache or embeddings passed in, or a model whose cache layers are not plain dynamic ones
    (sliding windows).
    """
    from act_pipeline.sampling.kv import GrowingCache, plain_growable

    generate = generate or model.generate
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    plain = dict(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
    taken = {"cache", "past_key_values", "inputs_embeds", "position_ids"} & set(kwargs)
    if input_ids.dim() != 2 or input_ids.shape[1] < 2 or taken:
        return generate(**plain)
    width = input_ids.shape[1]
    distinct, inverse = torch.unique(torch.cat([input_ids, attention_mask.to(input_ids.dtype)], 1), dim=0,
                                     return_inverse=True)
    if distinct.shape[0] == input_ids.shape[0]:
        return generate(**plain)
    config = kwargs.get("generation_config") or getattr(model, "generation_config", None)
    room = int(kwargs.get("max_new_tokens") or getattr(config, "max_new_tokens", None) or 64)
    cache = GrowingCache(headroom=room, config=model.config) if grow_cache else None
    if cache is None:
        from transformers import DynamicCache

        cache = DynamicCache(config=model.config)
    if not plain_growable(cache):
        return generate(**plain)
    ids, mask = distinct[:, :width], distinct[:, width:].to(attention_mask.dtype)
    pos = mask.long().cumsum(-1) - 1  # the position ids generate() derives from a left-padded mask
    pos.masked_fill_(mask == 0, 1)
    key = cache_argument(model)
    model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=pos[:, :-1], use_cache=True,
          logits_to_keep=1, **{key: cache})
    cache.batch_select_indices(inverse.to(input_ids.device))
    return generate(**plain, **{key: cache})
