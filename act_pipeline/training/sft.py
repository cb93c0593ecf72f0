"""Stage 3, IL: supervised fine-tuning on the expert steps with TRL's ``SFTTrainer``.

A prompt/completion dataset (prompt = agent prompt ending in the pre-filled ``<action>``,
completion = the expert action and the closing tag), so the loss falls on the completion only
(the SmolLM2 chat template has no ``{% generation %}`` markers for assistant-only loss).
Targets are action-only: the paper's IL erases reasoning, which suggests action targets.
"""

from __future__ import annotations

from pathlib import Path

from act_pipeline.act.prompts import agent_prompt
from act_pipeline.config import ILConfig, TrainingConfig
from act_pipeline.training.common import (Log, checkpoint_args, progress_callback, row_state, run_info,
                                         train_and_save, trainer_extras, use_cpu)
from act_pipeline.training.models import effective_bf16, load_model


def action_dataset(rows: list[dict], tokenizer, history_len: int, thinking: bool = False):
    from datasets import Dataset

    return Dataset.from_list([
        {
            "prompt": agent_prompt(tokenizer, row_state(r), history_len, thinking),
            "completion": f"{r['expert_action']}</action>",
        }
        for r in rows
    ])


def train_sft(
    init_model: str,
    steps: list[dict],
    out_dir: str | Path,
    cfg: ILConfig,
    history_len: int = 3,
    thinking: bool = False,
    trust_remote_code: bool = False,
    log: Log = print,
    card: dict | None = None,
    work_dir: str | Path | None = None,
    training: TrainingConfig | None = None,
) -> dict:
    from trl import SFTConfig, SFTTrainer

    if not steps:
        raise ValueError("IL needs at least one expert step")
    model, tok = load_model(init_model, trust_remote_code)
    ds = action_dataset(steps, tok, history_len, thinking)
    out_dir = Path(out_dir)
    # trainer checkpoints live in work_dir; pass the same one again to resume an interrupted run
    work = Path(work_dir) if work_dir else out_dir.with_name(out_dir.name + ".trainer")
    args = SFTConfig(
        **checkpoint_args(work, cfg.save_steps),
        **trainer_extras(training),
        use_cpu=use_cpu(),
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        seed=cfg.seed,
        bf16=effective_bf16(cfg.bf16, log),
        completion_only_loss=True,
        max_length=2048,
        logging_steps=1,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    progress = progress_callback(log, cfg.max_steps)
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok,
                         callbacks=[progress])
    log(f"SFT: {len(ds)} expert steps, {cfg.max_steps} steps from {init_model}")
    result, resumed = train_and_save(trainer, tok, out_dir, work, progress, card, log, "SFT")
    losses = [h["loss"] for h in progress.history if "loss" in h]
    return {
        "global_step": result.global_step,
        "resumed_from": resumed,
        "train_runtime_s": result.metrics.get("train_runtime"),
        "examples": len(ds),
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        **run_info(trainer),
        "log_history": progress.history,
    }
