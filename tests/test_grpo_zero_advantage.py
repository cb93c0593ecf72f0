"""A GRPO micro-batch whose every advantage is 0 (each group's rewards all equal) has a loss with no
gradient: ``SharedPromptGRPOTrainer`` skips the model's forward and backward for it and gives
every parameter a zero gradient instead. The trained weights are those of TRL's full pass, bit for
bit, with AdamW's weight decay and moments carrying on through the skipped steps. A real (tiny)
model and real TRL."""

import torch


def _train(tiny_model, out, skip: bool, rewards, accumulation: int = 1, steps: int = 4, beta: float = 0.0):
    """Weights after ``steps`` GRPO steps (2 prompts x 4 generations per step when ``accumulation`` is 2,
    else 1 x 4), the log history and the number of model forwards in training."""
    from datasets import Dataset
    from trl import GRPOConfig

    from act_pipeline.models import load_model
    from act_pipeline.training.grpo_shared import SharedPromptGRPOTrainer

    model, tok = load_model(tiny_model)
    calls = iter(range(1000))

    def reward(completions, **kw):
        return rewards(next(calls), completions)

    args = GRPOConfig(output_dir=str(out), use_cpu=True, bf16=False, per_device_train_batch_size=4,
                      gradient_accumulation_steps=accumulation, num_generations=4, max_completion_length=4,
                      max_steps=steps, learning_rate=1e-2, weight_decay=0.1, beta=beta, temperature=1.0, seed=5,
                      logging_steps=1, report_to="none", save_strategy="no", disable_tqdm=True,
                      activation_checkpointing=False)
    prompts = [{"prompt": f"Task {i}: put a mug in the sink. Next action:"} for i in range(8)]
    trainer = SharedPromptGRPOTrainer(model=model, reward_funcs=reward, args=args,
                                      train_dataset=Dataset.from_list(prompts), processing_class=tok)
    before = SharedPromptGRPOTrainer.skip_no_gradient
    SharedPromptGRPOTrainer.skip_no_gradient = skip
    forwards = []
    hook = model.model.register_forward_pre_hook(lambda m, a, kw: forwards.append(torch.is_grad_enabled()), with_kwargs=True)
    try:
        trainer.train()
    finally:
        SharedPromptGRPOTrainer.skip_no_gradient = before
        hook.remove()
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    return weights, trainer.state.log_history, sum(forwards)


def _equal_on_even_calls(call, completions):
    """Equal rewards on the 1st, 3rd, ... reward call (no advantage), the completions' lengths otherwise."""
    return [0.5] * len(completions) if call % 2 == 0 else [len(str(c)) / 10 for c in completions]


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_zero_advantage_steps_skip_the_model_and_train_the_same_weights(tiny_model, tmp_path):
    from act_pipeline.models import load_model

    ours, log, fwd = _train(tiny_model, tmp_path / "skip", True, _equal_on_even_calls)
    trl, trl_log, trl_fwd = _train(tiny_model, tmp_path / "trl", False, _equal_on_even_calls)
    steps = [h for h in log if "reward" in h]
    assert [h["frac_reward_zero_std"] for h in steps] == [1.0, 0.0, 1.0, 0.0]
    assert [h["zero_advantage_skipped"] for h in steps] == [1.0, 0.0, 1.0, 0.0]
    assert [h["zero_advantage_skipped"] for h in trl_log if "reward" in h] == [0.0] * 4
    assert [h["reward"] for h in steps] == [h["reward"] for h in trl_log if "reward" in h]  # the same draws
    assert trl_fwd - fwd == 2  # the two skipped micro-batches ran no training forward
    assert "entropy" not in steps[0] and "entropy" in steps[1]  # TRL's diagnostics of a skipped pass: absent
    _assert_same(ours, trl)
    base = dict(load_model(tiny_model)[0].named_parameters())
    assert any(not torch.equal(ours[k], base[k].detach()) for k in ours), "GRPO did not change the weights"


def test_mixed_micro_batches_and_every_group_equal(tiny_model, tmp_path):
    """Two prompts per step in two micro-batches (TRL shuffles the rows across them): a micro-batch is
    skipped only when all its advantages are 0; and a run with no advantage at all ends where TRL's
    does (weight decay alone)."""
    def one_group_equal(call, completions):  # the first prompt's group equal, the second's not
        return [0.5] * 4 + [len(str(c)) / 10 for c in completions[4:]]

    ours, log, _ = _train(tiny_model, tmp_path / "skip", True, one_group_equal, accumulation=2, steps=2)
    trl, _, _ = _train(tiny_model, tmp_path / "trl", False, one_group_equal, accumulation=2, steps=2)
    _assert_same(ours, trl)
    assert all(0.0 <= h["zero_advantage_skipped"] <= 1.0 for h in log if "reward" in h)

    flat, flat_log, fwd = _train(tiny_model, tmp_path / "flat", True, lambda call, cs: [-0.5] * len(cs), steps=2)
    flat_trl, _, _ = _train(tiny_model, tmp_path / "flat_trl", False, lambda call, cs: [-0.5] * len(cs), steps=2)
    assert [h["zero_advantage_skipped"] for h in flat_log if "reward" in h] == [1.0, 1.0] and fwd == 0
    _assert_same(flat, flat_trl)


def test_a_kl_term_is_never_skipped(tiny_model, tmp_path):
    """With β > 0 the loss has the KL term's gradient whatever the advantages: every pass runs."""
    _, log, fwd = _train(tiny_model, tmp_path / "kl", True, lambda call, cs: [-0.5] * len(cs), steps=2, beta=0.04)
    assert [h["zero_advantage_skipped"] for h in log if "reward" in h] == [0.0, 0.0] and fwd > 0
