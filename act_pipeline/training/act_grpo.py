"""Stage 2, ACT: GRPO on the critic prompt with TRL's ``GRPOTrainer``.

The dataset's ``prompt`` is the chat-templated critic prompt ending in the pre-filled
``<answer>``; its ``expert_slot`` column reaches the reward function as a keyword argument.
The reward is the only supervision: no reasoning targets.
"""

from __future__ import annotations

from pathlib import Path

from act_pipeline.act.prompts import critic_prompt
from act_pipeline.act.rewards import make_judgement_reward
from act_pipeline.config import ACTConfig
from act_pipeline.training.common import Log, progress_callback, row_state, weights_finite, write_json
from act_pipeline.training.card import write_model_card
from act_pipeline.training.models import atomic_dir, load_model


def critic_dataset(rows: list[dict], tokenizer, history_len: int, thinking: bool = False):
    from datasets import Dataset

    return Dataset.from_list([
        {
            "prompt": critic_prompt(tokenizer, row_state(r), r["action_1"], r["action_2"],
                                    history_len, thinking),
            "expert_slot": int(r["expert_slot"]),
        }
        for r in rows
    ])


def train_act(
    base_model: str,
    pairs: list[dict],
    out_dir: str | Path,
    cfg: ACTConfig,
    history_len: int = 3,
    thinking: bool = False,
    trust_remote_code: bool = False,
    log: Log = print,
    card: dict | None = None,
) -> dict:
    """Train the critic; write an HF folder (safetensors) to ``out_dir`` atomically."""
    from trl import GRPOConfig, GRPOTrainer

    if not pairs:
        raise ValueError("ACT needs at least one contrast pair")
    model, tok = load_model(base_model, trust_remote_code)
    ds = critic_dataset(pairs, tok, history_len, thinking)
    out_dir = Path(out_dir)
    work = out_dir.with_name(out_dir.name + ".trainer")
    args = GRPOConfig(
        output_dir=str(work),
        use_cpu=True,
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature,
        beta=cfg.beta,
        seed=cfg.seed,
        bf16=cfg.bf16,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    progress = progress_callback(log, cfg.max_steps)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=make_judgement_reward(cfg.unparsable_penalty),
        args=args,
        train_dataset=ds,
        processing_class=tok,
        callbacks=[progress],
    )
    log(f"ACT GRPO: {len(ds)} pairs, {cfg.max_steps} steps, {cfg.num_generations} generations/prompt")
    result = trainer.train()
    if not weights_finite(trainer.model):
        raise FloatingPointError("ACT training produced non-finite weights; checkpoint not saved")
    with atomic_dir(out_dir) as tmp:
        trainer.save_model(str(tmp))
        tok.save_pretrained(str(tmp))
        (tmp / "training_args.bin").unlink(missing_ok=True)  # a pickle: never ship it
        write_json(tmp / "train_log.json", progress.history)
        if card is not None:
            write_model_card(tmp, {**card, "global_step": result.global_step})
    rewards = [h["reward"] for h in progress.history if "reward" in h]
    return {
        "global_step": result.global_step,
        "train_runtime_s": result.metrics.get("train_runtime"),
        "pairs": len(ds),
        "mean_reward_first": rewards[0] if rewards else None,
        "mean_reward_last": rewards[-1] if rewards else None,
        "log_history": progress.history,
    }
