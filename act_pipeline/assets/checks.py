"""Asset checks, all *blocking*: a failure stops everything downstream in the same run.

On each benchmark's expert trajectories (before any alternative is sampled or any stage-3 model
trained): no training step shares a game or a state with an evaluation set, every expert action
is admissible, every IL example and RL prompt fits the model without truncation. On its pairs
(before ACT): the pair filters held, slots are balanced, no leak, held-out pairs exist, every
training task type has pairs, every critic prompt fits the context. On every checkpoint: it loads
and generates.

The checks of one asset run in one step (``@dg.multi_asset_check``: the trajectories' 3 in
``<benchmark>__expert_trajectories_checks``, the pairs' 8 in ``<benchmark>__contrast_pairs_checks``;
a checkpoint has one check, its own step). Under the multiprocess executor every step is a process
that imports Dagster and rebuilds the job (~5-7 s), and blocking checks sit between their asset and
everything downstream: one check per step made the pairs' 8 checks ~90 s of launches before ACT
could start. Each check keeps its own key, description, blocking flag, deps and result, and the UI
can run one alone (``can_subset``): a step evaluates only its selected checks, reading Parquet files
and loading the tokenizer only for those. Dagster loads every input of a step whatever is selected,
but those are manifests (small JSON files), so a check run alone needs the manifests of its step's
inputs (the trajectories' step also reads ``base_model``'s). A check that raises does not keep the
step's other checks from reporting, as when each was its own step; the step then fails with its error.
"""

from collections.abc import Callable, Iterator
from typing import NamedTuple

import dagster as dg

from act_pipeline.assets.benchmark import Benchmark
from act_pipeline.assets.training import arms
from act_pipeline.config import PipelineConfig
from act_pipeline.data import quality
from act_pipeline.resources import ProfileResource


def _result(asset: dg.AssetKey, name: str, res: quality.Result) -> dg.AssetCheckResult:
    passed, description, meta = res
    return dg.AssetCheckResult(asset_key=asset, check_name=name, passed=passed, description=description,
                               metadata={k: dg.MetadataValue.json(v) if isinstance(v, (dict, list)) else v
                                         for k, v in meta.items()})


class _Check(NamedTuple):
    """One check of a multi-check: ``run`` gets the step's inputs by name (``manifest``: the checked
    asset's; the others as in ``ins``; ``profile``) and is called only when the check is selected."""

    name: str
    description: str
    run: Callable[[dict], quality.Result]
    ins: tuple[str, ...] = ()  # the inputs besides the checked asset's manifest it reads (its spec's deps)


def _specs(asset: dg.AssetKey, checks: list[_Check], ins: dict[str, dg.AssetIn]) -> list[dg.AssetCheckSpec]:
    return [dg.AssetCheckSpec(c.name, asset=asset, description=c.description, blocking=True,
                              additional_deps=[ins[i].key for i in c.ins]) for c in checks]


def _evaluate(context: dg.AssetCheckExecutionContext, asset: dg.AssetKey, checks: list[_Check],
              inputs: dict) -> Iterator[dg.AssetCheckResult]:
    """The selected checks of ``asset`` (all of them in a job run; one when the UI runs one alone), in
    order. One that raises is logged and the others still report; the step then raises its error."""
    selected = {k.name for k in context.selected_asset_check_keys if k.asset_key == asset}
    errors = []
    for c in checks:
        if c.name not in selected:
            continue
        try:
            res = c.run(inputs)
        except Exception as exc:
            context.log.error(f"{asset.to_user_string()}: check {c.name} raised {type(exc).__name__}: {exc}")
            errors.append(exc)
            continue
        yield _result(asset, c.name, res)
    if errors:
        raise errors[0]


def _asset_checks(asset: dg.AssetKey, checks: list[_Check], ins: dict[str, dg.AssetIn]) -> dg.AssetChecksDefinition:
    """``checks`` of ``asset`` as one step, ``<asset path joined by __>_checks`` (the console shows
    ``alfworld/contrast_pairs_checks``); its inputs: the asset's manifest (``manifest``) and ``ins``."""

    @dg.multi_asset_check(name=f"{'__'.join(asset.path)}_checks", specs=_specs(asset, checks, ins), can_subset=True,
                          ins={"manifest": dg.AssetIn(key=asset), **ins},
                          description=f"The blocking checks of {asset.to_user_string()}, in one step.")
    def _checks(context: dg.AssetCheckExecutionContext, profile: ProfileResource,
                **inputs) -> Iterator[dg.AssetCheckResult]:
        yield from _evaluate(context, asset, checks, {**inputs, "profile": profile})

    return _checks


def _pair_checks_table(b: Benchmark) -> list[_Check]:
    def uri(i: dict) -> str:
        return i["manifest"]["uri"]

    return [
        _Check("alternative_differs_from_expert",
               "No pair's alternative equals the expert action after normalisation.",
               lambda i: quality.alternative_differs_from_expert(uri(i))),
        _Check("alternative_admissible", "Every alternative is an admissible action at its state.",
               lambda i: quality.alternative_admissible(uri(i))),
        _Check("expert_slot_balanced", "The expert action is in slot 1 for 50 ± 5% of the pairs of each split.",
               lambda i: quality.slot_share(uri(i))),
        _Check("no_duplicate_pairs", "No (state, alternative) appears twice.",
               lambda i: quality.no_duplicate_pairs(uri(i))),
        _Check("heldout_pairs_nonempty", f"The held-out split ({b.heldout_split}) has at least one pair.",
               lambda i: quality.heldout_pairs_nonempty(uri(i), b.heldout_split)),
        _Check("training_task_types_covered",
               "Every task type of the won training games (imported steps included) has training pairs.",
               lambda i: quality.training_task_types_covered(uri(i), i["expert_trajectories"]["uri"]),
               ("expert_trajectories",)),
        _Check("no_eval_state_in_training",
               "No training pair shares a game or a state with any evaluation set: every game with role eval "
               "or heldout_states in the games manifest, every held-out state and pair.",
               lambda i: quality.no_eval_state_in_training(uri(i), i["games"]["uri"], i["expert_trajectories"]["uri"]),
               ("games", "expert_trajectories")),
        _Check("critic_prompts_fit_context",
               "Every critic prompt plus act.max_completion_length fits the model's context.",
               lambda i: _critic_prompts_fit(b, i["manifest"], i["base_model"], i["profile"]), ("base_model",)),
    ]


def pair_checks(b: Benchmark) -> list[dg.AssetChecksDefinition]:
    """The pairs' 8 checks (before ACT), one step."""
    return [_asset_checks(b.key("contrast_pairs"), _pair_checks_table(b), {
        **b.ins("games", "expert_trajectories"), "base_model": dg.AssetIn("base_model")})]


def _trajectory_checks_table(b: Benchmark) -> list[_Check]:
    return [
        _Check("no_eval_state_in_training",
               "No training step (played or imported) shares a game or a state with any evaluation set: every "
               "game with role eval or heldout_states in the games manifest, every held-out state.",
               lambda i: quality.no_eval_state_in_training(i["manifest"]["uri"], i["games"]["uri"]), ("games",)),
        _Check("expert_action_admissible",
               "Every expert action of a won game is admissible at its state (normalised), played steps "
               "checked like imported ones.",
               lambda i: quality.expert_action_admissible(i["manifest"]["uri"])),
        _Check("training_examples_fit_context",
               "Every IL example (prompt + expert action) fits il.max_length (0: the model's context window) "
               "and every RL prompt plus rl.max_completion_length fits the context: nothing is truncated "
               "silently.",
               lambda i: _training_examples_fit(b, i["manifest"], i["base_model"], i["profile"]), ("base_model",)),
    ]


def trajectory_checks(b: Benchmark) -> list[dg.AssetChecksDefinition]:
    """On the expert trajectories (played and imported steps), before anything trains on them: 3
    checks, one step."""
    return [_asset_checks(b.key("expert_trajectories"), _trajectory_checks_table(b),
                          {**b.ins("games"), "base_model": dg.AssetIn("base_model")})]


def _tokenizer_and_window(base_model: dict, cfg: PipelineConfig):
    """The base model's tokenizer and context window, for the checks that measure prompts."""
    from transformers import AutoTokenizer

    from act_pipeline.models import context_window

    tok = AutoTokenizer.from_pretrained(base_model["uri"], trust_remote_code=cfg.model.trust_remote_code)
    return tok, context_window(base_model["uri"], cfg.model)


def _training_examples_fit(b: Benchmark, manifest: dict, base_model: dict, profile: ProfileResource) -> quality.Result:
    from act_pipeline.data.store import read_parquet
    from act_pipeline.training.fit import training_examples_fit

    cfg = profile.config()
    tok, window = _tokenizer_and_window(base_model, cfg)
    # what stage 3 trains on (training.launch.STAGE_FILTERS): the won training steps
    rows = [r for r in read_parquet(manifest["uri"]).to_pylist() if r["split"] == "train" and r["won"]]
    return training_examples_fit(
        rows, tok, b.history_len(cfg), cfg.model.thinking, min(cfg.il.max_length or window, window),
        min(window, cfg.model.max_context_tokens), cfg.rl.max_completion_length)


def _critic_prompts_fit(b: Benchmark, manifest: dict, base_model: dict, profile: ProfileResource) -> quality.Result:
    from act_pipeline.data.store import read_parquet
    from act_pipeline.training.act_grpo import critic_dataset

    cfg = profile.config()
    tok, context = _tokenizer_and_window(base_model, cfg)
    rows = read_parquet(manifest["uri"]).to_pylist()
    prompts = list(critic_dataset(rows, tok, b.history_len(cfg), cfg.model.thinking)["prompt"]) if rows else []
    # tokenized as TRL's GRPOTrainer does (text, the tokenizer's own special tokens)
    lengths = [len(ids) for ids in tok(prompts)["input_ids"]] if prompts else []
    return quality.prompts_fit_context(
        lengths, min(context, cfg.model.max_context_tokens) - cfg.act.max_completion_length)


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
    """The benchmark's blocking checks: its expert trajectories (one step), its pairs (one step), and
    every checkpoint (one step each)."""
    return [*trajectory_checks(b), *pair_checks(b), *(_checkpoint_check(b.key(a)) for a in arms(cfg))]
