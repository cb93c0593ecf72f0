"""What training writes to disk: resume checkpoints when they are due (every N seconds, or every N
steps) and never at the last step; the final checkpoint in the source model's own dtype."""

import json
from pathlib import Path

import pytest

from act_pipeline.training.common import checkpoint_args, resume_saves, saved_dtype


def _saves(tmp_path, save_steps: int, save_every_s: float, ours: bool = True, max_steps: int = 8,
           seconds_per_step: float = 4.0) -> list[int]:
    """The steps at which the trainer's callbacks (transformers' DefaultFlowCallback first, as the
    Trainer orders them, then ours) ask for a checkpoint, on a clock that moves a fixed time per step."""
    from transformers import TrainingArguments
    from transformers.trainer_callback import CallbackHandler, DefaultFlowCallback, TrainerControl, TrainerState

    now = [0.0]
    args = TrainingArguments(**checkpoint_args(tmp_path / "work", save_steps, save_every_s), max_steps=max_steps,
                             report_to="none", use_cpu=True)
    callbacks = [DefaultFlowCallback] + ([resume_saves(save_every_s, clock=lambda: now[0])] if ours else [])
    handler = CallbackHandler(callbacks, None, None, None, None)
    state, control = TrainerState(max_steps=max_steps, save_steps=args.save_steps), TrainerControl()
    control = handler.on_train_begin(args, state, control)
    saved = []
    for step in range(1, max_steps + 1):
        now[0] += seconds_per_step
        state.global_step = step
        control = handler.on_step_end(args, state, control)
        if control.should_save:  # the Trainer writes the checkpoint, then calls on_save
            saved.append(step)
            control = handler.on_save(args, state, control)
    return saved


def test_time_based_resume_checkpoints(tmp_path):
    # 4 s per step, a checkpoint when 10 s have passed since the last: after steps 3 and 6;
    # the last step (8) gets none: the final model is written right after
    assert _saves(tmp_path, 0, 10.0) == [3, 6]
    assert _saves(tmp_path, 0, 10.0, seconds_per_step=1.0, max_steps=30) == [10, 20]
    # save_every_s takes over from save_steps
    assert _saves(tmp_path, 2, 10.0) == [3, 6]
    assert checkpoint_args(tmp_path, 2, 10.0)["save_total_limit"] == 1  # only the last is kept


def test_step_based_checkpoints_skip_the_last_step(tmp_path):
    # transformers alone also writes one at the last step (weights + optimizer state), which
    # train_and_save would delete right after saving the final model
    assert _saves(tmp_path, 4, 0.0, ours=False) == [4, 8]
    assert _saves(tmp_path, 4, 0.0) == [4]
    assert _saves(tmp_path, 3, 0.0) == [3, 6]
    assert _saves(tmp_path, 0, 0.0) == []


def _copy_in(src: str, dst: Path, dtype: str) -> str:
    """The tiny model saved in ``dtype`` (its config then names that dtype)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    AutoModelForCausalLM.from_pretrained(src, dtype=getattr(torch, dtype)).save_pretrained(dst)
    AutoTokenizer.from_pretrained(src).save_pretrained(dst)
    return str(dst)


ROW = {"task": "put a mug in the sink.", "observation": "You see a sink 1.", "history": [],
       "admissible": ["go to sink 1", "look", "inventory"], "expert_action": "go to sink 1"}


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_checkpoint_saved_in_the_source_models_dtype(tmp_path, tiny_model, monkeypatch, dtype):
    import torch
    from safetensors.torch import load_file

    from act_pipeline.config import ILConfig
    from act_pipeline.models import load_model
    from act_pipeline.training import common
    from act_pipeline.training.sft import train_sft

    src = _copy_in(tiny_model, tmp_path / "src", dtype)
    assert saved_dtype(src) == dtype
    trained = {}
    cast = common._cast_for_saving

    def spy(trainer, want):  # the weights as training left them, just before the cast for saving
        trained["dtypes"] = {p.dtype for p in trainer.model.parameters()}
        trained["weights"] = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
        cast(trainer, want)

    monkeypatch.setattr(common, "_cast_for_saving", spy)
    out = tmp_path / "model"
    res = train_sft(src, [ROW, dict(ROW, expert_action="look")], out,
                    ILConfig(max_steps=3, learning_rate=1e-2, per_device_train_batch_size=2), log=lambda m: None)
    assert res["global_step"] == 3
    assert trained["dtypes"] == {torch.float32}  # training itself ran in float32

    saved = load_file(str(out / "model.safetensors"))
    assert {t.dtype for t in saved.values() if t.is_floating_point()} == {getattr(torch, dtype)}
    assert json.loads((out / "config.json").read_text())["dtype"] == dtype
    size_src, size_out = (Path(src) / "model.safetensors").stat().st_size, (out / "model.safetensors").stat().st_size
    assert abs(size_out - size_src) < 0.01 * size_src  # as large as the model it came from, no larger

    model, _ = load_model(str(out))  # loads back (as float32, as training and inference load it)
    loaded = model.state_dict()
    source = load_file(str(Path(src) / "model.safetensors"))
    changed = 0
    for name in saved:
        w = trained["weights"][name]
        if dtype == "float32":
            assert torch.equal(loaded[name], w), name
        else:  # equal within bfloat16's precision (round to nearest: half an ulp, 2^-8 relative)
            torch.testing.assert_close(loaded[name], w, rtol=2 ** -8, atol=1e-30, msg=name)
            assert torch.equal(loaded[name], w.to(torch.bfloat16).float()), name
        changed += not torch.equal(saved[name].float(), source[name].float())
    assert changed > 0  # training moved the weights: the test compares a trained model, not the source


def test_the_resume_interval_is_not_in_the_section_hash():
    # when resume checkpoints are written never changes the trained model: setting it leaves the
    # assets fresh and the trainer_state folder (keyed by the section hash) where a resume finds it
    from act_pipeline.config import REPO_ROOT, load_config

    base = load_config(REPO_ROOT / "configs" / "default.yaml")
    cfg = base.model_copy(deep=True)
    for stage in ("act", "il", "rl"):
        getattr(cfg, stage).save_every_s = 60.0
        assert cfg.section_hash(stage) == base.section_hash(stage)
        getattr(cfg, stage).save_steps += 1  # the hash does read the section
        assert cfg.section_hash(stage) != base.section_hash(stage)
