"""Stage 3, RL: GRPO on next-action generation over the expert states, with TRL's ``GRPOTrainer``.

The dataset's ``prompt`` is the chat-templated agent prompt ending in the pre-filled ``<action>``;
its ``expert_action`` and ``admissible`` columns reach the reward function as keyword arguments.
Reward (:func:`act_pipeline.act.rewards.action_reward`): 1.0 for the expert's action, 0.1 for
another admissible action, -0.5 for a malformed completion. Single-step: nothing is executed in
the environment, as in the paper.
"""

from __future__ import annotations

from pathlib import Path

from act_pipeline.act.prompts import State, agent_prompt
from act_pipeline.act.rewards import make_action_reward
from act_pipeline.config import RLConfig, TrainingConfig
from act_pipeline.training.act_grpo import stop_token_ids, train_grpo
from act_pipeline.training.common import Log


def state_dataset(rows: list[dict], tokenizer, history_len: int, thinking: bool = False):
    from datasets import Dataset

    return Dataset.from_list([
        {
            "prompt": agent_prompt(tokenizer, State.from_row(r), history_len, thinking),
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
    if not steps:
        raise ValueError("RL needs at least one expert state")
    reward = make_action_reward(stop_token_ids(init_model, trust_remote_code), thinking)
    return train_grpo(init_model, lambda tok: state_dataset(steps, tok, history_len, thinking), reward,
                      out_dir, cfg, trust_remote_code, log, card, work_dir, training, "RL GRPO", "states")
