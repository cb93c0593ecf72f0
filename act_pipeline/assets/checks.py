"""Asset checks, all *blocking*: a failure stops everything downstream in the same run.

On each benchmark's expert trajectories (before any alternative is sampled or any stage-3 model
trained): no training step shares a game or a state with an evaluation set, every expert action
is admissible, every IL example and RL prompt fits the model without truncation. On its pairs
(before ACT): the pair filters held, slots are balanced, no leak, held-out pairs exist, every
training task type has pairs, every critic prompt fits the context. On every checkpoint: it loads
and generates.
"""

import dagster as dg

from act_pipeline.assets.benchmark import Benchmark
from act_pipeline.assets.training import arms
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


def pair_checks(b: Benchmark) -> list:
    pairs = b.key("contrast_pairs")
    return [
        _pair_check(pairs, "alternative_differs_from_expert", quality.alternative_differs_from_expert,
                    "No pair's alternative equals the expert action after normalisation."),
        _pair_check(pairs, "alternative_admissible", quality.alternative_admissible,
                    "Every alternative is an admissible action at its state."),
        _pair_check(pairs, "expert_slot_balanced", quality.slot_share,
                    "The expert action is in slot 1 for 50 ± 5% of the pairs of each split."),
        _pair_check(pairs, "no_duplicate_pairs", quality.no_duplicate_pairs, "No (state, alternative) appears twice."),
        _pair_check(pairs, "heldout_pairs_nonempty", lambda uri: quality.heldout_pairs_nonempty(uri, b.heldout_split),
                    f"The held-out split ({b.heldout_split}) has at least one pair."),
        _pairs_vs_trajectories(b),
        _pairs_leak_check(b),
        _context_check(b),
    ]


def _pairs_vs_trajectories(b: Benchmark):
    @dg.asset_check(asset=b.key("contrast_pairs"), name="training_task_types_covered", blocking=True,
                    additional_ins={"expert_trajectories": dg.AssetIn(key=b.key("expert_trajectories"))},
                    description="Every task type of the won training games (imported steps included) has "
                                "training pairs.")
    def training_task_types_covered(manifest: dict, expert_trajectories: dict) -> dg.AssetCheckResult:
        return _result(quality.training_task_types_covered(manifest["uri"], expert_trajectories["uri"]))

    return training_task_types_covered


def _pairs_leak_check(b: Benchmark):
    @dg.asset_check(asset=b.key("contrast_pairs"), name="no_eval_state_in_training", blocking=True,
                    additional_ins={"games": dg.AssetIn(key=b.key("games")),
                                    "expert_trajectories": dg.AssetIn(key=b.key("expert_trajectories"))},
                    description="No training pair shares a game or a state with any evaluation set: every game "
                                "with role eval or heldout_states in the games manifest, every held-out state "
                                "and pair.")
    def no_eval_state_in_training(manifest: dict, games: dict, expert_trajectories: dict) -> dg.AssetCheckResult:
        return _result(quality.no_eval_state_in_training(manifest["uri"], games["uri"], expert_trajectories["uri"]))

    return no_eval_state_in_training


def trajectory_checks(b: Benchmark) -> list:
    """On the expert trajectories (played and imported steps), before anything trains on them."""
    traj = b.key("expert_trajectories")

    @dg.asset_check(asset=traj, name="no_eval_state_in_training", blocking=True,
                    additional_ins={"games": dg.AssetIn(key=b.key("games"))},
                    description="No training step (played or imported) shares a game or a state with any "
                                "evaluation set: every game with role eval or heldout_states in the games "
                                "manifest, every held-out state.")
    def no_eval_state_in_training(manifest: dict, games: dict) -> dg.AssetCheckResult:
        return _result(quality.no_eval_state_in_training(manifest["uri"], games["uri"]))

    @dg.asset_check(asset=traj, name="expert_action_admissible", blocking=True,
                    description="Every expert action of a won game is admissible at its state (normalised), "
                                "played steps checked like imported ones.")
    def expert_action_admissible(manifest: dict) -> dg.AssetCheckResult:
        return _result(quality.expert_action_admissible(manifest["uri"]))

    @dg.asset_check(asset=traj, name="training_examples_fit_context", blocking=True,
                    additional_ins={"base_model": dg.AssetIn("base_model")},
                    description="Every IL example (prompt + expert action) fits il.max_length (0: the model's "
                                "context window) and every RL prompt plus rl.max_completion_length fits the "
                                "context: nothing is truncated silently.")
    def training_examples_fit_context(manifest: dict, base_model: dict,
                                      profile: ProfileResource) -> dg.AssetCheckResult:
        from transformers import AutoTokenizer

        from act_pipeline.data.store import read_parquet
        from act_pipeline.training.fit import training_examples_fit
        from act_pipeline.models import context_window

        cfg = profile.config()
        tok = AutoTokenizer.from_pretrained(base_model["uri"], trust_remote_code=cfg.model.trust_remote_code)
        window = context_window(base_model["uri"], cfg.model)
        # what stage 3 trains on (training.launch.STAGE_FILTERS): the won training steps
        rows = [r for r in read_parquet(manifest["uri"]).to_pylist() if r["split"] == "train" and r["won"]]
        return _result(training_examples_fit(
            rows, tok, b.history_len(cfg), cfg.model.thinking, min(cfg.il.max_length or window, window),
            min(window, cfg.model.max_context_tokens), cfg.rl.max_completion_length))

    return [no_eval_state_in_training, expert_action_admissible, training_examples_fit_context]


def _context_check(b: Benchmark):
    @dg.asset_check(asset=b.key("contrast_pairs"), name="critic_prompts_fit_context", blocking=True,
                    additional_ins={"base_model": dg.AssetIn("base_model")},
                    description="Every critic prompt plus act.max_completion_length fits the model's context.")
    def critic_prompts_fit_context(manifest: dict, base_model: dict, profile: ProfileResource) -> dg.AssetCheckResult:
        from transformers import AutoTokenizer

        from act_pipeline.data.store import read_parquet
        from act_pipeline.training.act_grpo import critic_dataset
        from act_pipeline.models import context_window

        cfg = profile.config()
        tok = AutoTokenizer.from_pretrained(base_model["uri"], trust_remote_code=cfg.model.trust_remote_code)
        context = context_window(base_model["uri"], cfg.model)
        rows = read_parquet(manifest["uri"]).to_pylist()
        prompts = list(critic_dataset(rows, tok, b.history_len(cfg), cfg.model.thinking)["prompt"]) if rows else []
        # tokenized as TRL's GRPOTrainer does (text, the tokenizer's own special tokens)
        lengths = [len(ids) for ids in tok(prompts)["input_ids"]] if prompts else []
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
        from act_pipeline.models import load_model

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


def checks_for(b: Benchmark, cfg: PipelineConfig) -> list:
    """The benchmark's blocking checks: its expert trajectories, its pairs, and every checkpoint."""
    return [*trajectory_checks(b), *pair_checks(b), *(_checkpoint_check(b.key(a)) for a in arms(cfg))]


