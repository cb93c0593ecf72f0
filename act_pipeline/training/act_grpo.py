"""Stage 2, ACT: GRPO on the critic prompt with TRL's ``GRPOTrainer``.

The dataset's ``prompt`` is the chat-templated critic prompt ending in the pre-filled
``<answer>``; its ``expert_slot`` column reaches the reward function as a keyword argument.
The reward is the only supervision: no reasoning targets.
"""

from __future__ import annotations

from pathlib import Path

from act_pipeline.act.prompts import critic_prompt
from act_pipeline.act.rewards import make_judgement_reward
from act_pipeline.config import ACTConfig, TrainingConfig
from act_pipeline.training.common import (Log, checkpoint_args, progress_callback, row_state, run_info,
                                         train_and_save, trainer_extras, use_cpu)
from act_pipeline.training.models import load_model


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
    work_dir: str | Path | None = None,
    training: TrainingConfig | None = None,
) -> dict:
    """Train the critic; write an HF folder (safetensors) to ``out_dir`` atomically.

    ``training`` (the profile's `training:` section) adds gradient checkpointing and TRL's vLLM
    generation (GPU only); None or its defaults leave the CPU run as it was."""
    from trl import GRPOConfig, GRPOTrainer

    if not pairs:
        raise ValueError("ACT needs at least one contrast pair")
    model, tok = load_model(base_model, trust_remote_code)
    ds = critic_dataset(pairs, tok, history_len, thinking)
    out_dir = Path(out_dir)
    # trainer checkpoints live in work_dir; pass the same one again to resume an interrupted run
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
        bf16=cfg.bf16,
        logging_steps=1,
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
    result, resumed = train_and_save(trainer, tok, out_dir, work, progress, card, log, "ACT GRPO")
    rewards = [h["reward"] for h in progress.history if "reward" in h]
    return {
        "global_step": result.global_step,
        "resumed_from": resumed,
        "train_runtime_s": result.metrics.get("train_runtime"),
        "pairs": len(ds),
        "mean_reward_first": rewards[0] if rewards else None,
        "mean_reward_last": rewards[-1] if rewards else None,
        **run_info(trainer),
        "log_history": progress.history,
    }


def vllm_args(training: TrainingConfig | None) -> dict:
    """TRL's GRPOConfig vLLM options from the profile (empty unless `training.vllm.use_vllm`).

    >>> from act_pipeline.config import TrainingConfig, VLLMTrainConfig
    >>> vllm_args(TrainingConfig())
    {}
    >>> sorted(vllm_args(TrainingConfig(vllm=VLLMTrainConfig(use_vllm=True))).items())
    [('use_vllm', True), ('vllm_gpu_memory_utilization', 0.3), ('vllm_mode', 'colocate'), ('vllm_tensor_parallel_size', 1)]
    >>> vllm_args(TrainingConfig(vllm=VLLMTrainConfig(use_vllm=True, mode="server", server_base_url="http://h:8000")))
    {'use_vllm': True, 'vllm_mode': 'server', 'vllm_server_base_url': 'http://h:8000'}
    """
    if training is None or not training.vllm.use_vllm:
        return {}
    v = training.vllm
    if v.mode == "colocate":
        return {"use_vllm": True, "vllm_mode": "colocate", "vllm_gpu_memory_utilization": v.gpu_memory_utilization,
                "vllm_tensor_parallel_size": v.tensor_parallel_size}
    args = {"use_vllm": True, "vllm_mode": "server"}
    if v.server_base_url:
        args["vllm_server_base_url"] = v.server_base_url
    return args
