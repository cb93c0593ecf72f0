"""One benchmark's data chain: expert trajectories → sampled alternatives → contrast pairs.

Built for any :class:`Benchmark` by :func:`data_assets`; training (``training.py``) and
evaluation (``evaluation.py``) continue the chain.
"""

import time

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from act_pipeline.assets.benchmark import Benchmark
from act_pipeline.assets.common import GPU_STEP, lineage, output, preview, setup_torch, value_counts
from act_pipeline.assets.versions import code_version, source_hash
from act_pipeline.config import PipelineConfig
from act_pipeline.data.store import read_parquet, table_hash, write_parquet_atomic
from act_pipeline.resources import ProfileResource, WarehouseResource

SAMPLING_MODULES = ["act_pipeline.sampling", "act_pipeline.act.pairs", "act_pipeline.act.prompts",
                    "act_pipeline.act.parsing", "act_pipeline.envs.actions"]


def data_assets(b: Benchmark, cfg: PipelineConfig) -> list[dg.AssetsDefinition]:
    traj_ins = b.ins("games", *(["imported_expert_steps"] if b.imports else []))

    @dg.asset(
        key=b.key("expert_trajectories"), ins=traj_ins, group_name=b.name, kinds={b.name, "parquet", "duckdb"},
        code_version=code_version(cfg, ["act_pipeline.data.trajectories", *b.env_modules], [b.name]),
        description="The expert played through the training games and the held-out games (a game the expert "
                    "loses is recorded, never trained on): one row per step" + (", plus imported expert steps."
                                                                                  if b.imports else "."),
    )
    def expert_trajectories(context: dg.AssetExecutionContext, profile: ProfileResource, warehouse: WarehouseResource,
                            games: dict, **imported: dict) -> dg.Output[dict]:
        return _trajectories(context, profile, warehouse, b, games, imported.get("imported_expert_steps"))

    @dg.asset(
        **GPU_STEP, key=b.key("sampled_alternatives"), ins={"base_model": dg.AssetIn("base_model"),
                                                             **b.ins("expert_trajectories")},
        group_name=b.name, kinds={"transformers", "parquet", "duckdb"},
        code_version=code_version(cfg, SAMPLING_MODULES, ["sampling", b.name]),
        description="K actions sampled by π₀ at every expert state, each kept or dropped with its reason.",
    )
    def sampled_alternatives(context: dg.AssetExecutionContext, profile: ProfileResource,
                             warehouse: WarehouseResource, base_model: dict,
                             expert_trajectories: dict) -> dg.Output[dict]:
        return _sample(context, profile, warehouse, b, base_model, expert_trajectories)

    @dg.asset(
        key=b.key("contrast_pairs"), ins=b.ins("expert_trajectories", "sampled_alternatives"),
        group_name=b.name, kinds={"duckdb", "parquet"},
        code_version=code_version(cfg, ["act_pipeline.act.pairs"], ["pairs"]),
        description="Contrast pairs (state, expert action, alternative) in seeded random slot order, built in DuckDB.",
    )
    def contrast_pairs(context: dg.AssetExecutionContext, profile: ProfileResource, warehouse: WarehouseResource,
                       expert_trajectories: dict, sampled_alternatives: dict) -> dg.Output[dict]:
        return _pairs(context, profile, warehouse, b, expert_trajectories, sampled_alternatives)

    return [expert_trajectories, sampled_alternatives, contrast_pairs]


def _trajectories(context, profile: ProfileResource, warehouse: WarehouseResource, b: Benchmark, games: dict,
                  imported: dict | None) -> dg.Output[dict]:
    from act_pipeline.data.trajectories import collect_expert_trajectories
    from act_pipeline.envs.workers import game_env_set

    cfg = profile.config()
    s = b.settings(cfg)
    rows = [g for g in read_parquet(games["uri"]).to_pylist() if "train" in g["roles"] or "heldout_states" in g["roles"]]
    cache = trajectory_cache(warehouse.get(), b, cfg, context.log.warning)
    # envs.expert_workers games at once, each thread with its own worker; the table is the same
    # (workers start only if a game is played: with every game cached, none does)
    with game_env_set(cfg.envs, b.env_factory, b.env_kwargs(cfg, True), cfg.envs.expert_workers,
                      context.log.info) as make_games:
        table, stats = collect_expert_trajectories(rows, make_games, s.max_expert_steps, s.history_len,
                                                   log=context.log.info, retries=cfg.envs.retries,
                                                   retry_unwon=getattr(s, "retry_unwon", 0), cache=cache)
    parents = {"games": games}
    if imported is not None:
        parents["imported_expert_steps"] = imported
        steps = read_parquet(imported["uri"])
        if steps.num_rows:
            played = set(table.column("state_id").to_pylist())
            keep = [sid not in played for sid in steps.column("state_id").to_pylist()]
            table = pa.concat_tables([table, steps.filter(pa.array(keep))])
            context.log.info(f"added {sum(keep)} imported expert steps")
    path = write_parquet_atomic(table, profile.artifact_dir(b.label("expert_trajectories"), context.run_id)
                                / "steps.parquet")
    warehouse.get().register(b.view("expert_trajectories"), path)
    h = table_hash(table)
    lineage(context, path, parents, hash=h, expert=b.expert(cfg))
    return output({"uri": str(path), "hash": h, "rows": table.num_rows, "games_hash": games["hash"],
                   "games_replayed": stats["played"], "games_from_cache": stats["cached"]}, h,
                  games_played=stats["games"], games_won=stats["won"],
                  games_replayed=stats["played"], games_from_cache=stats["cached"],
                  expert_cache=cache.key if cache else "off (the expert is played through every game)",
                  cache_entries_rejected=dg.MetadataValue.json(stats["cache_rejected"]),
                  games_failed=dg.MetadataValue.json(stats["failed"]),
                  env_faults=dg.MetadataValue.json(stats["env_faults"]),
                  rows_by_split=dg.MetadataValue.json(value_counts(table, "split")),
                  preview=preview(table.slice(0, 8).to_pylist(), ["game_id", "step", "expert_action"]))


def trajectory_cache(wh, b: Benchmark, cfg: PipelineConfig, log):
    """The played-games cache of ``b`` in the warehouse ``wh``, under what plays its games in the
    profile ``cfg`` (None: its expert is not cached); ``log`` says which cached entries were ignored."""
    from act_pipeline.data.trajectory_cache import TrajectoryCache, package_versions, trajectory_key

    if b.game_hash is None:
        return None
    s = b.settings(cfg)
    key = trajectory_key(env=b.env_kwargs(cfg, True), max_expert_steps=s.max_expert_steps, history_len=s.history_len,
                         retry_unwon=getattr(s, "retry_unwon", 0),
                         player=source_hash("act_pipeline.data.trajectories", *b.env_modules),
                         packages=package_versions(b.expert_packages))
    return TrajectoryCache(wh, key, b.game_hash, log=log)


def _sample(context, profile: ProfileResource, warehouse: WarehouseResource, b: Benchmark, base_model: dict,
            expert_trajectories: dict) -> dg.Output[dict]:
    from act_pipeline.files import dir_hash
    from act_pipeline.models import bf16_fast, inference_device
    from act_pipeline.sampling.constrained import ScoringProcesses
    from act_pipeline.sampling.alternatives import sample_alternatives, states_per_game
    from act_pipeline.sampling.backends import make_sampler
    from act_pipeline.sampling.base import SamplingParams
    from act_pipeline.sampling.cache import SampleCache, sampling_key

    cfg = profile.config()
    setup_torch(cfg)
    s = cfg.sampling
    hl = b.history_len(cfg)
    # cross-size reuse: another model may sample (sampling.model_path); lineage records which
    sampler_uri = s.model_path or base_model["uri"]
    sampler_hash = dir_hash(s.model_path) if s.model_path else base_model["hash"]
    if s.model_path:
        context.log.info(f"alternatives sampled by {s.model_path} (hash {sampler_hash[:12]}), not the base model")
    sampler, tok = make_sampler(cfg, sampler_uri, stop_strings=["</action>"])
    states = states_per_game([r for r in read_parquet(expert_trajectories["uri"]).to_pylist() if r["won"]],
                             s.states_per_game, cfg.seed)
    t0 = time.time()
    last = [0.0]

    def progress(done: int, total: int) -> None:
        if time.time() - last[0] > 10 or done == total:
            last[0] = time.time()
            rate = done / max(1e-9, time.time() - t0)
            eta = f", ETA {(total - done) / rate:.0f} s" if rate > 0 and done < total else ""
            context.log.info(f"sampled {done}/{total} states ({rate:.1f} states/s{eta})")

    params = SamplingParams(n=s.k, temperature=s.temperature, top_p=s.top_p, max_new_tokens=s.max_new_tokens,
                            seed=cfg.seed)
    # another backend samples differently from the same seed: it gets its own cache entries
    backend = {} if s.backend == "transformers" else {"backend": s.backend}
    key = sampling_key(model=sampler_hash, params=params, history_len=hl, thinking=cfg.model.thinking,
                       dtype="bfloat16" if cfg.model.inference_dtype == "bfloat16" and bf16_fast() else "float32",
                       prompts=source_hash("act_pipeline.act.prompts"), policy=s.policy, **backend)
    # sampling.workers: the constrained scores computed in that many processes (CPU, transformers),
    # each loading the sampler model from its folder with one torch thread; the same table
    procs = None
    if s.workers > 1 and s.backend == "transformers" and s.policy != "free":
        if inference_device() == "cpu":
            procs = ScoringProcesses(sampler_uri, cfg.model.inference_dtype, cfg.model.trust_remote_code, s.workers)
            context.log.info(f"constrained scoring in {s.workers} processes")
        else:
            context.log.info(f"sampling.workers: {s.workers} ignored on {inference_device()} (one process scores)")
    table, counts = sample_alternatives(sampler, tok, states, params, hl, cfg.model.thinking,
                                        progress, s.policy, SampleCache(warehouse.get(), key),
                                        constrained_temperature=s.constrained_temperature, score_processes=procs)
    context.log.info(f"states sampled now: {counts['sampled']}, from the cache: {counts['cached']}")
    path = write_parquet_atomic(table, profile.artifact_dir(b.label("sampled_alternatives"), context.run_id)
                                / "alternatives.parquet")
    warehouse.get().register(b.view("sampled_alternatives"), path)
    h = table_hash(table)
    sampler_manifest = {"uri": sampler_uri, "hash": sampler_hash} if s.model_path else base_model
    lineage(context, path, {"sampler_model": sampler_manifest, "expert_trajectories": expert_trajectories},
            k=s.k, temperature=s.temperature, backend=s.backend, hash=h)
    kept = table.filter(pc.equal(table["reason"], "kept")) if table.num_rows else table
    return output({"uri": str(path), "hash": h, "rows": table.num_rows, "sampler_model_hash": sampler_hash,
                   "sampler_model": sampler_uri, "states": len(states), **counts}, h,
                  states=len(states), k=s.k, temperature=s.temperature, backend=s.backend,
                  sampler_model_hash=sampler_hash, sampler_model=sampler_uri, sampler_is_base_model=not s.model_path,
                  reasons=dg.MetadataValue.json(value_counts(table, "reason")),
                  kept_by_origin=dg.MetadataValue.json(value_counts(kept, "origin")),
                  seconds=round(time.time() - t0, 1), states_sampled=counts["sampled"],
                  states_from_cache=counts["cached"])


def _pairs(context, profile: ProfileResource, warehouse: WarehouseResource, b: Benchmark, expert_trajectories: dict,
           sampled_alternatives: dict) -> dg.Output[dict]:
    from act_pipeline.act.pairs import build_pairs, origin_shares

    cfg = profile.config()
    wh = warehouse.get()
    # point the inputs' views at exactly the artifacts this run was given
    traj_view, alt_view, pairs_view = b.view("expert_trajectories"), b.view("sampled_alternatives"), b.view("contrast_pairs")
    wh.register(traj_view, expert_trajectories["uri"])
    wh.register(alt_view, sampled_alternatives["uri"])
    # the cap (pairs.max_pairs) samples the training pairs by task type; held-out pairs are never capped
    table, cap = build_pairs(wh, traj_view, alt_view, cfg.pairs.seed, cfg.pairs.max_pairs)
    path = write_parquet_atomic(table, profile.artifact_dir(b.label("contrast_pairs"), context.run_id) / "pairs.parquet")
    wh.register(pairs_view, path)
    h = table_hash(table)
    lineage(context, path, {"expert_trajectories": expert_trajectories, "sampled_alternatives": sampled_alternatives},
            seed=cfg.pairs.seed, max_pairs=cfg.pairs.max_pairs, cap=cap, hash=h)
    splits = value_counts(table, "split")
    origins = origin_shares(table.select(["split", "origin"]).to_pylist())
    slot1 = wh.scalar(f"SELECT avg(CASE WHEN expert_slot = 1 THEN 1.0 ELSE 0.0 END) FROM {pairs_view}")
    context.log.info(f"{table.num_rows} contrast pairs {splits}; expert in slot 1: {slot1}; origins: {origins}"
                     + (f"; training pairs capped at {cfg.pairs.max_pairs} by task type {cap['quotas']}"
                        if cap["quotas"] else ""))
    return output({"uri": str(path), "hash": h, "rows": table.num_rows, "splits": splits, "origins": origins,
                   "trajectories_hash": expert_trajectories["hash"], "alternatives_hash": sampled_alternatives["hash"],
                   "sampler_model": sampled_alternatives.get("sampler_model"),
                   "sampler_model_hash": sampled_alternatives.get("sampler_model_hash")}, h,
                  rows_by_split=dg.MetadataValue.json(splits), origin_by_split=dg.MetadataValue.json(origins),
                  cap=dg.MetadataValue.json(cap),
                  expert_slot_1_share=float(slot1) if slot1 is not None else None,
                  warehouse=dg.MetadataValue.path(str(wh.path)),
                  preview=preview(table.slice(0, 8).to_pylist(),
                                  ["game_id", "step", "action_1", "action_2", "expert_slot", "origin"]))
