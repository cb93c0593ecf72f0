"""One benchmark's training arms: stage 2 (ACT) and stage 3 (IL, RL; each from the ACT checkpoint
and from the base model), and Early Experience (self-reflection) from the base model.

Every arm builds one job (``act_pipeline.training.launch.make_job``) and runs it with the
profile's launcher: in this process (``run_job``) or under ``accelerate launch`` through Dagster
Pipes (``launch.py``). Same job, same registry of stages, so probe, resume and model card behave
the same either way.
"""

from pathlib import Path

import dagster as dg

from act_pipeline.assets.benchmark import Benchmark
from act_pipeline.assets.common import GPU_STEP, output, partition_seed, png_md, seed_partitions, setup_torch
from act_pipeline.assets.launch import launch_training
from act_pipeline.assets.versions import code_version
from act_pipeline.config import PipelineConfig
from act_pipeline.files import sha256_bytes
from act_pipeline.resources import ProfileResource

ARMS = ("act_checkpoint", "il_baseline", "il_policy", "rl_baseline", "rl_policy", "early_experience")


def arms(cfg: PipelineConfig) -> list[str]:
    """The profile's training arms: ACT's checkpoint and the stage-3 arms it lists (``arms``)."""
    return ["act_checkpoint", *(a for a in ARMS[1:] if a in cfg.arms)]

_RUNNER = ["act_pipeline.act.prompts", "act_pipeline.training.common", "act_pipeline.training.launch"]
STAGE_MODULES = {
    "act": ["act_pipeline.training.act_grpo", "act_pipeline.training.grpo_shared", "act_pipeline.sampling.repeated",
            "act_pipeline.sampling.kv", "act_pipeline.act.rewards", "act_pipeline.act.parsing", *_RUNNER],
    "il": ["act_pipeline.training.sft", *_RUNNER],
    # RL trains through act_grpo's train_grpo: SharedPromptGRPOTrainer, whose generation encodes each prompt
    # once; its training forward is TRL's (the completions are many tokens)
    "rl": ["act_pipeline.training.rl_grpo", "act_pipeline.training.act_grpo", "act_pipeline.training.grpo_shared",
           "act_pipeline.sampling.repeated", "act_pipeline.sampling.kv", "act_pipeline.act.rewards",
           "act_pipeline.act.parsing", *_RUNNER],
    "ee": ["act_pipeline.training.sft", *_RUNNER],
}
# the profile sections that set a stage (Early Experience trains with IL's settings: the same budget)
STAGE_SETTINGS = {"act": ["act"], "il": ["il"], "rl": ["rl"], "ee": ["il", "early_experience"]}
# asset -> (stage, what it starts from, what it trains on, description)
_SPECS = {
    "act_checkpoint": ("act", "base_model", "contrast_pairs",
                       "Stage 2: GRPO (TRL) on the critic prompt; reward 1 right pick, 0 wrong, penalty unparsable."),
    "il_policy": ("il", "act_checkpoint", "expert_trajectories",
                  "Stage 3 IL: SFT (TRL) on the expert steps, starting from the ACT checkpoint."),
    "il_baseline": ("il", "base_model", "expert_trajectories",
                    "Baseline IL: the same SFT on the same expert steps, starting from the base model."),
    "rl_policy": ("rl", "act_checkpoint", "expert_trajectories",
                  "Stage 3 RL: GRPO (TRL) on next-action generation over the expert states, from the ACT "
                  "checkpoint; reward 1.0 expert action, 0.1 other admissible, -0.5 malformed."),
    "rl_baseline": ("rl", "base_model", "expert_trajectories",
                    "Baseline RL: the same GRPO on the same expert states, starting from the base model."),
    "early_experience": ("ee", "base_model", "reflections",
                         "Early Experience (self-reflection): SFT (TRL) on the same expert steps as IL, with IL's "
                         "settings, each target the base model's reflection on what the expert action and the "
                         "executed alternatives led to, then the expert action; from the base model."),
}


def training_assets(b: Benchmark, cfg: PipelineConfig) -> list[dg.AssetsDefinition]:
    def arm(name: str) -> dg.AssetsDefinition:
        stage, init_asset, data_asset, description = _SPECS[name]

        @dg.asset(**GPU_STEP, key=b.key(name), group_name=b.name, kinds={"trl", "pytorch"},
                  partitions_def=seed_partitions(cfg),
                  code_version=_version(cfg, b, stage),
                  description=description,
                  ins={"init": dg.AssetIn(key=dg.AssetKey("base_model") if init_asset == "base_model"
                                          else b.key(init_asset)),
                       "data": dg.AssetIn(key=b.key(data_asset))})
        def _arm(context: dg.AssetExecutionContext, profile: ProfileResource, init: dict, data: dict) -> dg.Output[dict]:
            return _train(context, profile, b, name, stage, init, data, data_name=data_asset)

        return _arm

    return [arm(a) for a in arms(cfg)]


def _version(cfg: PipelineConfig, b: Benchmark, stage: str) -> str:
    """The arm's code version: its stage's modules and settings; for ACT also the split its judgement
    probe reads when that is not the held-out one (a checkpoint probed on validation pairs while
    tuning is not the one probed on held-out pairs)."""
    v = code_version(cfg, STAGE_MODULES[stage], [*STAGE_SETTINGS[stage], b.name, "training"])
    if stage == "act" and b.eval_split(cfg) != b.heldout_split:
        v = sha256_bytes(f"{v}|probe:{b.eval_split(cfg)}")[:16]
    return v


def _card(context, cfg: PipelineConfig, b: Benchmark, asset: str, parents: dict, stage: str, seed: int | None) -> dict:
    """Lineage for the model card: parents' URIs and versions, config, code version, run."""
    d = cfg.to_dict()
    section = STAGE_SETTINGS[stage][0]
    if seed is not None:  # the partition's training seed
        d[section]["seed"] = seed
    fields = ("uri", "hash", "rows", "name", "games_hash", "trajectories_hash", "alternatives_hash", "sampler_model",
              "sampler_model_hash", "grounded", "reflecting_model", "reflecting_model_hash", "outcomes_hash")
    return {
        "asset": b.label(asset), "description": context.assets_def.descriptions_by_key.get(context.asset_key, ""),
        "parents": {k: {f: v.get(f) for f in fields if f in v} for k, v in parents.items()},
        "config": {**{k: d[k] for k in STAGE_SETTINGS[stage]}, b.name: d[b.name], "model": d["model"]},
        "profile": cfg.source, "code_version": context.assets_def.code_versions_by_key.get(context.asset_key),
        "dagster_run_id": context.run_id, **({"partition": context.partition_key} if seed is not None else {}),
    }


def _work_dir(context, profile: ProfileResource, cfg: PipelineConfig, b: Benchmark, stage: str, init: dict, data: dict,
              seed: int | None):
    """Where trainer checkpoints go: keyed by what the training *is* (inputs, config, seed, code),
    not by the run, so re-materializing after a crash finds them and resumes."""
    return work_dir(profile.root(), context.asset_key, cfg, b, stage, init["hash"], data["hash"],
                    context.assets_def.code_versions_by_key.get(context.asset_key), seed)


def work_dir(root, key: dg.AssetKey, cfg: PipelineConfig, b: Benchmark, stage: str, init_hash: str, data_hash: str,
             version: str | None, seed: int | None):
    """``<root>/trainer_state/<asset>/<key>``: the key hashes the inputs' content hashes, the stage's and
    the benchmark's settings, the arm's code version and the training seed."""
    key_ = sha256_bytes("|".join([init_hash, data_hash, *map(cfg.section_hash, STAGE_SETTINGS[stage]),
                                  cfg.section_hash(b.name), str(version)]
                                 + ([f"seed={seed}"] if seed is not None else [])))
    return Path(root) / "trainer_state" / key.to_user_string() / key_[:16]


def resume_dirs(cfg: PipelineConfig, root) -> set[Path]:
    """The trainer_state folders the profile's arms would resume from if run now: one per arm (and
    training seed) whose inputs are materialized in ``root``, keyed from their current manifests as
    the arm keys it (what ``act-pipeline gc --profile`` keeps)."""
    import json

    from act_pipeline.assets.graph import benchmarks
    from act_pipeline.resources import manifest_path

    out = set()
    for b in benchmarks(cfg):
        for name in arms(cfg):
            stage, init_asset, data_asset, _ = _SPECS[name]
            version = _version(cfg, b, stage)
            for seed in cfg.seeds or [None]:
                part = None if seed is None else str(seed)
                init = (manifest_path(root, dg.AssetKey("base_model")) if init_asset == "base_model"
                        else manifest_path(root, b.key(init_asset), part))  # act_checkpoint: the same seed's
                data = manifest_path(root, b.key(data_asset))
                if init.is_file() and data.is_file():
                    out.add(work_dir(root, b.key(name), cfg, b, stage, json.loads(init.read_text())["hash"],
                                     json.loads(data.read_text())["hash"], version, seed))
    return out


def _train(context, profile: ProfileResource, b: Benchmark, name: str, stage: str, init: dict, data: dict,
           data_name: str) -> dg.Output[dict]:
    from act_pipeline.evaluation.plots import training_curve_png
    from act_pipeline.training.cache import TrainingCache, model_identity, training_key
    from act_pipeline.training.card import card_markdown
    from act_pipeline.training.launch import make_job, run_job

    cfg = profile.config()
    setup_torch(cfg)
    seed = partition_seed(context)
    out = profile.artifact_dir(b.label(name), context.run_id) / "model"
    parents = {"init": init, data_name: data}
    job = make_job(cfg, stage, b.history_len(cfg), init, data, out,
                   _work_dir(context, profile, cfg, b, stage, init, data, seed),
                   _card(context, cfg, b, name, parents, stage, seed), probe_split=b.eval_split(cfg), seed=seed)

    def train() -> dict:
        if cfg.training.launcher == "accelerate":
            return launch_training(context, cfg, job)
        return {**run_job(job, log=context.log.info), "launcher": "inprocess"}

    if cfg.training.reuse:  # the same training done before (e.g. from an ACT checkpoint that equals the base model)
        key = training_key(job, model_identity(init["uri"]), data["hash"],
                           context.assets_def.code_versions_by_key.get(context.asset_key))
        res = TrainingCache(profile.root() / "training_cache").run(key, out, train, job["card"], context.log.info)
    else:
        res = train()
    h = res["content_hash"]  # of `out`, computed where it was saved (checked against the folder under accelerate)
    manifest = {"uri": str(out), "hash": h, "global_step": res["global_step"], "seed": job["config"]["seed"],
                "parents": {k: {"uri": v["uri"], "hash": v["hash"]} for k, v in parents.items()}}
    if res.get("judgement_curve"):
        manifest["judgement_curve"] = res["judgement_curve"]
    # GRPO stages: whether there was a learning signal (groups with all-equal rewards teach nothing)
    signal = {k: res[k] for k in ("frac_groups_equal_reward", "steps_all_groups_equal", "steps_logged",
                                  "truncated_share", "mean_reward_first", "mean_reward_last") if k in res}
    if signal:
        manifest["learning_signal"] = signal
    summary = {k: v for k, v in res.items() if k not in ("log_history", "uri", "content_hash")}
    curve = training_curve_png(out.parent / "training_curve.png", res["log_history"])
    return output(manifest, h,
                  **{k: v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
                  # how it ran: in process or `accelerate launch` (processes, backend, ZeRO stage, job file)
                  **{k: summary[k] for k in ("launcher", "distributed_type", "backend", "device", "accelerate_config",
                                             "job", "reused_from") if isinstance(summary.get(k), str)},
                  parents=dg.MetadataValue.json(manifest["parents"]),
                  model_card=dg.MetadataValue.md(card_markdown(out)) if (out / "README.md").exists() else None,
                  training_curve=png_md(curve))
