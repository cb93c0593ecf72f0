"""Stage 3, IL: supervised fine-tuning on the expert steps with TRL's ``SFTTrainer``.

A prompt/completion dataset (prompt = agent prompt ending in the pre-filled ``<action>``,
completion = the expert action and the closing tag), so the loss falls on the completion only
(the SmolLM2 chat template has no ``{% generation %}`` markers for assistant-only loss).
Targets are action-only: the paper's IL erases reasoning, which suggests action targets.
"""

from __future__ import annotations

from pathlib import Path

from act_pipeline.act.prompts import State, agent_prompt
from act_pipeline.config import ILConfig, ModelConfig, TrainingConfig
from act_pipeline.training.common import (Log, checkpoint_args, labelled_positions_only, progress_callback,
                                          resume_saves, run_info, saved_dtype, train_and_save, trainer_extras, use_cpu)
from act_pipeline.models import context_window, effective_bf16, load_model


def action_target(expert_action: str, thinking: bool = False) -> str:
    """The SFT target after the agent prompt's pre-fill: the action and its closing tag; with thinking
    (the prompt ends in ``<think>``) an empty reasoning block is closed first, so the target is a
    well-formed answer the strict parser accepts (action-only targets, as the paper's IL suggests).

    >>> action_target("go to sink 1")
    'go to sink 1</action>'
    >>> action_target("go to sink 1", thinking=True)
    '</think>\\n<action>go to sink 1</action>'
    """
    return f"</think>\n<action>{expert_action}</action>" if thinking else f"{expert_action}</action>"


def action_dataset(rows: list[dict], tokenizer, history_len: int, thinking: bool = False):
    from datasets import Dataset

    return Dataset.from_list([
        {
            "prompt": agent_prompt(tokenizer, State.from_row(r), history_len, thinking),
            "completion": action_target(r["expert_action"], thinking),
        }
        for r in rows
    ])


def reflection_target(reflection: str, expert_action: str) -> str:
    """Early Experience's SFT target after the thinking pre-fill (``<think>``): the model's own
    reflection, then the expert action, a well-formed answer the strict parser accepts.

    >>> reflection_target("The key is in the drawer.", "open drawer 1")
    'The key is in the drawer.</think>\\n<action>open drawer 1</action>'
    """
    return f"{reflection}{action_target(expert_action, thinking=True)}"


def reflection_dataset(rows: list[dict], tokenizer, history_len: int, thinking: bool = False):
    """Early Experience (self-reflection): prompt = the agent prompt asking to think first (whatever
    ``thinking`` says: this arm always reasons before its action), completion = the reflection and
    the expert action. Rows: expert steps with a ``reflection`` column."""
    from datasets import Dataset

    return Dataset.from_list([
        {"prompt": agent_prompt(tokenizer, State.from_row(r), history_len, thinking=True),
         "completion": reflection_target(r["reflection"], r["expert_action"])}
        for r in rows
    ])


def example_lengths(ds, tokenizer) -> list[int]:
    """Tokens of each example as TRL's SFTTrainer builds it: prompt + completion + EOS (appended
    when missing), tokenized as text with the tokenizer's own special tokens."""
    eos = tokenizer.eos_token or ""
    texts = [p + c + ("" if c.endswith(eos) else eos) for p, c in zip(ds["prompt"], ds["completion"])]
    return [len(ids) for ids in tokenizer(texts)["input_ids"]] if texts else []


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
    dataset=action_dataset,
    padding_free: bool = False,
    compact_head: bool = True,
) -> dict:
    """SFT from ``init_model`` on ``steps``; ``dataset(steps, tokenizer, history_len, thinking)``
    makes the prompt/completion examples (IL: :func:`action_dataset`; Early Experience:
    :func:`reflection_dataset`).

    ``padding_free`` (TRL's ``padding_free``): the examples of a micro-batch go through the model as
    one row, each attending only to itself (transformers builds the block-diagonal mask from the
    restarting ``position_ids``, with SDPA as with FlashAttention), so no FLOPs go to padding. The
    losses and the update are those of the padded batch (tests/test_sft_padding_free.py). Off by
    default until the sft_roofline benchmark shows it faster on an idle machine (packed rows attend
    through a block-diagonal mask over the whole row, which can cost more than the padding saves;
    benchmarks/bench_roofline.py measures both). TRL does not cut padding-free examples to ``max_length``, so
    none is passed then: the length check below is what holds every example within it.

    ``compact_head``: on a CPU the LM head scores only the target's positions, not the prompt's
    (:func:`~act_pipeline.training.common.labelled_positions_only`); False scores every position,
    as TRL does there by default (the benchmark's before)."""
    from trl import SFTConfig, SFTTrainer

    if not steps:
        raise ValueError("IL needs at least one expert step")
    model, tok = load_model(init_model, trust_remote_code)
    ds = dataset(steps, tok, history_len, thinking)
    # TRL cuts every example to max_length, target included; 0 means the model's context window.
    # Nothing is cut silently: an example that does not fit stops here (and in the blocking
    # check `training_examples_fit_context` before the run gets this far)
    max_length = cfg.max_length or context_window(init_model, ModelConfig(trust_remote_code=trust_remote_code))
    lengths = example_lengths(ds, tok)
    too_long = sum(n > max_length for n in lengths)
    if too_long:
        raise ValueError(f"{too_long} of {len(ds)} SFT examples (prompt + target) are longer than max_length "
                         f"{max_length} tokens (longest {max(lengths)}): SFT would cut them off; raise il.max_length "
                         "(0 = the model's context window) or shorten the prompt (history_len)")
    out_dir = Path(out_dir)
    # trainer checkpoints live in work_dir; pass the same one again to resume an interrupted run
    work = Path(work_dir) if work_dir else out_dir.with_name(out_dir.name + ".trainer")
    args = SFTConfig(
        **checkpoint_args(work, cfg.save_steps, cfg.save_every_s),
        **trainer_extras(training),
        use_cpu=use_cpu(),
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        seed=cfg.seed,
        bf16=effective_bf16(cfg.bf16, log),
        completion_only_loss=True,
        padding_free=padding_free,
        max_length=None if padding_free else max_length,
        logging_steps=1,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    progress = progress_callback(log, cfg.max_steps)
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok,
                         callbacks=[progress, resume_saves(cfg.save_every_s)])
    log(f"SFT: {len(ds)} expert steps, {cfg.max_steps} steps from {init_model}")
    with labelled_positions_only(compact_head):
        result, resumed = train_and_save(trainer, tok, out_dir, work, progress, card, log, "SFT",
                                         saved_dtype(init_model, trust_remote_code))
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
