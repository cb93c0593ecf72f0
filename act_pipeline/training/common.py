"""Shared pieces of the training stages: progress, run bookkeeping, resumable saving."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from act_pipeline.files import atomic_dir, replace_dir, write_json

Log = Callable[[str], None]


def progress_callback(log: Log, total_steps: int, every: int = 5):
    """A transformers TrainerCallback that reports progress and keeps the log history."""
    from transformers import TrainerCallback

    class _Progress(TrainerCallback):
        def __init__(self):
            self.history: list[dict] = []
            self.t0 = time.time()

        def on_log(self, args, state, control, logs=None, **kw):
            if logs:
                self.history.append({"step": state.global_step, **logs})

        def on_step_end(self, args, state, control, **kw):
            if state.global_step % every == 0 or state.global_step == total_steps:
                rate = state.global_step / max(1e-9, time.time() - self.t0)
                last = self.history[-1] if self.history else {}
                shown = ", ".join(f"{k} {last[k]:.4g}" for k in ("reward", "loss") if isinstance(last.get(k), float))
                left = max(0, total_steps - state.global_step) / max(rate, 1e-9)
                log(f"step {state.global_step}/{total_steps} ({rate:.2f} steps/s, ETA {eta(left)})"
                    + (f"; {shown}" if shown else ""))

    return _Progress()


def eta(seconds: float) -> str:
    """
    >>> eta(42), eta(125), eta(7300)
    ('42s', '2m05s', '2h01m')
    """
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def weights_finite(model) -> bool:
    import torch

    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def checkpoint_args(work: Path, save_steps: int, save_every_s: float = 0.0) -> dict:
    """Trainer arguments for resumable runs: trainer checkpoints (weights, optimizer, RNG: what a
    resume needs) in ``work``, only the last one kept (``save_total_limit=1``).

    ``save_every_s > 0``: a checkpoint when that many seconds have passed since the last one
    (:func:`resume_saves` decides; ``save_steps`` is then not used); else every ``save_steps`` steps;
    both 0: none. Either way no checkpoint is written at the last step (:func:`resume_saves`).

    >>> checkpoint_args(Path("w"), 4)["save_strategy"], checkpoint_args(Path("w"), 4, 600.0)["save_strategy"]
    ('steps', 'no')
    >>> checkpoint_args(Path("w"), 0)
    {'output_dir': 'w', 'save_strategy': 'no'}
    """
    if save_every_s > 0:  # TrainerControl.should_save from resume_saves; the trainer rotates all the same
        return {"output_dir": str(work), "save_strategy": "no", "save_total_limit": 1}
    if save_steps > 0:
        return {"output_dir": str(work), "save_strategy": "steps", "save_steps": save_steps, "save_total_limit": 1}
    return {"output_dir": str(work), "save_strategy": "no"}


def resume_saves(save_every_s: float = 0.0, clock: Callable[[], float] = time.monotonic):
    """A transformers TrainerCallback that decides when a resume checkpoint is written: every
    ``save_every_s`` seconds of training (when > 0; the clock starts when training starts or
    resumes), and never at the last step, where the trainer's step strategy would write one:
    the final model is saved right after (:func:`train_and_save`) and ``work`` removed, so that
    checkpoint (weights plus optimizer state, three times the model in float32 with Adam) would
    be written only to be deleted. It must come after transformers' DefaultFlowCallback (the
    trainer adds its own callbacks first)."""
    from transformers import TrainerCallback

    class _ResumeSaves(TrainerCallback):
        def __init__(self):
            self.last = clock()

        def on_train_begin(self, args, state, control, **kw):
            self.last = clock()

        def on_step_end(self, args, state, control, **kw):
            if state.max_steps > 0 and state.global_step >= state.max_steps:
                control.should_save = False
            elif save_every_s > 0 and clock() - self.last >= save_every_s:
                control.should_save = True

        def on_save(self, args, state, control, **kw):
            self.last = clock()

    return _ResumeSaves()


def saved_dtype(model_dir: str, trust_remote_code: bool = False) -> str:
    """The dtype a model trained from ``model_dir`` is saved in: the one its config names (the HF
    convention: ``dtype``, formerly ``torch_dtype``; e.g. bfloat16 for Qwen3, float32 for the
    SmolLM2 folder converted from GGUF), so a checkpoint is no larger than the model it came
    from. Training itself runs in float32. A config that names none, or no float type: float32."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    d = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if d is None and hasattr(config, "get_text_config"):
        d = getattr(config.get_text_config(), "dtype", None)
    name = str(d).removeprefix("torch.") if d is not None else "float32"
    return name if name in ("float32", "bfloat16", "float16") else "float32"


@contextmanager
def labelled_positions_only(enabled: bool = True):
    """TRL's fused LM head (``add_fused_lm_head``: the SFT loss, GRPO's log-probabilities) scores only the positions that have
    a label on Triton devices, and every position elsewhere, to keep tile shapes fixed for compilers
    that would recompile (Neuron). On a CPU nothing recompiles, and the prompt's positions (-100,
    most of an IL example) cost the LM head's matrix product and a log-softmax over the whole
    vocabulary each, forward and backward (in GRPO every prompt position of every generation).
    Inside this context TRL takes its compact path on a CPU
    too: the same per-token log-probabilities for the labelled positions; the loss and the update
    agree to float rounding (tests/test_compact_lm_head.py), and the sft_roofline benchmark
    measures the gain. TRL decides this in ``trl.trainer.utils._use_triton``, which nothing else
    there calls; the test fails if that stops being true. ``enabled=False``: TRL's own choice.
    """
    if not enabled:
        yield
        return
    import trl.trainer.utils as trl_utils

    decide = trl_utils._use_triton
    trl_utils._use_triton = lambda device: device.type == "cpu" or decide(device)
    try:
        yield
    finally:
        trl_utils._use_triton = decide


def use_cpu() -> bool:
    """Train on the CPU unless a CUDA GPU is visible (the in-process default on this project's CPU
    machines; on GPU machines accelerate places each process on its GPU)."""
    import torch

    return not torch.cuda.is_available()


def trainer_extras(training) -> dict:
    """TrainingArguments from the profile's `training:` section.

    Activation (gradient) checkpointing is set explicitly, under its current name: TRL's GRPO and
    SFT configs default it to on, which on a CPU only recomputes activations (same gradients, more
    time) and warns that ``gradient_checkpointing`` is deprecated. The profile says whether it is on.

    >>> from act_pipeline.config import TrainingConfig
    >>> trainer_extras(TrainingConfig()), trainer_extras(TrainingConfig(gradient_checkpointing=True))
    ({'activation_checkpointing': False}, {'activation_checkpointing': True})
    """
    return {"activation_checkpointing": bool(training.gradient_checkpointing) if training is not None else False}


def run_info(trainer) -> dict:
    """How the training ran: process count, accelerate's distributed type, backend, ZeRO stage."""
    state = trainer.accelerator.state
    plugin = getattr(state, "deepspeed_plugin", None)
    return {"world_size": trainer.accelerator.num_processes,
            "distributed_type": str(state.distributed_type).split(".")[-1],
            "backend": getattr(state, "backend", None),
            "zero_stage": plugin.zero_stage if plugin is not None else None,
            "device": str(trainer.accelerator.device)}


def checkpoint_complete(ckpt: str | Path) -> bool:
    """Whether a trainer checkpoint folder is complete: its ``trainer_state.json``, which the trainer
    writes last, reads as JSON. The file exists from the trainer's ``open`` on, before its text is
    written, so its existence alone does not say so.

    >>> import tempfile; c = Path(tempfile.mkdtemp())
    >>> checkpoint_complete(c)  # no state file
    False
    >>> _ = (c / "trainer_state.json").write_text("")  # opened, not yet written
    >>> checkpoint_complete(c)
    False
    >>> _ = (c / "trainer_state.json").write_text("{}")
    >>> checkpoint_complete(c)
    True
    """
    import json

    try:
        json.loads((Path(ckpt) / "trainer_state.json").read_text())
        return True
    except (OSError, ValueError):
        return False


def last_checkpoint(work: str | Path) -> str | None:
    """The last *complete* trainer checkpoint in ``work`` (None if none), the one to resume from.

    The trainer writes a checkpoint in place (weights, optimizer, scheduler, RNG state, then
    ``trainer_state.json`` last), so a run killed while saving leaves a ``checkpoint-N`` folder
    without a readable ``trainer_state.json``; transformers' ``get_last_checkpoint`` would pick it
    (the highest N) and the resume would fail. Such folders are removed; the complete one before
    them is returned.

    >>> import tempfile; w = Path(tempfile.mkdtemp())
    >>> for n, state in ((2, "{}"), (4, '{"glo')):
    ...     (w / f"checkpoint-{n}").mkdir(); _ = (w / f"checkpoint-{n}" / "trainer_state.json").write_text(state)
    >>> Path(last_checkpoint(w)).name, sorted(p.name for p in w.iterdir())
    ('checkpoint-2', ['checkpoint-2'])
    """
    import re
    import shutil

    work = Path(work)
    found = [p for p in (work.iterdir() if work.is_dir() else ()) if re.fullmatch(r"checkpoint-\d+", p.name)]
    for ckpt in sorted(found, key=lambda p: int(p.name.split("-")[1]), reverse=True):
        if checkpoint_complete(ckpt):
            return str(ckpt)
        shutil.rmtree(ckpt, ignore_errors=True)  # half-written when its run was killed
    return None


def train_and_save(trainer, tokenizer, out_dir: Path, work: Path, progress, card: dict | None, log: Log, what: str,
                   dtype: str = "float32"):
    """Train (resuming from the last checkpoint in ``work`` if a previous attempt left one),
    check the weights, and write the final folder atomically, in ``dtype`` (:func:`saved_dtype`:
    the source model's own); ``work`` is removed on success.

    The folder is written once: into a temporary sibling of ``out_dir``, renamed into place when
    complete. With several processes (``accelerate launch``) every process takes part in the save
    (ZeRO-3 gathers the sharded weights), only the main process writes, and the folder appears by
    rename once complete."""
    import shutil

    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # progress goes to the log (Dagster's), not stdout
    last = last_checkpoint(work)
    if last:
        log(f"{what}: resuming from {last}")
    result = trainer.train(resume_from_checkpoint=last)
    _cast_for_saving(trainer, dtype)
    if trainer.accelerator.num_processes > 1:
        _save_distributed(trainer, tokenizer, Path(out_dir), progress, card, last, result, what)
    else:
        if not weights_finite(trainer.model):
            raise FloatingPointError(f"{what} produced non-finite weights (in {dtype}); checkpoint not saved")
        with atomic_dir(out_dir) as tmp:
            _save_folder(trainer, tokenizer, tmp, progress, card, last, result)
    if trainer.accelerator.is_main_process:
        shutil.rmtree(work, ignore_errors=True)
    return result, last


def _cast_for_saving(trainer, dtype: str) -> None:
    """Cast the trained model to ``dtype`` in place (training is over; ``save_pretrained`` then
    writes that dtype into the weights and the config). Not under DeepSpeed or FSDP: their
    weights are sharded, and ZeRO-3 saves 16-bit weights itself (``zero3_save_16bit_model``)."""
    import torch

    if getattr(trainer, "is_deepspeed_enabled", False) or getattr(trainer, "is_fsdp_enabled", False):
        return
    want = getattr(torch, dtype)
    if trainer.model.dtype != want:
        trainer.model.to(want)


def _save_folder(trainer, tokenizer, tmp: Path, progress, card, last, result) -> None:
    from act_pipeline.training.card import write_model_card

    trainer.save_model(str(tmp))
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(str(tmp))
        (tmp / "training_args.bin").unlink(missing_ok=True)  # a pickle: never ship it
        write_json(tmp / "train_log.json", progress.history)
        if card is not None:
            write_model_card(tmp, {**card, "global_step": result.global_step, "resumed_from": last})


def _save_distributed(trainer, tokenizer, out_dir: Path, progress, card, last, result, what: str) -> None:
    import shutil

    acc = trainer.accelerator
    tmp = out_dir.with_name(f".{out_dir.name}.partial")  # the same path in every process
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    acc.wait_for_everyone()
    _save_folder(trainer, tokenizer, tmp, progress, card, last, result)  # collective under ZeRO-3
    acc.wait_for_everyone()
    if acc.is_main_process:
        try:
            _check_saved(tmp, what)
            replace_dir(tmp, out_dir)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    acc.wait_for_everyone()


def _check_saved(folder: Path, what: str) -> None:
    """The saved folder holds safetensors weights only (no DeepSpeed/pickle checkpoint), all finite."""
    import torch
    from safetensors.torch import load_file

    weights = sorted(folder.glob("*.safetensors"))
    pickles = [p.name for p in folder.iterdir() if p.suffix in {".bin", ".pt", ".pth"} or p.name.startswith("global_step")]
    if not weights or pickles:
        raise RuntimeError(f"{what}: expected safetensors weights only in {folder}, found "
                           f"{sorted(p.name for p in folder.iterdir())} (ZeRO-3 needs zero3_save_16bit_model: true)")
    for w in weights:
        for name, t in load_file(str(w)).items():
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise FloatingPointError(f"{what} produced non-finite weights ({name}); checkpoint not saved")
