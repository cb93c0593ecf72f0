"""Dagster definitions: assets, the job that materializes them all, resources.

The run profile comes from ``$ACT_PROFILE`` (default ``configs/default.yaml``) and the data root
from ``$ACT_HOME`` (default ``.act_home`` in the repo).
"""


import dagster as dg

from act_pipeline.assets.checks import build_checks
from act_pipeline.assets.pipeline import GPU_TAG, build_assets
from act_pipeline.assets.sensors import expert_data_sensor
from act_pipeline.config import default_profile_path, load_config, uses_gpu
from act_pipeline.resources import JsonManifestIOManager, ProfileResource, WarehouseResource, default_data_root


def build_resources(profile_path: str | None = None, data_root: str | None = None) -> dict:
    root = data_root or default_data_root()
    return {
        "profile": ProfileResource(profile_path=str(profile_path or default_profile_path()), data_root=root),
        "warehouse": WarehouseResource(path=f"{root}/warehouse.duckdb"),
        "io_manager": JsonManifestIOManager(base_dir=root),
    }


# GPU profiles: runs carry the tag `act-pipeline/device: gpu` (deploy/dagster.yaml queues them one
# at a time), and within a run the GPU steps (tagged act-pipeline/gpu) run one after another, since
# each takes every GPU of the node. CPU profiles keep the default executor.
_GPU = uses_gpu(load_config(default_profile_path()))
_RUN_TAGS = {"act-pipeline/device": "gpu" if _GPU else "cpu"}
_EXECUTOR = (dg.multiprocess_executor.configured({"tag_concurrency_limits": [{"key": GPU_TAG, "limit": 1}]})
             if _GPU else None)

act_pipeline_job = dg.define_asset_job(
    "act_pipeline_job", selection=dg.AssetSelection.all(), tags=_RUN_TAGS, executor_def=_EXECUTOR,
    description="Every ACT stage of every benchmark in the profile: games → expert trajectories → alternatives "
                "→ pairs → ACT → IL / RL → evaluation → report.",
)



def make_definitions(profile_path: str | None = None, data_root: str | None = None) -> dg.Definitions:
    """The graph for a profile (ALFWorld; plus ScienceWorld when the profile enables it)."""
    cfg = load_config(profile_path or default_profile_path())
    # every benchmark's evaluation and the report (the checkpoints as they are)
    evals = [dg.AssetKey("alfworld_evaluation"), dg.AssetKey("eval_report")]
    if cfg.scienceworld.enabled:
        evals.append(dg.AssetKey(["scienceworld", "evaluation"]))
    eval_job = dg.define_asset_job(
        "eval_job", selection=dg.AssetSelection.assets(*evals), tags=_RUN_TAGS, executor_def=_EXECUTOR,
        description="Re-evaluate the current checkpoints (e.g. after an environment or evaluation change).",
    )
    # Off until turned on in the UI (Automation tab) or with `dagster schedule start`; needs the
    # daemon (`dagster dev` runs one).
    weekly_eval = dg.ScheduleDefinition(name="weekly_eval", job=eval_job, cron_schedule="0 3 * * 1",
                                        default_status=dg.DefaultScheduleStatus.STOPPED)
    return dg.Definitions(assets=build_assets(cfg), asset_checks=build_checks(cfg), jobs=[act_pipeline_job, eval_job],
                          schedules=[weekly_eval], sensors=[expert_data_sensor],
                          resources=build_resources(profile_path, data_root))


defs = make_definitions()
