"""ScienceWorld: its task variations (the train variations train; the test variations are held out)."""

import dagster as dg
import pyarrow as pa

from act_pipeline.assets.benchmark import Benchmark
from act_pipeline.assets.common import games_output
from act_pipeline.assets.versions import code_version
from act_pipeline.config import PipelineConfig
from act_pipeline.data.store import table_hash, write_parquet_atomic
from act_pipeline.resources import ProfileResource

SCIENCEWORLD = Benchmark(
    name="scienceworld", heldout_split="test", env_factory="act_pipeline.envs.scienceworld:ScienceWorldTask",
    env_modules=("act_pipeline.envs.scienceworld",),
    env_kwargs=lambda cfg, expert: {"expert": expert, "simplification": cfg.scienceworld.simplification,
                                    "step_limit": cfg.scienceworld.env_step_limit,
                                    "max_admissible": cfg.scienceworld.max_admissible},
    expert=lambda cfg: "gold path",
)


def scienceworld_assets(cfg: PipelineConfig) -> list[dg.AssetsDefinition]:
    b = SCIENCEWORLD

    @dg.asset(
        key=b.key("games"), group_name=b.name, kinds={"scienceworld", "parquet"},
        code_version=code_version(cfg, ["act_pipeline.envs.scienceworld"], ["scienceworld"]),
        description="ScienceWorld task variations: the first N train variations of each task (expert "
                    "trajectories that train) and the first M test variations (held-out expert states and pairs).",
    )
    def scienceworld_games(context: dg.AssetExecutionContext, profile: ProfileResource) -> dg.Output[dict]:
        import scienceworld

        from act_pipeline.envs.scienceworld import list_games

        s = profile.config().scienceworld
        rows = ([dict(r, roles=["train"]) for r in list_games("train", s.tasks or None, s.train_variations)]
                + [dict(r, roles=["heldout_states"]) for r in list_games("test", s.tasks or None, s.heldout_variations)])
        table = pa.Table.from_pylist(rows)
        path = write_parquet_atomic(table, profile.artifact_dir(b.label("games"), context.run_id) / "games.parquet")
        source = f"scienceworld {getattr(scienceworld, '__version__', '?')} (simplification {s.simplification})"
        return games_output(context, path, rows, table_hash(table), source, ("train", "test"))

    return [scienceworld_games]
