"""Stage 3's examples against the lengths they are trained at: nothing is cut silently.

A core check function (``(passed, description, metadata)`` like ``act_pipeline.data.quality``'s),
here because it builds the examples exactly as the SFT and RL trainers do; the Dagster layer runs
it as a blocking check on each benchmark's expert trajectories.
"""

from __future__ import annotations

from act_pipeline.data.quality import Result


def training_examples_fit(rows: list[dict], tokenizer, history_len: int, thinking: bool, il_max_length: int,
                          rl_max_tokens: int, rl_max_completion_length: int) -> Result:
    """Every IL example (agent prompt + ``"{expert_action}</action>"`` + EOS, as SFTTrainer builds
    it) fits ``il_max_length``, and every RL prompt plus ``rl_max_completion_length`` fits
    ``rl_max_tokens``: nothing is cut silently. ``rows``: the expert steps stage 3 trains on."""
    from act_pipeline.training.rl_grpo import state_dataset
    from act_pipeline.training.sft import action_dataset, example_lengths

    il = example_lengths(action_dataset(rows, tokenizer, history_len, thinking), tokenizer) if rows else []
    prompts = list(state_dataset(rows, tokenizer, history_len, thinking)["prompt"]) if rows else []
    rl = [len(ids) for ids in tokenizer(prompts)["input_ids"]] if prompts else []
    rl_limit = rl_max_tokens - rl_max_completion_length
    il_bad = [r["state_id"] for r, n in zip(rows, il) if n > il_max_length]
    rl_bad = [r["state_id"] for r, n in zip(rows, rl) if n > rl_limit]
    return not il_bad and not rl_bad, (
        f"IL: {len(il_bad)} of {len(il)} examples longer than {il_max_length} tokens (longest {max(il, default=0)}); "
        f"RL: {len(rl_bad)} prompts longer than {rl_limit} tokens ({rl_max_tokens} - max_completion_length "
        f"{rl_max_completion_length}; longest {max(rl, default=0)})"), {
        "il_longest": max(il, default=0), "il_max_length": il_max_length, "il_too_long": len(il_bad),
        "rl_longest_prompt": max(rl, default=0), "rl_prompt_limit": rl_limit, "rl_too_long": len(rl_bad),
        "examples": (il_bad + rl_bad)[:5], "rows": len(rows)}
