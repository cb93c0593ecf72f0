"""ALFWorld: its games (official splits, or generated offline) and the expert steps users import."""

import dataclasses

import dagster as dg
import pyarrow as pa

from act_pipeline.assets.benchmark import Benchmark
from act_pipeline.assets.common import games_output, lineage, output, preview
from act_pipeline.assets.versions import code_version
from act_pipeline.config import PipelineConfig
from act_pipeline.data.store import table_hash, write_parquet_atomic
from act_pipeline.files import safe_join, sha256_file
from act_pipeline.resources import ProfileResource


def _rollout_games(cfg: PipelineConfig, games: list[dict]) -> dict[str, list[dict]]:
    """valid_seen and valid_unseen games for success rates, balanced over task types."""
    from act_pipeline.envs.alfworld import select_balanced

    e = cfg.eval
    return {split: select_balanced([g for g in games if g["split"] == split], n, lambda g: g["task_type"])
            for split, n in (("valid_seen", e.games_valid_seen), ("valid_unseen", e.games_valid_unseen))}


def _game_hash(game: dict) -> str:
    """What playing a game reads (its game file and traj_data.json), wherever the game was built."""
    from act_pipeline.envs.alfworld import game_content_hash

    return game_content_hash(game["gamefile"])


ALFWORLD = Benchmark(
    name="alfworld", heldout_split="valid_unseen", env_factory="act_pipeline.envs.alfworld:AlfworldGame",
    env_modules=("act_pipeline.envs.alfworld",),
    env_kwargs=lambda cfg, expert: {"expert": cfg.alfworld.expert if expert else None},
    expert=lambda cfg: cfg.alfworld.expert, rollout_games=_rollout_games, imports=True,
    # the PDDL planner (and the handcoded expert) play a game the same every time: played games are cached
    game_hash=_game_hash, expert_packages=("alfworld", "textworld", "fast-downward-textworld"),
)


def alfworld_assets(cfg: PipelineConfig) -> list[dg.AssetsDefinition]:
    b = ALFWORLD

    @dg.asset(
        key=b.key("games"), group_name=b.name, kinds={"alfworld", "parquet"},
        code_version=code_version(cfg, ["act_pipeline.envs.alfworld", "act_pipeline.envs.alfworld_gen"],
                                  ["alfworld", "seed"]),
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
        # training games: the profile's selection; evaluation splits: every game (the evaluation picks
        # its N, so changing the eval section never touches this asset or anything trained from it)
        every_train = aw.discover_games(data, "train", a.task_types)
        train = aw.select_balanced(every_train, a.train_games)
        # validation: more train-split games, none of the training ones, their split renamed (tuning)
        chosen = {g.game_id for g in train}
        validation = [dataclasses.replace(g, split="validation") for g in
                      aw.select_balanced([g for g in every_train if g.game_id not in chosen], a.validation_games)]
        seen = aw.discover_games(data, "valid_seen", a.task_types)
        unseen = aw.discover_games(data, "valid_unseen", a.task_types)
        roles: dict[str, set] = {f"{g.game_id}|train": {"train"} for g in train}
        roles.update({f"{g.game_id}|validation": {"heldout_states", "validation"} for g in validation})
        for g in seen + unseen:
            roles[f"{g.game_id}|{g.split}"] = {"eval"}
        for g in aw.select_balanced(unseen, a.eval_state_games):
            roles[f"{g.game_id}|valid_unseen"].add("heldout_states")
        out_dir = profile.artifact_dir(b.label("games"), context.run_id)
        logic = aw.game_logic()
        rows = []
        for g in train + validation + seen + unseen:
            gamefile = aw.build_game(g.path, safe_join(out_dir, g.split, g.game_id, what="game id"), logic)
            rows.append({"game_id": g.game_id, "split": g.split, "task_type": g.task_type, "scene": g.scene,
                         "gamefile": str(gamefile), "game_hash": sha256_file(gamefile),
                         "roles": sorted(roles[g.game_id + "|" + g.split]), "source_path": str(g.path)})
        table = pa.Table.from_pylist(rows)
        path = write_parquet_atomic(table, out_dir / "games.parquet")
        return games_output(context, path, rows, table_hash(table.drop_columns(["gamefile", "source_path"])), source,
                            (*aw.SPLITS, "validation") if validation else aw.SPLITS)

    @dg.asset(
        key=b.key("imported_expert_steps"), group_name=b.name, kinds={"parquet"},
        code_version=code_version(cfg, ["act_pipeline.data.imports"], ["alfworld"]),
        description="Expert steps users imported (JSONL, validated whole; `act-pipeline import-expert` or the "
                    "landing-folder sensor). Empty until something is imported.",
    )
    def imported_expert_steps(context: dg.AssetExecutionContext, profile: ProfileResource) -> dg.Output[dict]:
        from act_pipeline.data.imports import load_store

        cfg = profile.config()
        store = profile.root() / "expert_imports"
        table, files = load_store(store, cfg.alfworld.history_len)
        path = write_parquet_atomic(table, profile.artifact_dir(b.label("imported_expert_steps"), context.run_id)
                                    / "steps.parquet")
        h = table_hash(table)
        lineage(context, path, {}, hash=h, source=str(store), files=files)
        return output({"uri": str(path), "hash": h, "rows": table.num_rows, "files": [f["sha256"] for f in files]}, h,
                      files=dg.MetadataValue.json(files), store=dg.MetadataValue.path(str(store)))

    return [alfworld_games, imported_expert_steps]
