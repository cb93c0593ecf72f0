"""Asset checks. The pair checks are *blocking*: a failure stops ACT training in the same run."""

import dagster as dg

from act_pipeline.assets.pipeline import _CFG, ALFWORLD, ARMS, SCIENCEWORLD, Bench
from act_pipeline.config import PipelineConfig
from act_pipeline.data import quality
from act_pipeline.resources import ProfileResource


def _result(res: quality.Result) -> dg.AssetCheckResult:
    passed, description, meta = res
    return dg.AssetCheckResult(passed=passed, description=description,
                               metadata={k: dg.MetadataValue.json(v) if isinstance(v, (dict, list)) else v
                                         for k, v in meta.items()})


def _pair_check(pairs: dg.AssetKey, name: str, fn, description: str):
    @dg.asset_check(asset=pairs, name=name, blocking=True, description=description)
    def _check(manifest: dict) -> dg.AssetCheckResult:
        return _result(fn(manifest["uri"]))

    return _check


def pair_checks(b: Bench) -> list:
    pairs = b.key("contrast_pairs")
    return [
        _pair_check(pairs, "alternative_differs_from_expert", quality.alternative_differs_from_expert,
                    "No pair's alternative equals the expert action after normalisation."),
        _pair_check(pairs, "alternative_admissible", quality.alternative_admissible,
                    "Every alternative is an admissible action at its state."),
        _pair_check(pairs, "expert_slot_balanced", quality.slot_share,
                    "The expert action is in slot 1 for 50 ± 5% of the pairs of each split."),
        _pair_check(pairs, "no_duplicate_pairs", quality.no_duplicate_pairs, "No (state, alternative) appears twice."),
        _pair_check(pairs, "no_eval_state_in_training", quality.no_eval_state_in_training,
                    "No training pair shares a game or a state with an evaluation split."),
        _context_check(b),
    ]


def _context_check(b: Bench):
    @dg.asset_check(asset=b.key("contrast_pairs"), name="critic_prompts_fit_context", blocking=True,
                    additional_ins={"base_model": dg.AssetIn("base_model")},
                    description="Every critic prompt fits the model's context window.")
    def critic_prompts_fit_context(manifest: dict, base_model: dict, profile: ProfileResource) -> dg.AssetCheckResult:
        from transformers import AutoConfig, AutoTokenizer

        from act_pipeline.data.store import read_parquet
        from act_pipeline.training.act_grpo import critic_dataset

        cfg = profile.config()
        tok = AutoTokenizer.from_pretrained(base_model["uri"], trust_remote_code=cfg.model.trust_remote_code)
        context = (getattr(AutoConfig.from_pretrained(base_model["uri"]), "max_position_embeddings", None)
                   or cfg.model.max_context_tokens)
        rows = read_parquet(manifest["uri"]).to_pylist()
        prompts = list(critic_dataset(rows, tok, b.history_len(cfg), cfg.model.thinking)["prompt"])
        lengths = [len(ids) for ids in tok(prompts, add_special_tokens=False)["input_ids"]]
        return _result(quality.prompts_fit_context(
            lengths, min(context, cfg.model.max_context_tokens) - cfg.act.max_completion_length))

    return critic_prompts_fit_context


def _checkpoint_check(asset: dg.AssetKey):
    # an asset check's first parameter receives the checked asset's value (its manifest)
    @dg.asset_check(asset=asset, name="checkpoint_loads_and_generates", blocking=True,
                    description="Weights are finite; the folder loads (safetensors only) and generates.")
    def _check(manifest: dict) -> dg.AssetCheckResult:
        import torch

        from act_pipeline.training.common import weights_finite
        from act_pipeline.training.models import load_model

        model, tok = load_model(manifest["uri"])
        finite = weights_finite(model)
        enc = tok("Task: put a mug in the sink.", return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)
        generated = int(out.shape[1] - enc["input_ids"].shape[1])
        return dg.AssetCheckResult(passed=finite and generated > 0,
                                   description=f"finite weights: {finite}; generated {generated} tokens",
                                   metadata={"finite": finite, "generated_tokens": generated})

    return _check


def checks_for(b: Bench) -> list:
    """The benchmark's blocking checks: its pairs, and every checkpoint trained on them."""
    return [*pair_checks(b), *(_checkpoint_check(b.key(a)) for a in ARMS)]


def build_checks(cfg: PipelineConfig) -> list:
    return [*checks_for(ALFWORLD), *(checks_for(SCIENCEWORLD) if cfg.scienceworld.enabled else [])]


all_checks = build_checks(_CFG)
