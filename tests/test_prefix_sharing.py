"""The transformers sampler's cross-prompt prefix sharing (``share_across_prompts``, with ragged
prefill): prompts that share a prefix (the critic prompts of one state's contrast pairs) are
neighbours, and each one reuses the previous one's cache for their common token prefix. The outputs
are the same as with every prompt encoded in full; only the shared prefix is encoded once."""

import functools
import inspect
import random

import pytest
import torch

from act_pipeline.act.prompts import State, critic_prompt
from act_pipeline.models import load_model
from act_pipeline.sampling.base import SamplingParams
from act_pipeline.sampling.hf import TransformersSampler

# ALFWorld-like states (the text of real expert states: task, history, observation, admissible list)
STATES = [
    State(task="put some alarmclock on desk.",
          observation="You arrive at sidetable 1. On the sidetable 1, you see a alarmclock 4, a alarmclock 3, "
                      "a alarmclock 2, a cd 2, a desklamp 1, a keychain 2, a keychain 1, a pen 1, and a pencil 2.",
          history=[("go to sidetable 1", "-= Welcome to TextWorld, ALFRED! =-\n\nYou are in the middle of a room. "
                    "Looking quickly around you, you see a bed 1, a desk 1, a drawer 3, a drawer 2, a drawer 1, "
                    "a garbagecan 1, a laundryhamper 1, a shelf 2, a shelf 1, and a sidetable 1.")],
          admissible=["examine sidetable 1", "go to bed 1", "go to desk 1", "go to drawer 1", "go to drawer 2",
                      "go to drawer 3", "go to garbagecan 1", "go to shelf 1", "inventory", "look",
                      "take alarmclock 2 from sidetable 1", "take alarmclock 3 from sidetable 1",
                      "take cd 2 from sidetable 1", "take pen 1 from sidetable 1", "use desklamp 1"]),
    State(task="put a clean mug in coffeemachine.",
          observation="You arrive at countertop 1. On the countertop 1, you see a bread 1, a mug 2, and a spatula 1.",
          history=[("go to countertop 1", "You are in the middle of a room. Looking quickly around you, you see "
                    "a cabinet 1, a coffeemachine 1, a countertop 1, a fridge 1, a sinkbasin 1, and a toaster 1.")],
          admissible=["examine countertop 1", "go to cabinet 1", "go to coffeemachine 1", "go to fridge 1",
                      "go to sinkbasin 1", "go to toaster 1", "inventory", "look", "take bread 1 from countertop 1",
                      "take mug 2 from countertop 1", "take spatula 1 from countertop 1"]),
    State(task="look at book under the desklamp.",
          observation="You arrive at desk 1. On the desk 1, you see a book 1, a desklamp 1, and a pen 2.",
          history=[],
          admissible=["examine desk 1", "go to bed 1", "go to shelf 1", "inventory", "look",
                      "take book 1 from desk 1", "take pen 2 from desk 1", "use desklamp 1"]),
]
EXPERT = ["take alarmclock 3 from sidetable 1", "take mug 2 from countertop 1", "take book 1 from desk 1"]


@pytest.fixture(scope="module")
def model(tiny_model):
    return load_model(tiny_model)


def _critic_prompts(tok, state, expert, k=4):
    """``k`` contrast pairs of one state: the expert action against others, in either slot."""
    others = [a for a in state.admissible if a != expert][:k]
    return [critic_prompt(tok, state, *((expert, a) if i % 2 else (a, expert)), 2) for i, a in enumerate(others)]


def _prompts(tok):
    """Critic prompts of three states x four pairs, prompts with no common prefix, a prompt that is
    a prefix of another, a duplicate; shuffled (the sampler orders them itself)."""
    prompts = [p for s, e in zip(STATES, EXPERT) for p in _critic_prompts(tok, s, e)]
    prompts += ["short", "a kitchen with a sink <action>", "zebra crossings and a lamp <answer>"]
    prompts += [prompts[0][:-len("<answer>")], prompts[5]]  # a prefix of prompts[0]; a duplicate
    random.Random(0).shuffle(prompts)
    return prompts


def _key(m):
    return "cache" if "cache" in inspect.signature(m.forward).parameters else "past_key_values"


def _counting(m, monkeypatch):
    """Count the tokens ``m`` runs on (every forward's ``input_ids.numel()``)."""
    seen = []
    forward = m.forward

    @functools.wraps(forward)  # the same signature (the sampler reads the cache argument's name from it)
    def counted(*a, **kw):
        seen.append(kw["input_ids"].numel())
        return forward(*a, **kw)

    monkeypatch.setattr(m, "forward", counted)
    return seen


@pytest.mark.parametrize("batch_size", [4, 16])  # 4: groups span batches (the last row's cache carried over)
def test_greedy_outputs_are_the_same_with_and_without_sharing(model, batch_size):
    m, tok = model
    prompts = _prompts(tok)
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=6)
    shared = TransformersSampler(m, tok, batch_size, share_across_prompts=True).generate(prompts, params)
    full = TransformersSampler(m, tok, batch_size, share_across_prompts=False).generate(prompts, params)
    padded = TransformersSampler(m, tok, batch_size, ragged_prefill=False).generate(prompts, params)
    assert [len(x) for x in shared] == [1] * len(prompts)
    assert shared == full == padded
    assert shared[prompts.index(prompts[5])] == shared[[i for i, p in enumerate(prompts) if p == prompts[5]][-1]]


def test_sampled_outputs_are_the_same_with_and_without_sharing(model):
    # the prompts' order (by text) does not depend on the sharing, so neither do the random draws
    m, tok = model
    prompts = _prompts(tok)
    params = SamplingParams(n=3, temperature=1.0, max_new_tokens=6, seed=5)
    shared = TransformersSampler(m, tok, 12, share_across_prompts=True).generate(prompts, params)
    full = TransformersSampler(m, tok, 12, share_across_prompts=False).generate(prompts, params)
    assert [len(x) for x in shared] == [3] * len(prompts)
    assert shared == full


def test_the_caches_and_first_token_logits_match_a_full_prefill(model):
    m, tok = model
    # the sampler's order: prompts sharing a prefix are neighbours ("short", one token, has nothing to prefill)
    prompts = sorted(p for p in _prompts(tok) if p != "short")
    tok.padding_side = "left"
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    kw = dict(max_new_tokens=1, do_sample=False, temperature=None, top_p=None, top_k=None,
              pad_token_id=tok.pad_token_id, output_logits=True, return_dict_in_generate=True)
    with torch.inference_mode():
        caches = [TransformersSampler(m, tok, 32)._ragged_prefill(ids, mask, _key(m), share) for share in (True, False)]
        logits = [TransformersSampler(m, tok, 32, share_across_prompts=share)._generate_shared_prefix(enc, 1, kw)
                  .logits[0] for share in (True, False)]
    for a, b in zip(caches[0].layers, caches[1].layers):
        assert a.keys.shape == b.keys.shape
        assert torch.allclose(a.keys, b.keys, atol=1e-5) and torch.allclose(a.values, b.values, atol=1e-5)
    assert logits[0].shape == (len(prompts), m.config.vocab_size)
    assert torch.allclose(logits[0], logits[1], atol=1e-4)


def test_a_shared_prefix_is_encoded_once(model, monkeypatch):
    m, tok = model
    group = sorted(_critic_prompts(tok, STATES[0], EXPERT[0]))  # four pairs of one state
    rows = [tok(p, add_special_tokens=False)["input_ids"][:-1] for p in group]  # what is prefilled
    lcp = [next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
           for a, b in zip(rows, rows[1:])]
    assert min(lcp) > 200 and max(len(r) for r in rows) - min(lcp) < 60  # a long prefix, short suffixes
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=1)  # one decode step: 4 tokens
    seen = _counting(m, monkeypatch)
    shared = TransformersSampler(m, tok, 4).generate(group, params)
    prefilled = sum(seen) - len(group)
    assert prefilled == len(rows[0]) + sum(len(r) - n for r, n in zip(rows[1:], lcp))  # prefix + suffixes
    seen.clear()
    full = TransformersSampler(m, tok, 4, share_across_prompts=False).generate(group, params)
    assert sum(seen) - len(group) == sum(map(len, rows)) > 3 * prefilled
    assert shared == full
    # a common prefix shorter than MIN_SHARED_TOKENS is encoded again
    seen.clear()
    TransformersSampler(m, tok, 4).generate(["a kitchen with a sink", "a kitchen with a fridge"], params)
    assert sum(seen) - 2 == sum(len(tok(p, add_special_tokens=False)["input_ids"]) - 1
                                for p in ["a kitchen with a sink", "a kitchen with a fridge"])
