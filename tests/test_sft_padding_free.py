"""IL without padding (`train_sft(padding_free=True)`): the examples of a micro-batch
run as one row, each attending only to itself, and training gives the losses and the update of
TRL's padded batches (benchmarks/bench_roofline.py: the FLOPs padding took go to real tokens)."""

ROWS = [{"task": "put a mug in the sink.", "observation": obs, "history": [],
         "admissible": ["go to sink 1", "look", "inventory", "take mug 2 from counter 1"], "expert_action": a}
        for obs, a in (("You see a sink 1 and a mug 2.", "go to sink 1"),
                       ("You are in the middle of a room. Looking quickly around you, you see a cabinet 4, a "
                        "cabinet 3, a cabinet 2, a cabinet 1, a countertop 1, a sink 1 and a mug 2.", "look"),
                       ("Nothing happens.", "inventory"),
                       ("You arrive at countertop 1. On the countertop 1, you see a mug 2.",
                        "take mug 2 from counter 1"))]  # prompts and targets of unequal length: padding


def _train(tiny_model, out, padding_free: bool, batch: int = 4, accumulation: int = 1, steps: int = 2):
    import torch
    from safetensors.torch import load_file

    from act_pipeline.config import ILConfig
    from act_pipeline.training.sft import train_sft

    res = train_sft(tiny_model, ROWS, out, ILConfig(max_steps=steps, learning_rate=1e-2, per_device_train_batch_size=batch,
                                                    gradient_accumulation_steps=accumulation),
                    log=lambda m: None, padding_free=padding_free)
    losses = [h["loss"] for h in res["log_history"] if "loss" in h]
    tokens = [h["num_tokens"] for h in res["log_history"] if "num_tokens" in h]
    weights = {k: v.to(torch.float32) for k, v in load_file(str(out / "model.safetensors")).items()}
    return losses, tokens, weights


def test_padding_free_trains_as_the_padded_batch(tmp_path, tiny_model):
    import torch
    from safetensors.torch import load_file

    source = load_file(f"{tiny_model}/model.safetensors")
    pad_loss, pad_tokens, padded = _train(tiny_model, tmp_path / "padded", False)
    free_loss, free_tokens, free = _train(tiny_model, tmp_path / "free", True)
    assert len(pad_loss) == len(free_loss) == 2
    torch.testing.assert_close(torch.tensor(free_loss), torch.tensor(pad_loss), rtol=0, atol=1e-5)
    assert free_tokens == pad_tokens  # the same real tokens trained on (TRL counts them either way)
    # the second loss is after the first update, so it checks the update too. The weights are not compared
    # element by element: Adam's first steps scale every gradient to about +-lr (1e-2 here), so the
    # float-order noise of near-zero gradients of the tiny random model shows as 1e-4..1e-3 in single
    # weights; the gradients themselves agree to 1e-6 of their size (test_padding_free_gradients)
    for name in padded:
        assert (padded[name] - source[name].float()).abs().max() > 1e-3, name  # every tensor trained
        assert (free[name] - source[name].float()).abs().max() > 1e-3, name


def test_padding_free_in_micro_batches(tmp_path, tiny_model):
    """The science profile's IL: micro-batches of 2, accumulated."""
    import torch

    pad_loss, _, _ = _train(tiny_model, tmp_path / "padded", False, batch=2, accumulation=2)
    free_loss, _, _ = _train(tiny_model, tmp_path / "free", True, batch=2, accumulation=2)
    assert len(pad_loss) == len(free_loss) == 2
    torch.testing.assert_close(torch.tensor(free_loss), torch.tensor(pad_loss), rtol=0, atol=1e-5)


def test_padding_free_gradients(tiny_model):
    """One forward and backward of the same examples padded (TRL's collator) and padding-free: the
    same loss and the same gradients, up to float summation order."""
    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from act_pipeline.models import load_model

    model, _ = load_model(tiny_model)
    g = torch.Generator().manual_seed(0)
    examples = []
    for n, prompt in ((9, 6), (23, 15), (4, 2), (16, 13)):  # unequal lengths; loss on the completion only
        ids = torch.randint(10, 1000, (n,), generator=g).tolist()
        examples.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})

    def grads(padding_free: bool):
        batch = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=padding_free)(examples)
        keep = ("input_ids", "labels", "position_ids", "attention_mask")
        model.zero_grad()
        # use_cache=False as TRL's SFTTrainer passes it: with a cache transformers builds no packed mask
        loss = model(**{k: v for k, v in batch.items() if k in keep}, use_cache=False).loss
        loss.backward()
        return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}, batch["input_ids"].numel()

    pad_loss, pad_grads, pad_positions = grads(False)
    free_loss, free_grads, free_positions = grads(True)
    assert (pad_positions, free_positions) == (4 * 23, 9 + 23 + 4 + 16)  # the padding is gone
    assert abs(free_loss - pad_loss) < 1e-5
    for name, g_pad in pad_grads.items():
        assert g_pad.abs().max() > 0, name
        torch.testing.assert_close(free_grads[name], g_pad, rtol=0, atol=1e-6 * float(g_pad.abs().max()) + 1e-9,
                                   msg=name)
    # and it is not the mask that makes them agree: the examples attending to each other would not
    model.zero_grad()
    cross = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(examples)
    wrong = model(input_ids=cross["input_ids"], labels=cross["labels"], use_cache=False).loss.item()  # positions 0..51, one causal row
    assert abs(wrong - pad_loss) > 1e-3


def test_padding_free_batch_is_one_row_without_padding(tiny_model):
    """What the model is given: one row of the examples' tokens back to back, positions restarting
    at each example, no attention mask (the block-diagonal mask comes from the positions)."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    examples = [{"input_ids": [5, 6, 7]}, {"input_ids": [8, 9]}]
    batch = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(examples)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    assert "attention_mask" not in batch
    from transformers.masking_utils import find_packed_sequence_indices

    assert find_packed_sequence_indices(batch["position_ids"]).tolist() == [[0, 0, 0, 1, 1]]
