"""The benchmarks' ForwardLog (benchmarks/roofline.py) records a real model's forward calls and
times its attention calls, and leaves transformers' attention functions as they were."""

import pytest
import torch

from benchmarks.roofline import ForwardLog


@pytest.fixture(scope="module")
def llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      attn_implementation="sdpa")
    return LlamaForCausalLM(cfg).eval()


def _generate(model, new: int):
    ids = torch.arange(1, 9)[None].repeat(2, 1)  # 2 rows of 8 prompt tokens
    return model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, min_new_tokens=new,
                          do_sample=False, pad_token_id=0)


def test_attention_calls_are_timed_per_layer_and_split_into_prefill_and_decoding(llama):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    log = ForwardLog(llama)
    with torch.inference_mode():
        out = log.record(lambda: _generate(llama, 4))
    with torch.inference_mode():
        plain = _generate(llama, 4)
    assert torch.equal(out, plain)  # timing does not change what the model computes
    # generate: one prompt encoding (8 tokens: the first new token), then 3 decoding steps (the other 3)
    assert [c[:3] for c in log.calls] == [(2, 8, 0), (2, 1, 8), (2, 1, 9), (2, 1, 10)]
    assert [q for q, _ in log.attention] == [8] * 3 + [1] * 9  # every layer of every call
    s = log.attention_summary()
    assert s["attention_calls"] == 12
    assert 0 < s["prefill_attention_s"] and 0 < s["decode_attention_s"]
    assert s["attention_s"] == pytest.approx(s["prefill_attention_s"] + s["decode_attention_s"], abs=2e-5)
    assert s["attention_s"] < log.seconds  # a part of the forward calls' time
    assert ALL_ATTENTION_FUNCTIONS["sdpa"] is sdpa_attention_forward  # put back


def test_the_attention_function_is_put_back_when_the_run_fails(llama):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    def fails():
        llama(input_ids=torch.ones(1, 3, dtype=torch.long))
        raise RuntimeError("boom")

    log = ForwardLog(llama)
    with torch.inference_mode(), pytest.raises(RuntimeError, match="boom"):
        log.record(fails)
    assert len(log.attention) == 3
    assert ALL_ATTENTION_FUNCTIONS["sdpa"] is sdpa_attention_forward
