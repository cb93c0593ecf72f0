"""Dagster definitions: the assets of a profile, their checks, jobs, schedule, sensor, resources.

``make_definitions(profile, data_root)`` builds everything from that profile (read once, here);
``defs`` is what ``dagster dev`` / ``dg dev`` load: the profile named by ``$ACT_PROFILE``
(default ``configs/default.yaml``) and the data root ``$ACT_HOME`` (default ``.act_home``), read
when Dagster loads the code location, never at import.
"""

import dagster as dg

from act_pipeline.assets.common import GPU_TAG
from act_pipeline.assets.graph import build_assets, build_checks
from act_pipeline.assets.sensors import expert_data_sensor
from act_pipeline.config import default_profile_path, load_config, uses_gpu
from act_pipeline.console import LOGGERS
from act_pipeline.resources import JsonManifestIOManager, ProfileResource, WarehouseResource, default_data_root


def build_resources(profile_path: str | None = None, data_root: str | None = None) -> dict:
    root = data_root or default_data_root()
    return {
        "profile": ProfileResource(profile_path=str(profile_path or default_profile_path()), data_root=root),
        "warehouse": WarehouseResource(path=f"{root}/warehouse.duckdb"),
        "io_manager": JsonManifestIOManager(base_dir=root),
    }


def gpu_executor() -> dg.ExecutorDefinition:
    """Dagster's multiprocess executor with the GPU steps (tag act-pipeline/gpu) one at a time; its run
    config sets only ``max_concurrent``, the steps at once (default: as many as CPU cores;
    ``act-pipeline run --jobs``)."""
    return dg.multiprocess_executor.configured(
        lambda c: {"max_concurrent": c.get("max_concurrent"), "tag_concurrency_limits": [{"key": GPU_TAG, "limit": 1}]},
        config_schema={"max_concurrent": dg.Field(dg.Noneable(int), default_value=None,
                                                  description="Steps at once (default: as many as CPU cores).")})


def make_definitions(profile_path: str | None = None, data_root: str | None = None) -> dg.Definitions:
    """The graph for a profile (ALFWorld; plus ScienceWorld when the profile enables it)."""
    profile_path = str(profile_path or default_profile_path())
    cfg = load_config(profile_path)
    if cfg.transfer.enabled:  # a transfer set the profile names must be there (ConfigError naming the setting)
        from act_pipeline.evaluation.transfer import resolve_sets

        resolve_sets(cfg.transfer, data_root or default_data_root(), cfg.source)
    # GPU profiles: runs carry the tag `act-pipeline/device: gpu` (deploy/dagster.yaml queues them one
    # at a time), and within a run the GPU steps (tagged act-pipeline/gpu) run one after another, since
    # each takes every GPU of the node. CPU profiles keep the default executor.
    gpu = uses_gpu(cfg)
    tags = {"act-pipeline/device": "gpu" if gpu else "cpu"}
    executor = gpu_executor() if gpu else None
    assets = build_assets(cfg)
    everything = dg.define_asset_job(
        "act_pipeline_job", selection=dg.AssetSelection.all(), tags=tags, executor_def=executor,
        description="Every ACT stage of every benchmark in the profile: games → expert trajectories → alternatives "
                    "→ pairs → ACT → IL / RL → evaluation → report.")
    # every benchmark's evaluation and the report (the checkpoints as they are)
    evals = [a.key for a in assets if a.key.path[-1] in ("evaluation", "transfer_evaluation", "eval_report")]
    eval_job = dg.define_asset_job(
        "eval_job", selection=dg.AssetSelection.assets(*evals), tags=tags, executor_def=executor,
        description="Re-evaluate the current checkpoints (e.g. after an environment or evaluation change).")
    # Off until turned on in the UI (Automation tab) or with `dagster schedule start`; needs the
    # daemon (`dagster dev` runs one).
    weekly_eval = dg.ScheduleDefinition(name="weekly_eval", job=eval_job, cron_schedule="0 3 * * 1",
                                        default_status=dg.DefaultScheduleStatus.STOPPED)
    return dg.Definitions(assets=assets, asset_checks=build_checks(cfg), jobs=[everything, eval_job],
                          schedules=[weekly_eval], sensors=[expert_data_sensor],
                          resources=build_resources(profile_path, data_root),
                          # `act_console`: the CLI's calm console (runs from the UI keep Dagster's default)
                          loggers=LOGGERS)


@dg.definitions
def defs() -> dg.Definitions:
    return make_definitions()
