"""The transformers sampler: batching, K samples per prompt, the shared-prefix path."""

import pytest

from act_pipeline.sampling.base import SamplingParams
from act_pipeline.sampling.hf import TransformersSampler
from act_pipeline.training.models import load_model

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


def test_progress_reports_every_prompt(model):
    m, tok = model
    seen = []
    TransformersSampler(m, tok, batch_size=2).generate(PROMPTS, SamplingParams(n=1, temperature=0.0, max_new_tokens=2),
                                                       progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (3, 3)
