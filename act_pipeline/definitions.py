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


# What a step's process would otherwise import itself: the job's code (rebuilt in every step) and the
# libraries the model steps load (torch, transformers with the Llama modules, TRL's trainers: ~10 s
# here per step). Not alfworld: importing it sets ALFWORLD_DATA (act_pipeline.envs.alfworld). Not
# act_pipeline.cli: a run started as `python -m act_pipeline.cli` has multiprocessing re-run it as
# each step's __main__, which warns where it is imported already.
STEP_PRELOAD = ("act_pipeline.definitions", "torch", "transformers",
                "transformers.models.llama.modeling_llama", "trl.trainer.sft_trainer", "trl.trainer.grpo_trainer")


def step_executor(gpu: bool) -> dg.ExecutorDefinition:
    """Dagster's multiprocess executor as every run of the graph uses it: the CLI's, the UI's (its jobs
    and asset materializations) and the daemon's. Run config: ``max_concurrent``, the steps at once
    (default: as many as CPU cores), and ``model_steps``, how many of those may be steps tagged
    act-pipeline/gpu (default: no limit on a CPU; 1 on GPUs, where each takes every GPU of the node).

    CPU profiles: the step processes are forked from a server that has imported ``STEP_PRELOAD``
    (Dagster's ``forkserver`` start method), so a step does not import torch, transformers and TRL
    itself. The server starts with the run and holds the environment of that moment (the CLI stops it
    after each run: ``cli.stop_forkserver``). GPU profiles: spawned, as before."""

    def config(c: dict) -> dict:
        limit = c.get("model_steps") or (1 if gpu else None)
        out: dict = {"max_concurrent": c.get("max_concurrent")}
        if limit:
            out["tag_concurrency_limits"] = [{"key": GPU_TAG, "limit": limit}]
        if not gpu:
            out["start_method"] = {"forkserver": {"preload_modules": list(STEP_PRELOAD)}}
        return out

    return dg.multiprocess_executor.configured(
        config,
        config_schema={"max_concurrent": dg.Field(dg.Noneable(int), default_value=None,
                                                  description="Steps at once (default: as many as CPU cores)."),
                       "model_steps": dg.Field(dg.Noneable(int), default_value=None,
                                               description="Of those, steps that load a model (tag act-pipeline/gpu) "
                                                           "at once (default: no limit on a CPU, 1 on GPUs).")})


def make_definitions(profile_path: str | None = None, data_root: str | None = None) -> dg.Definitions:
    """The graph for a profile (ALFWorld; plus ScienceWorld when the profile enables it)."""
    profile_path = str(profile_path or default_profile_path())
    cfg = load_config(profile_path)
    if cfg.transfer.enabled:  # a transfer set the profile names must be there (ConfigError naming the setting)
        from act_pipeline.evaluation.transfer import resolve_sets

        resolve_sets(cfg.transfer, data_root or default_data_root(), cfg.source)
    # GPU profiles: runs carry the tag `act-pipeline/device: gpu` (deploy/dagster.yaml queues them one
    # at a time), and within a run the GPU steps (tagged act-pipeline/gpu) run one after another, since
    # each takes every GPU of the node. CPU profiles: step processes forked from a preloaded server.
    gpu = uses_gpu(cfg)
    tags = {"act-pipeline/device": "gpu" if gpu else "cpu"}
    executor = step_executor(gpu)
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
                          executor=executor,  # also the UI's asset materializations (Dagster's implicit job)
                          # `act_console`: the CLI's calm console (runs from the UI keep Dagster's default)
                          loggers=LOGGERS)


@dg.definitions
def defs() -> dg.Definitions:
    return make_definitions()
