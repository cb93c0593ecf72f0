"""Stage 3, RL: GRPO on next-action generation over the expert states, with TRL's ``GRPOTrainer``.

The dataset's ``prompt`` is the chat-templated agent prompt ending in the pre-filled ``<action>``;
its ``expert_action`` and ``admissible`` columns reach the reward function as keyword arguments.
Reward (:func:`act_pipeline.act.rewards.action_reward`): 1.0 for the expert's action, 0.1 for
another admissible action, -0.5 for a malformed completion. Single-step: nothing is executed in
the environment, as in the paper.
"""

from __future__ import annotations

from pathlib import Path

from act_pipeline.act.prompts import agent_prompt
from act_pipeline.act.rewards import make_action_reward
from act_pipeline.config import RLConfig, TrainingConfig
from act_pipeline.training.act_grpo import vllm_args
from act_pipeline.training.common import (Log, checkpoint_args, progress_callback, row_state, run_info,
                                         train_and_save, trainer_extras, use_cpu)
from act_pipeline.training.models import effective_bf16, load_model


def state_dataset(rows: list[dict], tokenizer, history_len: int, thinking: bool = False):
    from datasets import Dataset

    return Dataset.from_list([
        {
            "prompt": agent_prompt(tokenizer, row_state(r), history_len, thinking),
            "expert_action": r["expert_action"],
            "admissible": list(r["admissible"]),
        }
        for r in rows
    ])


def train_rl(
    init_model: str,
    steps: list[dict],
    out_dir: str | Path,
    cfg: RLConfig,
    history_len: int = 3,
    thinking: bool = False,
    trust_remote_code: bool = False,
    log: Log = print,
    card: dict | None = None,
    work_dir: str | Path | None = None,
    training: TrainingConfig | None = None,
) -> dict:
    """GRPO on next-action generation from ``init_model`` (the base model, or the ACT checkpoint
    for "RL w/ ACT"); write an HF folder (safetensors) to ``out_dir`` atomically."""
    from trl import GRPOConfig, GRPOTrainer

    if not steps:
        raise ValueError("RL needs at least one expert state")
    model, tok = load_model(init_model, trust_remote_code)
    ds = state_dataset(steps, tok, history_len, thinking)
    out_dir = Path(out_dir)
    work = Path(work_dir) if work_dir else out_dir.with_name(out_dir.name + ".trainer")
    args = GRPOConfig(
        **checkpoint_args(work, cfg.save_steps),
        **trainer_extras(training),
        **vllm_args(training),
        use_cpu=use_cpu(),
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature,
        beta=cfg.beta,
        seed=cfg.seed,
        bf16=effective_bf16(cfg.bf16, log),
        logging_steps=1,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    progress = progress_callback(log, cfg.max_steps)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=make_action_reward(),
        args=args,
        train_dataset=ds,
        processing_class=tok,
        callbacks=[progress],
    )
    log(f"RL GRPO: {len(ds)} expert states, {cfg.max_steps} steps, {cfg.num_generations} generations/prompt "
        f"from {init_model}")
    result, resumed = train_and_save(trainer, tok, out_dir, work, progress, card, log, "RL GRPO")
    rewards = [h["reward"] for h in progress.history if "reward" in h]
    return {
        "global_step": result.global_step,
        "resumed_from": resumed,
        "train_runtime_s": result.metrics.get("train_runtime"),
        "states": len(ds),
        "mean_reward_first": rewards[0] if rewards else None,
        "mean_reward_last": rewards[-1] if rewards else None,
        **run_info(trainer),
        "log_history": progress.history,
    }
