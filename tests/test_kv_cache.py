"""The in-place growing KV cache (act_pipeline/sampling/kv.py): the same numbers as transformers'
DynamicCache, no position handed out ever overwritten, and bit-identical generations."""

import pytest
import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from act_pipeline.models import load_model
from act_pipeline.sampling.base import SamplingParams
from act_pipeline.sampling.hf import TransformersSampler
from act_pipeline.sampling.kv import GrowingCache, GrowingLayer


def _kv(b, n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 2, n, 4, generator=g), torch.randn(b, 2, n, 4, generator=g)


def test_updates_hold_what_concatenation_holds_through_growth_and_batch_operations():
    grow, plain = GrowingLayer(headroom=2), DynamicLayer()
    steps = [(3, "update", 5), (3, "update", 1), (3, "update", 1), (3, "update", 1), (3, "repeat", 2),
             (6, "update", 1), (6, "select", torch.tensor([0, 2, 5])), (3, "update", 4), (3, "crop", -2),
             (3, "update", 1), (3, "reorder", torch.tensor([2, 0, 1])), (3, "update", 2), (3, "update", 3)]
    capacities = []
    for i, (b, op, arg) in enumerate(steps):
        if op == "update":
            k, v = _kv(b, arg, i)
            gk, gv = grow.update(k, v)
            pk, pv = plain.update(k, v)
            assert torch.equal(gk, pk) and torch.equal(gv, pv)
            capacities.append(grow.capacity)
        elif op == "repeat":
            grow.batch_repeat_interleave(arg), plain.batch_repeat_interleave(arg)
        elif op == "select":
            grow.batch_select_indices(arg), plain.batch_select_indices(arg)
        elif op == "crop":
            grow.crop(arg), plain.crop(arg)
        else:
            grow.reorder_cache(arg), plain.reorder_cache(arg)
        assert torch.equal(grow.keys, plain.keys) and torch.equal(grow.values, plain.values), (i, op)
        assert grow.get_seq_length() == plain.get_seq_length()
    # 5 + 2 spare; 6 and 7 fit; 8 outgrows 7: 8 + 8 // 2; each batch operation (repeat, select, crop,
    # reorder) leaves tensors the next update moves to a new buffer with 2 spare (9+2, 13+2, 12+2,
    # 14+2); 17 outgrows 16: 17 + 17 // 2
    assert capacities == [7, 7, 7, 12, 11, 15, 14, 16, 25]


def test_a_crop_never_lets_a_later_update_overwrite_what_was_handed_out():
    layer = GrowingLayer(headroom=8)
    k, v = _kv(1, 4, 0)
    held_k, held_v = layer.update(k, v)
    before = held_k.clone()
    layer.crop(-2)
    layer.update(*_kv(1, 2, 1))
    assert torch.equal(held_k, before)  # the view returned before the crop still reads its numbers
    assert torch.equal(layer.keys[..., :2, :], before[..., :2, :])


def test_reset_forgets_the_buffer():
    layer = GrowingLayer(headroom=3)
    layer.update(*_kv(1, 2, 0))
    layer.reset()
    assert layer.get_seq_length() == 0 and layer.capacity == 0
    k, _ = layer.update(*_kv(2, 1, 1))  # another batch size after the reset
    assert k.shape == (2, 2, 1, 4)


@pytest.fixture(scope="module")
def model(tiny_model):
    return load_model(tiny_model)


@pytest.mark.parametrize("sample", [False, True])
def test_generate_into_a_growing_cache_is_bit_identical(model, sample):
    m, tok = model
    tok.padding_side = "left"
    enc = tok(["Task: put a clean mug in the coffeemachine. <action>", "go to", "open the fridge 1 and"],
              return_tensors="pt", padding=True, add_special_tokens=False)
    outs = {}
    for name, cache in (("dynamic", DynamicCache(config=m.config)),
                        ("growing", GrowingCache(headroom=3, config=m.config))):  # regrows while decoding
        torch.manual_seed(5)
        with torch.inference_mode():
            outs[name] = m.generate(**enc, cache=cache, max_new_tokens=12, min_new_tokens=12,
                                    do_sample=sample, top_k=0, pad_token_id=tok.pad_token_id)
        if name == "growing":
            assert cache.layers[0].capacity >= cache.layers[0].get_seq_length() > 12
    assert torch.equal(outs["dynamic"], outs["growing"])


def test_the_sampler_decodes_into_growing_caches_with_room_for_the_new_tokens(model, monkeypatch):
    m, tok = model
    seen = []
    real = m.generate

    def spy(*a, **kw):
        cache = kw.get("cache", kw.get("past_key_values"))
        seen.append((type(cache).__name__, [type(layer).__name__ for layer in cache.layers][:1]))
        return real(*a, **kw)

    monkeypatch.setattr(m, "generate", spy)
    params = SamplingParams(n=3, temperature=1.0, max_new_tokens=7, seed=3)
    out = TransformersSampler(m, tok, batch_size=6).generate(["put a mug in the sink", "go to the fridge 1"], params)
    assert [len(x) for x in out] == [3, 3]
    assert seen and all(s == ("GrowingCache", ["GrowingLayer"]) for s in seen)


@pytest.mark.parametrize("n,temperature,ragged", [(1, 0.0, True), (3, 1.0, True), (3, 1.0, False)])
def test_the_sampler_gives_the_same_completions_with_either_cache(model, n, temperature, ragged):
    m, tok = model
    prompts = ["Task: put a mug in the sink. <action>", "go to the fridge 1", "open the drawer 2 then take"]
    params = SamplingParams(n=n, temperature=temperature, max_new_tokens=9, seed=11)
    grown = TransformersSampler(m, tok, batch_size=6, ragged_prefill=ragged).generate(prompts, params)
    copied = TransformersSampler(m, tok, batch_size=6, ragged_prefill=ragged, grow_cache=False).generate(prompts, params)
    assert [len(x) for x in grown] == [n] * 3
    assert grown == copied
