"""One benchmark's Early Experience (self-reflection) data: the alternatives executed in the
environment, then the base model's reflections. In the graph when ``arms`` lists
``early_experience``; the arm itself (SFT) is in ``training.py``."""

import time

import dagster as dg

from act_pipeline.assets.benchmark import Benchmark
from act_pipeline.assets.common import GPU_STEP, lineage, output, preview, setup_torch, value_counts
from act_pipeline.assets.versions import code_version
from act_pipeline.config import PipelineConfig
from act_pipeline.data.store import read_parquet, table_hash, write_parquet_atomic
from act_pipeline.resources import ProfileResource, WarehouseResource

ARM = "early_experience"
REFLECTION_MODULES = ["act_pipeline.sampling.reflections", "act_pipeline.act.reflection", "act_pipeline.act.prompts",
                      "act_pipeline.sampling.hf", "act_pipeline.sampling.vllm"]


def early_experience_assets(b: Benchmark, cfg: PipelineConfig) -> list[dg.AssetsDefinition]:
    if ARM not in cfg.arms:
        return []

    @dg.asset(
        key=b.key("alternative_outcomes"), group_name=b.name, kinds={b.name, "parquet", "duckdb"},
        ins=b.ins("games", "expert_trajectories", "sampled_alternatives"),
        code_version=code_version(cfg, ["act_pipeline.data.outcomes", *b.env_modules], [b.name, ARM]),
        description="Early Experience: at each training expert state, up to `early_experience.alternatives` sampled "
                    "alternatives (and the expert action) executed in the game, replayed to the state with every "
                    "observation checked; one row per (state, action) with its next observation and status.",
    )
    def alternative_outcomes(context: dg.AssetExecutionContext, profile: ProfileResource,
                             warehouse: WarehouseResource, games: dict, expert_trajectories: dict,
                             sampled_alternatives: dict) -> dg.Output[dict]:
        return _outcomes(context, profile, warehouse, b, games, expert_trajectories, sampled_alternatives)

    @dg.asset(
        **GPU_STEP, key=b.key("reflections"), group_name=b.name, kinds={"transformers", "parquet", "duckdb"},
        ins={"base_model": dg.AssetIn("base_model"), **b.ins("expert_trajectories", "alternative_outcomes")},
        code_version=code_version(cfg, REFLECTION_MODULES, [b.name, ARM, "model"]),
        description="Early Experience: the base model's reflection at every training expert state on why the "
                    "expert action is better, given what it and each alternative led to; the SFT data of the arm.",
    )
    def reflections(context: dg.AssetExecutionContext, profile: ProfileResource, warehouse: WarehouseResource,
                    base_model: dict, expert_trajectories: dict, alternative_outcomes: dict) -> dg.Output[dict]:
        return _reflections(context, profile, warehouse, b, base_model, expert_trajectories, alternative_outcomes)

    return [alternative_outcomes, reflections]


def training_steps(rows: list[dict]) -> list[dict]:
    """The expert steps IL trains on (won training games): the states Early Experience reflects at."""
    from act_pipeline.training.launch import STAGE_FILTERS, select_rows

    return select_rows(rows, STAGE_FILTERS["ee"])


def _outcomes(context, profile: ProfileResource, warehouse: WarehouseResource, b: Benchmark, games: dict,
              expert_trajectories: dict, sampled_alternatives: dict) -> dg.Output[dict]:
    from act_pipeline.data.outcomes import execute_alternatives, pick_alternatives
    from act_pipeline.envs.workers import game_env_set

    cfg = profile.config()
    steps = training_steps(read_parquet(expert_trajectories["uri"]).to_pylist())
    picked = pick_alternatives(read_parquet(sampled_alternatives["uri"]).to_pylist(), {s["state_id"] for s in steps},
                               cfg.early_experience.alternatives)
    context.log.info(f"executing {sum(map(len, picked.values()))} alternatives at {len(picked)} of {len(steps)} "
                     "training expert states")
    t0 = time.time()
    # no expert in these games (faster resets); envs.expert_workers games at once, the same table
    with game_env_set(cfg.envs, b.env_factory, b.env_kwargs(cfg, False), cfg.envs.expert_workers,
                      context.log.info) as make_games:
        table, stats = execute_alternatives(read_parquet(games["uri"]).to_pylist(), steps, picked, make_games,
                                            log=context.log.info, retries=cfg.envs.retries)
    path = write_parquet_atomic(table, profile.artifact_dir(b.label("alternative_outcomes"), context.run_id)
                                / "outcomes.parquet")
    warehouse.get().register(b.view("alternative_outcomes"), path)
    h = table_hash(table)
    parents = {"games": games, "expert_trajectories": expert_trajectories, "sampled_alternatives": sampled_alternatives}
    lineage(context, path, parents, hash=h, alternatives=cfg.early_experience.alternatives)
    return output({"uri": str(path), "hash": h, "rows": table.num_rows, "status": stats["status"],
                   "trajectories_hash": expert_trajectories["hash"], "alternatives_hash": sampled_alternatives["hash"]},
                  h, games=stats["games"], seconds=round(time.time() - t0, 1),
                  status=dg.MetadataValue.json(stats["status"]), env_faults=dg.MetadataValue.json(stats["env_faults"]),
                  not_ok=dg.MetadataValue.json(stats["not_ok"]),
                  preview=preview(table.slice(0, 8).to_pylist(), ["step", "action", "is_expert", "next_observation",
                                                                  "status"]))


def _reflections(context, profile: ProfileResource, warehouse: WarehouseResource, b: Benchmark, base_model: dict,
                 expert_trajectories: dict, alternative_outcomes: dict) -> dg.Output[dict]:
    import pyarrow.compute as pc

    from act_pipeline.sampling.backends import make_sampler
    from act_pipeline.sampling.base import SamplingParams
    from act_pipeline.sampling.reflections import STOPS, write_reflections

    cfg = profile.config()
    setup_torch(cfg)
    ee = cfg.early_experience
    steps = training_steps(read_parquet(expert_trajectories["uri"]).to_pylist())
    sampler, tok = make_sampler(cfg.model_copy(update={"sampling": cfg.sampling.model_copy(
        update={"batch_size": ee.batch_size})}), base_model["uri"], stop_strings=STOPS)
    t0 = time.time()
    table = write_reflections(sampler, tok, steps, read_parquet(alternative_outcomes["uri"]).to_pylist(),
                              SamplingParams(n=1, temperature=ee.temperature, max_new_tokens=ee.max_new_tokens,
                                             seed=cfg.seed), b.history_len(cfg),
                              lambda done, total: context.log.info(f"reflections {done}/{total}"))
    path = write_parquet_atomic(table, profile.artifact_dir(b.label("reflections"), context.run_id)
                                / "reflections.parquet")
    warehouse.get().register(b.view("reflections"), path)
    h = table_hash(table)
    lineage(context, path, {"reflecting_model": base_model, "expert_trajectories": expert_trajectories,
                            "alternative_outcomes": alternative_outcomes}, hash=h,
            max_new_tokens=ee.max_new_tokens, temperature=ee.temperature)
    grounded = int(pc.sum(table["grounded"]).as_py() or 0) if table.num_rows else 0
    truncated = int(pc.sum(table["truncated"]).as_py() or 0) if table.num_rows else 0
    context.log.info(f"{table.num_rows} training states, {grounded} with a reflection ({truncated} cut by the "
                     f"token limit), {table.num_rows - grounded} without (their replay failed: expert action only)")
    return output({"uri": str(path), "hash": h, "rows": table.num_rows, "grounded": grounded,
                   "reflecting_model": base_model["uri"], "reflecting_model_hash": base_model["hash"],
                   "outcomes_hash": alternative_outcomes["hash"]}, h,
                  grounded=grounded, ungrounded=table.num_rows - grounded, truncated=truncated,
                  seconds=round(time.time() - t0, 1),
                  rows_by_split=dg.MetadataValue.json(value_counts(table, "split")),
                  preview=preview(table.slice(0, 8).to_pylist(), ["step", "expert_action", "reflection"]))
