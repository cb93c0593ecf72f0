"""The transformers sampler: batching, K samples per prompt, the shared-prefix path."""

import pytest

from act_pipeline.sampling.base import SamplingParams
from act_pipeline.sampling.hf import TransformersSampler
from act_pipeline.models import load_model

PROMPTS = ["<|im_start|>user\nTask: put a mug in the sink.<|im_end|>\n<|im_start|>assistant\n<action>",
           "short", "a somewhat longer prompt about a kitchen with a fridge 1 and a sink 1 <action>"]


@pytest.fixture(scope="module")
def model(tiny_model):
    return load_model(tiny_model)


def test_shared_prefix_equals_plain_generate(model):
    m, tok = model
    params = SamplingParams(n=3, temperature=1.0, max_new_tokens=6, seed=7)
    plain = TransformersSampler(m, tok, batch_size=9, share_prefix=False).generate(PROMPTS, params)
    shared = TransformersSampler(m, tok, batch_size=9, share_prefix=True).generate(PROMPTS, params)
    assert [len(x) for x in shared] == [3, 3, 3]
    assert shared == plain  # same samples: the prompt is encoded once instead of K times


def test_batches_and_order_do_not_change_greedy_outputs(model):
    m, tok = model
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=5)
    one_by_one = [TransformersSampler(m, tok, batch_size=1).generate([p], params)[0] for p in PROMPTS]
    batched = TransformersSampler(m, tok, batch_size=8).generate(PROMPTS, params)
    assert batched == one_by_one  # left padding + length sorting map results back to their prompts


@pytest.mark.parametrize("n,temperature", [(1, 0.0), (3, 1.0)])
def test_ragged_prefill_equals_padded_prefill(model, n, temperature):
    m, tok = model
    params = SamplingParams(n=n, temperature=temperature, max_new_tokens=6, seed=3)
    # different lengths, 2+ tokens each; ragged prefill orders the prompts by text, padded by length,
    # and the samples depend on a prompt's row in the batch: both orders are the same here
    prompts = ["the " + PROMPTS[2], "a kitchen with a sink <action>", PROMPTS[2]]
    padded = TransformersSampler(m, tok, batch_size=9, ragged_prefill=False).generate(prompts, params)
    ragged = TransformersSampler(m, tok, batch_size=9, ragged_prefill=True).generate(prompts, params)
    assert [len(x) for x in ragged] == [n] * len(prompts)
    assert ragged == padded  # each prompt encoded alone, the caches left-padded: the same completions


def test_ragged_prefill_cache_equals_the_padded_batch_cache(model):
    import inspect

    import torch
    from transformers import DynamicCache

    m, tok = model
    prompts = [PROMPTS[0], PROMPTS[2], "a kitchen with a sink <action>"]
    tok.padding_side = "left"
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    key = "cache" if "cache" in inspect.signature(m.forward).parameters else "past_key_values"
    with torch.inference_mode():
        ragged = TransformersSampler(m, tok, 9)._ragged_prefill(ids, mask, key)
        padded = DynamicCache(config=m.config)
        pos = (mask.long().cumsum(-1) - 1).clamp(min=0)
        m(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=pos[:, :-1], use_cache=True,
          **{key: padded})
    real = mask[:, :-1].bool()
    assert not real.all()  # the prompts differ in length: there is padding to get right
    for a, b in zip(ragged.layers, padded.layers):
        assert a.keys.shape == b.keys.shape
        for x, y in ((a.keys, b.keys), (a.values, b.values)):
            assert torch.allclose(x.transpose(1, 2)[real], y.transpose(1, 2)[real], atol=1e-5)
            assert not x.transpose(1, 2)[~real].any()  # padding positions hold zeros (masked out)


def test_progress_reports_every_prompt(model):
    m, tok = model
    seen = []
    TransformersSampler(m, tok, batch_size=2).generate(PROMPTS, SamplingParams(n=1, temperature=0.0, max_new_tokens=2),
                                                       progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (3, 3)


def test_the_callers_tokenizer_is_left_as_it_was(model, tiny_model):
    """Batched generation pads on the left; afterwards the tokenizer it was given has its own padding
    side and padding state again (a trainer that saves that tokenizer writes the state into
    tokenizer.json: tests/test_training_cache.py's ACT-with-probe case)."""
    from transformers import AutoTokenizer

    m, _ = model
    tok = AutoTokenizer.from_pretrained(tiny_model)
    side, padding = tok.padding_side, tok.backend_tokenizer.padding
    TransformersSampler(m, tok, batch_size=8).generate(PROMPTS, SamplingParams(n=2, temperature=1.0, max_new_tokens=3))
    assert (tok.padding_side, tok.backend_tokenizer.padding) == (side, padding)


def test_completions_say_whether_they_hit_the_token_limit(model):
    m, tok = model
    # the tiny random model repeats itself: PROMPTS[0] -> ">>>>…", PROMPTS[1] -> " swallowing swallowing …"
    cut = TransformersSampler(m, tok, batch_size=8).generate(PROMPTS, SamplingParams(n=1, temperature=0.0,
                                                                                     max_new_tokens=2))
    assert all(type(c[0]).__name__ == "Completion" and c[0].truncated for c in cut)
    three = " swallowing" * 3
    stops = TransformersSampler(m, tok, batch_size=8, stop_strings=[three])
    # the stop string ends exactly at the limit: the completion ended, it was not cut off
    (at_limit,) = stops.generate(PROMPTS[1:2], SamplingParams(n=1, temperature=0.0, max_new_tokens=3))
    assert at_limit[0] == three and not at_limit[0].truncated
    # in one batch (also K samples per prompt): the row that stopped early is not truncated, the other is
    for n in (1, 2):
        got = stops.generate(PROMPTS[:2], SamplingParams(n=n, temperature=0.0, max_new_tokens=5))
        assert [[str(c) for c in x] for x in got] == [[">" * 5] * n, [three] * n]
        assert [[c.truncated for c in x] for x in got] == [[True] * n, [False] * n]


def test_kept_speed_levers_sdpa_and_last_position_logits(model):
    """The levers benchmarks/bench_tokens.py measured and kept: sdpa attention (eager was slower
    in prefill) and the LM head only for the last position in every forward call the sampler makes
    (logits for every prompt position were many times slower); a regression to either fails here."""
    m, tok = model
    assert m.config._attn_implementation == "sdpa"
    kept = []
    hook = m.register_forward_pre_hook(lambda _m, _a, kw: kept.append(kw.get("logits_to_keep")), with_kwargs=True)
    try:
        for n, temperature in ((1, 0.0), (3, 1.0)):
            TransformersSampler(m, tok, batch_size=9).generate(PROMPTS, SamplingParams(n=n, temperature=temperature,
                                                                                        max_new_tokens=4))
    finally:
        hook.remove()
    assert kept and all(k == 1 for k in kept), kept
