"""Inference products through packed weights (act_pipeline/packed_linear.py): bfloat16 through
oneDNN, float32 through MKL at 16 rows (opt-in: ACT_PACKED_LINEAR=all). The same numbers as the plain
products (a float32 module whose first packed product differs keeps the plain one), a weight changed
after packing is never read stale, gradients take the plain path, and load_model applies it to
inference models only, float32 only when asked."""

import pytest
import torch
import torch.nn.functional as F

from act_pipeline import packed_linear
from act_pipeline.models import bf16_fast, load_model
from act_pipeline.packed_linear import BATCH_HINT, is_packed, pack_linears, unpack_linears, verified
from act_pipeline.sampling.base import SamplingParams
from act_pipeline.sampling.hf import TransformersSampler

needs_onednn_bf16 = pytest.mark.skipif(not (bf16_fast() and packed_linear.available(torch.bfloat16)),
                                       reason="no native bf16 products in oneDNN on this CPU (packing is off here)")
needs_mkl = pytest.mark.skipif(not packed_linear.available(torch.float32), reason="torch built without MKL")
DTYPES = [pytest.param(torch.bfloat16, marks=needs_onednn_bf16, id="bfloat16"),
          pytest.param(torch.float32, marks=needs_mkl, id="float32")]


def _linears(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear)]


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_model_computes_the_same_numbers_packed(tiny_model, dtype, monkeypatch):
    monkeypatch.setenv("ACT_PACKED_LINEAR", "all")
    model, tok = load_model(tiny_model, dtype="bfloat16" if dtype == torch.bfloat16 else "float32", inference=True)
    assert all(is_packed(m) for m in _linears(model))
    # 2 rows x 8 tokens = 16: the row count float32 packs for
    ids = tok(["put a clean mug in the coffeemachine", "go to the fridge 1"], return_tensors="pt",
              padding="max_length", max_length=8, truncation=True)
    # 4 prompts x K=4 decode 16 rows at a time (the sampler's batch), as the sampling step does
    params = SamplingParams(n=4, temperature=1.0, top_p=1.0, max_new_tokens=8, seed=0)
    greedy = SamplingParams(n=1, temperature=0.0, top_p=1.0, max_new_tokens=8, seed=0)
    prompts = ["Task: find the mug. > go to", "You are in a kitchen. > open", "Task: heat an egg. > take",
               "You see a drawer 1. > look"]
    with torch.inference_mode():
        packed_logits = model(**ids).logits
    packed_out = [TransformersSampler(model, tok, batch_size=16).generate(prompts, p) for p in (params, greedy)]
    if dtype == torch.float32:  # every product met 16 rows, so each module's identity check ran, on this CPU
        assert all(verified(m) for m in _linears(model))
    unpack_linears(model)
    assert not any(is_packed(m) for m in _linears(model))
    with torch.inference_mode():
        plain_logits = model(**ids).logits
    plain_out = [TransformersSampler(model, tok, batch_size=16).generate(prompts, p) for p in (params, greedy)]
    assert packed_logits.dtype == dtype
    assert torch.equal(packed_logits, plain_logits)  # bit for bit
    assert packed_out == plain_out  # seeded samples and greedy completions


def _rows(dtype, n_in=64):
    """An input the packed path takes: 16 rows for float32, 5 for bfloat16 (any count)."""
    return torch.randn(BATCH_HINT if dtype == torch.float32 else 5, n_in).to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_weight_changed_after_packing_is_packed_again(dtype):
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 32, bias=True).to(dtype)
    assert pack_linears(lin, (dtype,)) == 1
    x = _rows(dtype)
    with torch.inference_mode():
        first = lin(x)
    assert torch.equal(first, F.linear(x, lin.weight, lin.bias))
    with torch.no_grad():
        lin.weight.mul_(2)  # in place: an optimizer step, load_state_dict
    with torch.inference_mode():
        second = lin(x)
    assert torch.equal(second, F.linear(x, lin.weight, lin.bias)) and not torch.equal(second, first)
    lin.weight = torch.nn.Parameter(torch.randn(32, 64).to(dtype))  # replaced
    with torch.inference_mode():
        assert torch.equal(lin(x), F.linear(x, lin.weight, lin.bias))


@pytest.mark.parametrize("dtype", DTYPES)
def test_gradients_take_the_plain_path(dtype):
    torch.manual_seed(0)
    lin = torch.nn.Linear(16, 8, bias=False).to(dtype)
    pack_linears(lin, (dtype,))
    x = _rows(dtype, 16)
    lin(x).float().sum().backward()
    ref = torch.nn.Linear(16, 8, bias=False).to(dtype)
    ref.weight = torch.nn.Parameter(lin.weight.detach().clone())
    ref(x).float().sum().backward()
    assert lin.weight.grad is not None and torch.equal(lin.weight.grad, ref.weight.grad)


@needs_mkl
def test_a_float32_module_whose_packed_numbers_differ_keeps_the_plain_product(monkeypatch):
    """The identity check is real: a packed copy that computes other numbers (here: of a perturbed
    weight, as another CPU's packed kernel might round differently) is found out at its first product
    and never used."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 32, bias=False)
    pack_linears(lin, (torch.float32,))
    real_pack = packed_linear._pack
    monkeypatch.setattr(packed_linear, "_pack", lambda w: real_pack(w * 1.001))
    x = _rows(torch.float32)
    with torch.inference_mode():
        assert torch.equal(lin(x), F.linear(x, lin.weight))
        assert torch.equal(lin(x), F.linear(x, lin.weight))
    assert verified(lin) == {torch.get_num_threads(): False}
    # the honest pack passes the same check
    monkeypatch.setattr(packed_linear, "_pack", real_pack)
    unpack_linears(lin)
    pack_linears(lin, (torch.float32,))
    with torch.inference_mode():
        assert torch.equal(lin(x), F.linear(x, lin.weight))
    assert verified(lin) == {torch.get_num_threads(): True}
    # another row count takes the plain product and runs no check
    unpack_linears(lin)
    pack_linears(lin, (torch.float32,))
    with torch.inference_mode():
        lin(torch.randn(BATCH_HINT - 1, 64))
    assert verified(lin) == {}


def test_load_model_packs_inference_models_only(tiny_model, monkeypatch):
    monkeypatch.delenv("ACT_PACKED_LINEAR", raising=False)
    train, _ = load_model(tiny_model)
    assert not any(is_packed(m) for m in _linears(train))  # training (float32): untouched
    fp32, _ = load_model(tiny_model, inference=True)
    assert not any(is_packed(m) for m in _linears(fp32))  # float32: opt-in (no end-to-end gain measured)
    bf16, _ = load_model(tiny_model, dtype="bfloat16")  # an AVX2-only CPU loads float32 here
    wanted = torch.bfloat16 if bf16_fast() else torch.float32
    assert bf16.dtype == wanted
    assert all(is_packed(m) == (wanted == torch.bfloat16 and packed_linear.available(wanted))
               for m in _linears(bf16))
    monkeypatch.setenv("ACT_PACKED_LINEAR", "all")
    fp32, _ = load_model(tiny_model, inference=True)
    assert all(is_packed(m) == packed_linear.available(torch.float32) for m in _linears(fp32))
    monkeypatch.setenv("ACT_PACKED_LINEAR", "0")
    for kw in ({"dtype": "bfloat16"}, {"inference": True}):  # off: neither dtype
        off, _ = load_model(tiny_model, **kw)
        assert not any(is_packed(m) for m in _linears(off))
