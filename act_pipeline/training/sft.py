"""Stage 3, IL: supervised fine-tuning on the expert steps with TRL's ``SFTTrainer``.

A prompt/completion dataset (prompt = agent prompt ending in the pre-filled ``<action>``,
completion = the expert action and the closing tag), so the loss falls on the completion only
(the SmolLM2 chat template has no ``{% generation %}`` markers for assistant-only loss).
Targets are action-only: the paper's IL erases reasoning, which suggests action targets.
"""

from __future__ import annotations

from pathlib import Path

from act_pipeline.act.prompts import agent_prompt
from act_pipeline.config import ILConfig
from act_pipeline.training.common import Log, progress_callback, row_state, weights_finite, write_json
from act_pipeline.training.card import write_model_card
from act_pipeline.training.models import atomic_dir, load_model


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
) -> dict:
    from trl import SFTConfig, SFTTrainer

    if not steps:
        raise ValueError("IL needs at least one expert step")
    model, tok = load_model(init_model, trust_remote_code)
    ds = action_dataset(steps, tok, history_len, thinking)
    out_dir = Path(out_dir)
    work = out_dir.with_name(out_dir.name + ".trainer")
    args = SFTConfig(
        output_dir=str(work),
        use_cpu=True,
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        seed=cfg.seed,
        bf16=cfg.bf16,
        completion_only_loss=True,
        max_length=2048,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    progress = progress_callback(log, cfg.max_steps)
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok,
                         callbacks=[progress])
    log(f"SFT: {len(ds)} expert steps, {cfg.max_steps} steps from {init_model}")
    result = trainer.train()
    if not weights_finite(trainer.model):
        raise FloatingPointError("SFT produced non-finite weights; checkpoint not saved")
    with atomic_dir(out_dir) as tmp:
        trainer.save_model(str(tmp))
        tok.save_pretrained(str(tmp))
        (tmp / "training_args.bin").unlink(missing_ok=True)  # a pickle: never ship it
        write_json(tmp / "train_log.json", progress.history)
        if card is not None:
            write_model_card(tmp, {**card, "global_step": result.global_step})
    losses = [h["loss"] for h in progress.history if "loss" in h]
    return {
        "global_step": result.global_step,
        "train_runtime_s": result.metrics.get("train_runtime"),
        "examples": len(ds),
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "log_history": progress.history,
    }
