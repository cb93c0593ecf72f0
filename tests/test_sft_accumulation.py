"""IL in micro-batches (`il.gradient_accumulation_steps`): batches of 2 x 2 micro-batches give the
same update as batches of 4 (the science profile trains three seeds at once in micro-batches to fit
in memory), and the setting counts in the section hash only when it is not the default."""

import pytest

ROWS = [{"task": "put a mug in the sink.", "observation": "You see a sink 1 and a mug 2.", "history": [],
         "admissible": ["go to sink 1", "look", "inventory", "take mug 2 from counter 1"], "expert_action": a}
        for a in ("go to sink 1", "look", "inventory", "take mug 2 from counter 1")]  # targets of unequal length


def _train(tiny_model, out, batch: int, accumulation: int, steps: int = 2) -> dict:
    import torch
    from safetensors.torch import load_file

    from act_pipeline.config import ILConfig
    from act_pipeline.training.sft import train_sft

    res = train_sft(tiny_model, ROWS, out, ILConfig(max_steps=steps, learning_rate=1e-2, per_device_train_batch_size=batch,
                                                    gradient_accumulation_steps=accumulation), log=lambda m: None)
    assert res["global_step"] == steps
    return {k: v.to(torch.float32) for k, v in load_file(str(out / "model.safetensors")).items()}


def test_micro_batches_give_the_update_of_the_whole_batch(tmp_path, tiny_model):
    import torch

    from safetensors.torch import load_file

    source = load_file(f"{tiny_model}/model.safetensors")
    whole = _train(tiny_model, tmp_path / "b4", 4, 1)
    micro = _train(tiny_model, tmp_path / "b2x2", 2, 2)
    half = _train(tiny_model, tmp_path / "b2", 2, 1)  # half the batch, no accumulation: a different update
    # two Adam steps at lr 1e-2 move the weights by ~1.5e-2; micro-batches land within 2e-5 of that
    # (float sums in another order; measured: 4e-6 at most), half batches up to 3e-2 away
    for name in whole:
        assert (whole[name] - source[name].float()).abs().max() > 1e-3, name  # every tensor trained
        torch.testing.assert_close(micro[name], whole[name], rtol=0, atol=2e-5, msg=name)
    assert max((half[n] - whole[n]).abs().max() for n in whole) > 1e-2


@pytest.mark.parametrize("steps, moves", [(1, False), (2, True)])
def test_the_setting_counts_in_the_hash_only_when_set(steps, moves):
    from act_pipeline.config import REPO_ROOT, load_config

    base = load_config(REPO_ROOT / "configs" / "default.yaml")
    cfg = base.model_copy(deep=True)
    cfg.il.gradient_accumulation_steps = steps
    assert (cfg.section_hash("il") != base.section_hash("il")) is moves
