"""GRPO's generation with each distinct prompt encoded once (``generate_repeated_prompts``, used by
``SharedPromptGRPOTrainer``): the same sequences as ``model.generate`` (greedy and seeded sampling),
the prompt rows encoded once each, and RL GRPO trained to the same weights as TRL's trainer. A real
(tiny) model and real TRL."""

from pathlib import Path

import pytest

from tests.test_compact_lm_head import _weights, varied_action_reward
from tests.test_sft_padding_free import ROWS

PROMPTS = ["Task: put a mug in the sink. You see a mug 1.", "Task: look.",
           "Task: heat an egg. You are in the kitchen and see a microwave 1 and a fridge 1."]
ORDER = [0, 0, 1, 2, 2, 2, 1, 0]  # TRL's repeated prompts, and a batch of left-padded widths


@pytest.fixture(scope="module")
def model_tok(tiny_model):
    from act_pipeline.models import load_model

    model, tok = load_model(tiny_model)
    return model.eval(), tok


def _batch(tok, order):
    tok.padding_side = "left"
    enc = tok([PROMPTS[i] for i in order], add_special_tokens=False, padding=True, return_tensors="pt")
    assert len(set(enc["attention_mask"].sum(1).tolist())) == len(set(order))  # three widths: padding
    return enc["input_ids"], enc["attention_mask"]


def _forwards(model, fn):
    """``fn()``'s result and the (rows, tokens) of each forward call of ``model`` it made."""
    calls = []
    handle = model.register_forward_pre_hook(
        lambda mod, args, kwargs: calls.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True)
    try:
        return fn(), calls
    finally:
        handle.remove()


@pytest.mark.parametrize("sample", [False, True])
def test_repeated_prompts_generate_the_same_sequences(model_tok, sample):
    import torch

    from act_pipeline.sampling.repeated import generate_repeated_prompts

    model, tok = model_tok
    ids, mask = _batch(tok, ORDER)
    kw = dict(max_new_tokens=6, min_new_tokens=6, pad_token_id=tok.pad_token_id, return_dict_in_generate=True,
              output_logits=True,
              **(dict(do_sample=True, temperature=1.0, top_k=0) if sample else dict(do_sample=False)))

    def plain():
        torch.manual_seed(7)
        return model.generate(input_ids=ids, attention_mask=mask, **kw)

    def shared():
        torch.manual_seed(7)
        return generate_repeated_prompts(model, ids, mask, **kw)

    ref, ref_calls = _forwards(model, plain)
    out, calls = _forwards(model, shared)
    assert torch.equal(out.sequences, ref.sequences)
    # every step's logits to float rounding (the draws' inputs; a wrong position or cache row shows here)
    torch.testing.assert_close(torch.stack(out.logits), torch.stack(ref.logits), rtol=0, atol=1e-5)
    width = ids.shape[1]
    assert ref_calls[0] == (len(ORDER), width)  # generate encodes every copy
    # each distinct prompt once (all but its last token), then the rows' last tokens, then decoding
    assert calls[0] == (3, width - 1) and calls[1] == (len(ORDER), 1)
    assert all(c == (len(ORDER), 1) for c in calls[1:]) and len(calls) == len(ref_calls) + 1


def test_no_repeated_row_takes_generate_unchanged(model_tok):
    from act_pipeline.sampling.repeated import generate_repeated_prompts

    model, tok = model_tok
    ids, mask = _batch(tok, [0, 1, 2])
    seen = []

    def spy(**kw):
        seen.append(kw)
        return "generated"

    assert generate_repeated_prompts(model, ids, mask, generate=spy, max_new_tokens=2) == "generated"
    assert len(seen) == 1 and seen[0]["input_ids"] is ids and "cache" not in seen[0]
    # a cache passed in is the caller's: left to generate as well
    assert generate_repeated_prompts(model, ids[[0, 0]], mask[[0, 0]], generate=spy, cache=None) == "generated"


def test_the_context_restores_generate(model_tok):
    from act_pipeline.training.grpo_shared import repeated_prompts_encoded_once

    model, _ = model_tok
    before = model.generate
    with repeated_prompts_encoded_once(model):
        assert model.generate.func.__name__ == "generate_repeated_prompts"
    assert "generate" not in model.__dict__ and model.generate == before


def _train_rl(tiny_model, out, shared: bool, monkeypatch):
    from act_pipeline.config import RLConfig
    from act_pipeline.sampling import repeated
    from act_pipeline.training.act_grpo import train_grpo
    from act_pipeline.training.rl_grpo import state_dataset

    encoded = []  # (rows, tokens) of the prompt encodings the shared path made
    real = repeated.generate_repeated_prompts

    def spy(model, input_ids, *a, **kw):
        res, calls = _forwards(model, lambda: real(model, input_ids, *a, **kw))
        encoded.append(calls[0])
        return res

    cfg = RLConfig(max_steps=2, per_device_train_batch_size=4, num_generations=4, max_completion_length=5,
                   learning_rate=1e-2, save_every_s=0, temperature=1.0)
    reward = varied_action_reward(tiny_model)
    with monkeypatch.context() as m:
        m.setattr(repeated, "generate_repeated_prompts", spy)
        res = train_grpo(tiny_model, lambda tok: state_dataset(ROWS, tok, 3), reward, out, cfg, False,
                         lambda msg: None, None, None, None, "RL GRPO", "states", shared_prompts=shared)
    return res["log_history"], _weights(out), encoded


def test_rl_trains_the_same_with_each_prompt_encoded_once(tmp_path, tiny_model, monkeypatch):
    import torch

    trl_log, trl, trl_encoded = _train_rl(tiny_model, tmp_path / "trl", False, monkeypatch)
    log, ours, encoded = _train_rl(tiny_model, tmp_path / "shared", True, monkeypatch)
    assert not trl_encoded
    # a step's batch: one prompt x 4 generations, encoded once (all but its last token)
    assert len(encoded) == 2 and all(rows == 1 for rows, _ in encoded)
    for key in ("reward", "completions/mean_length"):  # the same completions drawn (seeded)
        assert [h[key] for h in log if key in h] == [h[key] for h in trl_log if key in h], key
    torch.testing.assert_close(torch.tensor([h["loss"] for h in log if "loss" in h]),
                               torch.tensor([h["loss"] for h in trl_log if "loss" in h]), rtol=0, atol=1e-5)
    base = _weights(Path(tiny_model))
    assert ours.keys() == trl.keys()
    assert any((ours[k] - base[k]).abs().max() > 1e-4 for k in ours if k in base), "RL did not change the weights"
    for k in trl:
        torch.testing.assert_close(ours[k], trl[k], rtol=0, atol=1e-5, msg=k)
