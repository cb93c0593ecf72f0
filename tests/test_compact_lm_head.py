"""IL's and RL's LM head on a CPU scores the target's / completion's positions only
(`train_sft(compact_head=True)`, `train_grpo(compact_head=True)`, the defaults): TRL's compact path,
which it takes on Triton devices, gives the losses and the update of scoring every position (TRL's
CPU default) while skipping the prompt's positions."""

import inspect

from tests.test_sft_padding_free import ROWS


def _spied(monkeypatch, train):
    """``train()``'s result and the number of positions each call of TRL's fused head scored."""
    from trl.trainer import utils as trl_utils

    rows_scored = []
    real = trl_utils._ChunkedLogProbFunction.apply

    def spy(hidden, *a):
        rows_scored.append(hidden.shape[0])
        return real(hidden, *a)

    monkeypatch.setattr(trl_utils._ChunkedLogProbFunction, "apply", spy)
    try:
        return train(), rows_scored
    finally:
        monkeypatch.undo()


def _weights(out):
    import torch
    from safetensors.torch import load_file

    return {k: v.to(torch.float32) for k, v in load_file(str(out / "model.safetensors")).items()}


def _train(tiny_model, out, compact: bool, monkeypatch):
    from act_pipeline.config import ILConfig
    from act_pipeline.training.sft import train_sft

    res, rows_scored = _spied(monkeypatch, lambda: train_sft(
        tiny_model, ROWS, out, ILConfig(max_steps=2, learning_rate=1e-2, per_device_train_batch_size=4),
        log=lambda m: None, compact_head=compact))
    losses = [h["loss"] for h in res["log_history"] if "loss" in h]
    accuracy = [h["mean_token_accuracy"] for h in res["log_history"] if "mean_token_accuracy" in h]
    return losses, accuracy, _weights(out), rows_scored


def test_compact_head_trains_as_scoring_every_position(tmp_path, tiny_model, monkeypatch):
    import torch
    from transformers import AutoTokenizer

    from act_pipeline.training.sft import action_dataset, example_lengths

    full_loss, full_acc, full, full_rows = _train(tiny_model, tmp_path / "full", False, monkeypatch)
    comp_loss, comp_acc, comp, comp_rows = _train(tiny_model, tmp_path / "compact", True, monkeypatch)
    tok = AutoTokenizer.from_pretrained(tiny_model)
    ds = action_dataset(ROWS, tok, 3)
    # the prompt's positions are most of each example: every padded position scored before, the
    # target's tokens (and EOS) only after
    targets = sum(len(tok(c, add_special_tokens=False).input_ids) + 1 for c in ds["completion"])
    longest = max(example_lengths(ds, tok))
    assert full_rows == [len(ROWS) * (longest - 1)] * 2
    assert comp_rows == [targets] * 2
    assert comp_rows[0] < full_rows[0] / 4
    torch.testing.assert_close(torch.tensor(comp_loss), torch.tensor(full_loss), rtol=0, atol=1e-5)
    assert comp_acc == full_acc
    assert comp.keys() == full.keys()
    for k in full:
        torch.testing.assert_close(comp[k], full[k], rtol=0, atol=1e-5, msg=k)


def varied_action_reward(model_path: str):
    """RL's action reward plus the completion's length / 100: the random tiny model names no action,
    so the action reward alone is the same for every completion (no advantage: a group of equal
    rewards skips the model's training pass); its text's length varies."""
    from act_pipeline.act.rewards import make_action_reward
    from act_pipeline.training.act_grpo import stop_token_ids

    action_reward = make_action_reward(stop_token_ids(model_path))

    def reward(completions, **kw):
        return [r + len(str(c)) / 100 for r, c in zip(action_reward(completions, **kw), completions)]

    return reward


def _train_rl(tiny_model, out, compact: bool, monkeypatch):
    from act_pipeline.config import RLConfig
    from act_pipeline.training.act_grpo import train_grpo
    from act_pipeline.training.rl_grpo import state_dataset

    cfg = RLConfig(max_steps=2, per_device_train_batch_size=4, num_generations=4, max_completion_length=5,
                   learning_rate=1e-2, save_every_s=0)
    reward = varied_action_reward(tiny_model)  # each group with an advantage: its training pass runs
    res, rows_scored = _spied(monkeypatch, lambda: train_grpo(
        tiny_model, lambda tok: state_dataset(ROWS, tok, 3), reward, out, cfg, False, lambda m: None, None, None,
        None, "RL GRPO", "states", compact_head=compact))
    return res["log_history"], _weights(out), rows_scored


def test_rl_compact_head_trains_as_scoring_every_position(tmp_path, tiny_model, monkeypatch):
    import torch

    full_log, full, full_rows = _train_rl(tiny_model, tmp_path / "full", False, monkeypatch)
    comp_log, comp, comp_rows = _train_rl(tiny_model, tmp_path / "compact", True, monkeypatch)
    # the same completions were drawn and rewarded (seeded), so the same log lines but for rounding
    for key in ("reward", "completions/mean_length"):
        assert [h[key] for h in comp_log if key in h] == [h[key] for h in full_log if key in h], key
    full_loss = [h["loss"] for h in full_log if "loss" in h]
    torch.testing.assert_close(torch.tensor([h["loss"] for h in comp_log if "loss" in h]), torch.tensor(full_loss),
                               rtol=0, atol=1e-5)
    for k in full:
        torch.testing.assert_close(comp[k], full[k], rtol=0, atol=1e-5, msg=k)
    # every prompt position of every generation before; at most the 5 completion positions after
    assert len(comp_rows) == len(full_rows) > 0
    assert all(c <= 4 * 5 for c in comp_rows) and all(f > 4 * 20 for f in full_rows)


def test_trl_decides_the_compact_path_in_one_place():
    """labelled_positions_only swaps trl.trainer.utils._use_triton; TRL must still call it only where
    the fused head picks the compact path (a TRL upgrade that calls it elsewhere fails here)."""
    from trl.trainer import utils as trl_utils

    src = inspect.getsource(trl_utils)
    assert src.count("_use_triton(") == 1
    assert "compact = _use_triton(hidden_states.device)" in src


def test_the_context_restores_trls_decision():
    import torch
    from trl.trainer import utils as trl_utils

    from act_pipeline.training.common import labelled_positions_only

    before = trl_utils._use_triton
    with labelled_positions_only():
        assert trl_utils._use_triton(torch.device("cpu"))
    assert trl_utils._use_triton is before
    assert not trl_utils._use_triton(torch.device("cpu"))
