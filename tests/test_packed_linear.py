"""bfloat16 products through oneDNN's packed weights (act_pipeline/packed_linear.py): the same numbers
as the plain products, a weight changed after packing is never read stale, gradients take the plain
path, and load_model applies it for bfloat16 inference only."""

import pytest
import torch
import torch.nn.functional as F

from act_pipeline import packed_linear
from act_pipeline.models import bf16_fast, load_model
from act_pipeline.packed_linear import is_packed, pack_linears, unpack_linears
from act_pipeline.sampling.base import SamplingParams
from act_pipeline.sampling.hf import TransformersSampler

needs_onednn_bf16 = pytest.mark.skipif(not (bf16_fast() and packed_linear.available()),
                                       reason="no native bf16 products in oneDNN on this CPU (packing is off here)")


def _linears(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear)]


@needs_onednn_bf16
def test_the_model_computes_the_same_numbers_packed(tiny_model):
    model, tok = load_model(tiny_model, dtype="bfloat16")
    assert all(is_packed(m) for m in _linears(model))
    ids = tok(["put a clean mug in the coffeemachine", "go to the fridge 1"], return_tensors="pt", padding=True)
    params = SamplingParams(n=3, temperature=1.0, top_p=1.0, max_new_tokens=8, seed=0)
    greedy = SamplingParams(n=1, temperature=0.0, top_p=1.0, max_new_tokens=8, seed=0)
    prompts = ["Task: find the mug. > go to", "You are in a kitchen. > open"]
    with torch.inference_mode():
        packed_logits = model(**ids).logits
    packed_out = [TransformersSampler(model, tok).generate(prompts, p) for p in (params, greedy)]
    unpack_linears(model)
    assert not any(is_packed(m) for m in _linears(model))
    with torch.inference_mode():
        plain_logits = model(**ids).logits
    plain_out = [TransformersSampler(model, tok).generate(prompts, p) for p in (params, greedy)]
    assert packed_logits.dtype == torch.bfloat16
    assert torch.equal(packed_logits, plain_logits)  # bit for bit
    assert packed_out == plain_out  # seeded samples and greedy completions


@needs_onednn_bf16
def test_a_weight_changed_after_packing_is_packed_again():
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 32, bias=True).to(torch.bfloat16)
    assert pack_linears(lin) == 1
    x = torch.randn(5, 64).to(torch.bfloat16)
    with torch.inference_mode():
        first = lin(x)
    assert torch.equal(first, F.linear(x, lin.weight, lin.bias))
    with torch.no_grad():
        lin.weight.mul_(2)  # in place: an optimizer step, load_state_dict
    with torch.inference_mode():
        second = lin(x)
    assert torch.equal(second, F.linear(x, lin.weight, lin.bias)) and not torch.equal(second, first)
    lin.weight = torch.nn.Parameter(torch.randn(32, 64).to(torch.bfloat16))  # replaced
    with torch.inference_mode():
        assert torch.equal(lin(x), F.linear(x, lin.weight, lin.bias))


@needs_onednn_bf16
def test_gradients_take_the_plain_path():
    torch.manual_seed(0)
    lin = torch.nn.Linear(16, 8, bias=False).to(torch.bfloat16)
    pack_linears(lin)
    x = torch.randn(4, 16).to(torch.bfloat16)
    lin(x).float().sum().backward()
    ref = torch.nn.Linear(16, 8, bias=False).to(torch.bfloat16)
    ref.weight = torch.nn.Parameter(lin.weight.detach().clone())
    ref(x).float().sum().backward()
    assert lin.weight.grad is not None and torch.equal(lin.weight.grad, ref.weight.grad)


def test_load_model_packs_bfloat16_inference_only(tiny_model, monkeypatch):
    fp32, _ = load_model(tiny_model)
    assert not any(is_packed(m) for m in _linears(fp32))  # training and float32 inference: untouched
    bf16, _ = load_model(tiny_model, dtype="bfloat16")
    expected = bf16_fast() and packed_linear.available()  # an AVX2-only CPU loads float32: nothing to pack
    assert all(is_packed(m) == expected for m in _linears(bf16))
    monkeypatch.setenv("ACT_PACKED_LINEAR", "0")
    off, _ = load_model(tiny_model, dtype="bfloat16")
    assert not any(is_packed(m) for m in _linears(off))
