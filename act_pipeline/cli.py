"""``act-pipeline``: run the Dagster job from the command line and print what it produced.

    act-pipeline run [--profile configs/default.yaml] [--home .act_home]
    act-pipeline prepare [--profile ...]     # convert the bundled model once
    act-pipeline lineage CHECKPOINT          # the chain from a checkpoint back to the games
    act-pipeline gc [--home DIR] [--delete]  # the folders nothing current refers to (dry run by default)

Runs ``act_pipeline_job`` against the Dagster instance in ``$DAGSTER_HOME`` (the repo root's
dagster.yaml by default), so the run shows up in ``dagster dev`` exactly as one launched from the
UI: with Dagster's multiprocess executor, each step in its own process and independent steps side
by side, ``--jobs`` at a time (default: as many as CPU cores; ``--jobs 1``: every step one after
another in this process). With more than one step at a time, a profile with ``threads: 0`` and no
``OMP_NUM_THREADS`` set, each step's process gets ``cores // jobs`` torch threads (at least 1:
``step_threads``), so that steps side by side do not oversubscribe the cores. Only assets Dagster reports as stale or missing are materialized
(``--all`` for every asset): a second run with nothing changed recomputes nothing.

The console shows one line per stage as it starts and ends, the stages' own progress lines and
a summary; the full event stream (Dagster's DEBUG events, warnings, library logs) goes to
``<data root>/logs/<run id>.log``, whose path is printed at the start and the end
(``act_pipeline/console.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from act_pipeline.assets.common import latest_materialization
from act_pipeline.config import REPO_ROOT, ConfigError, load_config


# The asset keys, job and Dagster tag names this module uses (imported steps: assets.sensors.IMPORTED).
EVAL_REPORT = dg.AssetKey("eval_report")
JOB = "act_pipeline_job"

# Tags Dagster writes on every materialization (dagster/_core/definitions/data_version.py; the names
# are not exported at the package's top level, so they are spelled out here, once).
CODE_VERSION_TAG = "dagster/code_version"
DATA_VERSION_TAG = "dagster/data_version"
INPUT_DATA_VERSION_TAG = "dagster/input_data_version/"  # + the input's key, e.g. alfworld/games
# Dagster's data versions of "materialized, but no data version recorded" and "never materialized"
_DEFAULT_DATA_VERSION, _NULL_DATA_VERSION = "INITIAL", "NULL"

FRESH, STALE, MISSING = "FRESH", "STALE", "MISSING"

# The memory one model step may take (a step tagged act-pipeline/gpu: sampling, ACT / IL / RL training,
# reflections, evaluation; on CPU profiles too): one IL SFT process of the science profile reached 11 GB
# resident (SmolLM2-135M, float32, batch 4; README, Science result, "Memory"), and three seeds' IL SFT
# side by side were OOM-killed in 24 GiB. `--model-steps 0` (the default) lets as many model steps run
# at once as fit in the machine's memory at this size (2 in 24 GiB), and never more than `--jobs`.
MODEL_STEP_BYTES = 11 * 2**30


def _deps(defs, specs=None) -> dict:
    """{asset key: the keys it reads}, from the public asset specs."""
    return {spec.key: {d.asset_key for d in spec.deps} for spec in specs or defs.resolve_all_asset_specs()}


def downstream(keys, deps: dict) -> set:
    """The keys and everything that (transitively) reads one of them."""
    children: dict = {}
    for key, parents in deps.items():
        for parent in parents:
            children.setdefault(parent, set()).add(key)
    out, todo = set(), list(keys)
    while todo:
        key = todo.pop()
        if key not in out:
            out.add(key)
            todo.extend(children.get(key, ()))
    return out


def stale_status(defs, instance, propagate: bool = True, partition: str | None = None) -> dict:
    """The stale status of every asset, as Dagster's "Materialize stale and missing" sees it.

    From public APIs only: the asset specs (dependencies, current code versions) and the tags of
    each asset's latest materialization (the code version and input data versions recorded then).

    MISSING: never materialized. STALE: its code version differs from the one recorded; or an
    input's current data version differs from the one recorded (or an input was added or removed);
    or (``propagate``) an input is itself STALE or MISSING, so it is about to change. FRESH otherwise.
    Without ``propagate`` the answers are those of Dagster's own resolver (which marks only the
    asset whose code changed, not what reads it, until that asset is rematerialized). With
    ``partition`` (a training seed), partitioned assets are judged by that partition's
    materializations; unpartitioned ones as always.
    """
    specs = defs.resolve_all_asset_specs()
    deps = _deps(defs, specs)
    code_versions = {spec.key: spec.code_version for spec in specs}
    partitioned = {spec.key for spec in specs if spec.partitions_def is not None}
    records = {key: latest_materialization(instance, key, partition if key in partitioned else None) for key in deps}
    events = {key: r.event_log_entry if r else None for key, r in records.items()}
    tags = {key: dict(e.asset_materialization.tags or {}) if e and e.asset_materialization else None
            for key, e in events.items()}

    def data_version(key) -> str:
        if tags.get(key) is None:
            return _NULL_DATA_VERSION
        return tags[key].get(DATA_VERSION_TAG) or _DEFAULT_DATA_VERSION

    def own(key) -> str:
        t = tags[key]
        if t is None:
            return MISSING
        if CODE_VERSION_TAG not in t:  # no provenance recorded (very old events): compare times
            newer = [d for d in deps[key]
                     if d in events and (events[d] is None or events[d].timestamp > events[key].timestamp)]
            return STALE if newer else FRESH
        if code_versions[key] and code_versions[key] != t[CODE_VERSION_TAG]:
            return STALE
        recorded = {dg.AssetKey.from_user_string(k[len(INPUT_DATA_VERSION_TAG):]): v
                    for k, v in t.items() if k.startswith(INPUT_DATA_VERSION_TAG)}
        if set(recorded) != deps[key]:  # a dependency added or removed since
            return STALE
        for dep, was in recorded.items():
            if partition is not None and dep in partitioned:
                # a partitioned input's recorded version and event pointer are Dagster's over every
                # partition (the latest of any seed): the same seed's partition made since says it changed
                if events[dep] is None or events[dep].timestamp > events[key].timestamp:
                    return STALE
                continue
            now = data_version(dep)
            if was != now and not (was == _DEFAULT_DATA_VERSION and now == _NULL_DATA_VERSION):
                return STALE
        return FRESH

    status = {key: own(key) for key in deps}
    if propagate:
        changing = [k for k, st in status.items() if st != FRESH]
        for key in downstream(changing, deps):
            if status[key] == FRESH:
                status[key] = STALE
    return status


def _imports_changed(root: str) -> bool:
    from act_pipeline.assets.sensors import IMPORTED
    from act_pipeline.resources import manifest_path

    m = manifest_path(root, IMPORTED)
    store = Path(root) / "expert_imports"
    current = sorted(p.stem for p in store.glob("*.jsonl")) if store.is_dir() else []
    return m.exists() and sorted(json.loads(m.read_text()).get("files", [])) != current


def _import(args) -> int:
    """Validate every file first (all or nothing), accept them into the store, then `run`."""
    from act_pipeline.assets.sensors import eval_game_ids
    from act_pipeline.data.imports import ExpertDataError, accept, validate_file
    from act_pipeline.resources import default_data_root

    if args.home:
        os.environ["ACT_HOME"] = str(Path(args.home).resolve())
    root = Path(default_data_root())
    evals = eval_game_ids(root)
    errors = []
    for f in args.files:
        try:
            validate_file(f, evals)
        except ExpertDataError as e:
            errors.append(str(e))
    if errors:
        for e in errors:
            print(f"error: {e}", file=sys.stderr)
        print("act-pipeline: nothing imported (every file must be valid)", file=sys.stderr)
        return 2
    for f in args.files:
        print(f"imported {f} as {accept(f, root / 'expert_imports', evals).name}")
    if args.no_run:
        return 0
    return _run(args)


def _run(args) -> int:
    profile = Path(args.profile).resolve()
    from act_pipeline.envs.alfworld import AlfworldDataError, resolve_data_root

    try:  # fail fast, with the file and field (or the data folder and what is wrong), before Dagster starts
        cfg = load_config(profile)
        resolve_data_root(cfg.alfworld.data)
        profile_threads = cfg.threads
    except (ConfigError, AlfworldDataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    os.environ["ACT_PROFILE"] = str(profile)
    if args.home:
        os.environ["ACT_HOME"] = str(Path(args.home).resolve())
    os.environ.setdefault("DAGSTER_HOME", str(REPO_ROOT))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)

    from act_pipeline import console
    from act_pipeline.resources import default_data_root, manifest_path

    root = default_data_root()
    run_id = str(uuid.uuid4())  # chosen here so the log file is named before the run starts
    log_file = Path(root) / "logs" / f"{run_id}.log"
    # from here on, warnings go to the run's log file (see act_pipeline/console.py)
    with console.RunLog(log_file) as run_log:
        from act_pipeline.definitions import make_definitions

        # resources from this call's profile and home (not from whatever was set when the module loaded)
        defs = console.with_loggers(make_definitions(str(profile), root))
        t0 = time.time()
        job = defs.resolve_job_def(JOB)
        seeds = _seeds(defs)
        jobs, model_steps = concurrency(args.jobs, args.model_steps)
        if job.tags.get("act-pipeline/device") == "gpu":
            model_steps = 1  # a GPU profile: one GPU step at a time (each takes every GPU of the node)
        with dg.DagsterInstance.get() as instance:
            selection, result = None, None
            if seeds:  # training seeds as partitions: shared data, then the seeds (concurrently), then the report
                selection = _run_partitioned(args, defs, instance, root, seeds, run_id, log_file, run_log,
                                             profile_threads)
                if selection is False:
                    return 1
            elif not args.all:
                selection = _selection(defs, instance, root)
            if seeds:
                pass  # done above
            elif selection == []:
                print(f"act-pipeline: every asset is fresh, nothing to do ({time.time() - t0:.1f} s; "
                      "--all recomputes)")
            else:
                what = "every asset" if selection is None else f"{len(selection)} asset(s)"
                threads = step_threads(profile_threads, jobs, os.cpu_count() or 1, os.environ)
                how = ("one step at a time, in this process" if jobs == 1 else
                       f"up to {jobs} steps at a time ({model_steps} loading a model), each in its own process")
                print(f"act-pipeline: run {run_id} materializes {what}, {how}, "
                      f"{threads_text(profile_threads, threads, os.environ)}\nact-pipeline: full log: {log_file}",
                      flush=True)
                run_log.libraries()
                config = console.run_config(log_file, checks=console.check_steps(defs))
                recon = dg.build_reconstructable_job("act_pipeline.cli", "step_job",
                                                     reconstructable_kwargs={"profile": str(profile), "root": root,
                                                                             "log_file": str(log_file)})
                with thread_env(threads):  # the step processes start with it (their fork server starts in the run)
                    result = run_job(job, recon, instance, selection=selection, run_id=run_id, run_config=config,
                                     jobs=jobs, model_steps=model_steps)
    if selection == []:
        log_file.unlink(missing_ok=True)  # no run: nothing worth keeping
    else:
        minutes = (time.time() - t0) / 60
        if result is not None and not result.success:
            print(f"act-pipeline: run {run_id} FAILED after {minutes:.1f} min; the full log: {log_file} "
                  "(or the run in `dagster dev`)", file=sys.stderr)
            return 1
        print(f"\nact-pipeline: run {run_id} succeeded in {minutes:.1f} min; full log: {log_file}")
    manifest = json.loads(manifest_path(root, EVAL_REPORT).read_text())
    print(f"report: {manifest['report_md']}\n        {manifest['report_json']}\n        {manifest['plot']}")
    if manifest.get("science_md"):  # training seeds: the result over every seed
        print(f"science result (every materialized seed): {manifest['science_md']}\n        {manifest['science_json']}")
    width = max((len(k) for k in manifest["metrics"]), default=0)
    for k, v in manifest["metrics"].items():
        print(f"  {k:{width}s} " + ("    — (N=0)" if v is None else f"{100 * v:5.1f}%"))
    return 0


def concurrency(jobs: int, model_steps: int) -> tuple[int, int]:
    """(steps at once, model steps at once) of ``--jobs`` and ``--model-steps``; 0: as many steps as
    CPU cores, as many model steps as fit in memory at ``MODEL_STEP_BYTES`` each (at least 1, at
    most the steps)."""
    jobs = jobs if jobs > 0 else os.cpu_count() or 1
    if model_steps <= 0:
        model_steps = memory_bytes() // MODEL_STEP_BYTES
    return jobs, max(1, min(model_steps, jobs))


def step_threads(profile_threads: int, jobs: int, cores: int, env: Mapping[str, str]) -> int | None:
    """The ``OMP_NUM_THREADS`` each step's process of a run starts with, or None to leave it as it is.
    More than one step at a time (``jobs`` > 1), a profile that leaves torch's threads as they are
    (``threads: 0``) and no ``OMP_NUM_THREADS`` in ``env`` (the user's): the ``cores`` shared out,
    ``cores // jobs`` each, at least 1 (two steps with every core each on the same cores
    oversubscribe them: batch-1 decoding ran 5x slower with 2 threads than with 1 beside another
    process on 2 cores). Otherwise None: one step at a time has every core (torch's default), a
    profile's ``threads`` is set in each step (``setup_torch``), the user's variable stays.

    >>> step_threads(0, 2, 2, {})             # the default profile, --jobs 0 on 2 cores
    1
    >>> step_threads(0, 2, 16, {})            # --jobs 2 on 16 cores
    8
    >>> step_threads(0, 3, 2, {})             # more steps than cores: still one thread each
    1
    >>> step_threads(0, 1, 16, {}) is None    # --jobs 1: every core
    True
    >>> step_threads(4, 2, 16, {}) is None    # the profile's threads: 4
    True
    >>> step_threads(0, 2, 16, {"OMP_NUM_THREADS": "3"}) is None  # the user's
    True
    """
    if jobs <= 1 or profile_threads or env.get("OMP_NUM_THREADS"):
        return None
    return max(1, cores // jobs)


def threads_text(profile_threads: int, threads: int | None, env: Mapping[str, str]) -> str:
    """The torch threads of each step, for the run's first console line (``threads``: ``step_threads``).

    >>> threads_text(0, 1, {})
    '1 torch thread each (OMP_NUM_THREADS: cores // steps)'
    >>> threads_text(2, None, {})
    "2 torch threads each (the profile's threads)"
    >>> threads_text(0, None, {"OMP_NUM_THREADS": "3"})
    '3 torch threads each (OMP_NUM_THREADS)'
    >>> threads_text(0, None, {})
    "torch's default threads (every core)"
    """
    def n(k) -> str:
        return f"{k} torch thread{'' if str(k) == '1' else 's'} each"

    if profile_threads:
        return f"{n(profile_threads)} (the profile's threads)"
    if threads is not None:
        return f"{n(threads)} (OMP_NUM_THREADS: cores // steps)"
    if env.get("OMP_NUM_THREADS"):
        return f"{n(env['OMP_NUM_THREADS'])} (OMP_NUM_THREADS)"
    return "torch's default threads (every core)"


@contextmanager
def thread_env(threads: int | None):
    """``OMP_NUM_THREADS`` set to ``threads`` (None: left as it is) while the block runs, and back as
    it was after. The processes started meanwhile inherit it and take that many torch threads:
    Dagster's step processes (forked from a server that the run starts, so it has the variable),
    seed runs (spawned), and the training processes ``launch.child_env`` starts from theirs. This
    process's own torch, if loaded, keeps its own."""
    if threads is None:
        yield
        return
    before = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(threads)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = before


def memory_bytes() -> int:
    """This machine's memory, or its cgroup's limit where that is lower (a container)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()  # cgroup v2; "max": no limit
    except OSError:
        return total
    return min(total, int(limit)) if limit.isdigit() else total


def step_job(profile: str, root: str, log_file: str) -> dg.JobDefinition:
    """``act_pipeline_job`` of a profile and data root, as Dagster's multiprocess executor rebuilds it
    in each step's process (``dg.build_reconstructable_job`` names this function): the same profile,
    data root and loggers as the run's, and that process's warnings and library logs into the run's
    log file (``console.step_process``)."""
    os.environ["ACT_PROFILE"], os.environ["ACT_HOME"] = profile, root
    from act_pipeline import console
    from act_pipeline.definitions import make_definitions

    console.step_process(log_file)
    return console.with_loggers(make_definitions(profile, root)).resolve_job_def(JOB)


def stop_forkserver() -> None:
    """Stop this process's multiprocessing fork server, if one runs. It holds the environment of the
    moment it started (its children, the step processes, get that one, not this process's current
    one), so each run starts its own: a later run in the same process (tests, a seed's runs) sees
    the variables as they are then (``thread_env``, ``ALFWORLD_DATA``, ...). Python has no public
    call for this; ``_stop`` is the one its own tests use (absent: nothing to do)."""
    from multiprocessing import forkserver

    stop = getattr(getattr(forkserver, "_forkserver", None), "_stop", None)
    if stop is not None:
        stop()


def run_job(job: dg.JobDefinition, recon, instance, *, selection, run_id: str, run_config: dict, jobs: int,
            model_steps: int):
    """One run of ``job`` (``recon``: the same job, reconstructable) with the run id ``run_id``; its
    result (``.success``). ``jobs`` 1: every step one after another in this process
    (``execute_in_process``). Otherwise the job's executor, the graph's (``definitions.step_executor``,
    Dagster's multiprocess executor): each step in its own process, as many at once as ``jobs`` (and
    ``model_steps`` of them loading a model), the others as soon as their inputs are there; blocking
    asset checks block what reads their asset, as in process.

    ``dg.execute_job`` is the public entry point of that executor but picks its own run id, and this
    run's log file is named after ``run_id`` before it starts; so this does what ``execute_job`` does
    (dagster/_core/execution/api.py): create the run in the instance, then execute it (``execute_run``,
    the same function ``execute_job`` ends in)."""
    if jobs == 1:
        return job.execute_in_process(instance=instance, raise_on_error=False, asset_selection=selection,
                                      run_id=run_id, run_config=run_config)
    from dagster._core.execution.api import execute_run

    # the graph's executor (definitions.step_executor): its steps at once, and how many of them load a model
    config = {**run_config, "execution": {"config": {"max_concurrent": jobs, "model_steps": model_steps}}}
    load_data = recon.repository.get_definition().repository_load_data
    recon = recon.with_repository_load_data(load_data)
    run = instance.create_run_for_job(job_def=recon.get_definition(), run_id=run_id, run_config=config,
                                      tags=job.run_tags, asset_selection=frozenset(selection) if selection else None,
                                      job_code_origin=recon.get_python_origin(), repository_load_data=load_data)
    stop_forkserver()  # one started before (by whom else) has an older environment
    try:
        return execute_run(recon, run, instance, raise_on_error=False)
    finally:
        stop_forkserver()


def _seeds(defs) -> list[str]:
    """The partition keys (training seeds) of the graph; [] when it is unpartitioned."""
    for spec in defs.resolve_all_asset_specs():
        if spec.partitions_def is not None:
            return list(spec.partitions_def.get_partition_keys())
    return []


def _run_partitioned(args, defs, instance, root: str, seeds: list[str], run_id: str, log_file: Path, run_log,
                     profile_threads: int = 0):
    """A graph partitioned by training seed, as Dagster runs it: one run of the shared (unpartitioned)
    assets that are stale or missing; one run per seed of that seed's stale or missing arms and
    evaluation, ``--jobs`` at a time (each its own process, with the profile's torch threads, or with
    ``threads: 0`` and more than one seed at once the cores shared out: ``step_threads``);
    then the report over every materialized seed. Returns the keys materialized ([] for none), or
    False when a run failed."""
    from act_pipeline.resources import manifest_path

    specs = defs.resolve_all_asset_specs()
    deps = _deps(defs, specs)
    parted = {spec.key for spec in specs if spec.partitions_def is not None}
    shared = [k for k in _selection(defs, instance, root, quiet=True) if k not in parted and k != EVAL_REPORT]
    if args.all:
        shared = [k for k in deps if k not in parted and k != EVAL_REPORT]
    todo = {}
    for seed in seeds:
        st = stale_status(defs, instance, partition=seed)
        changing = [k for k in parted if args.all or st[k] != FRESH or not manifest_path(root, k, seed).exists()]
        todo[seed] = sorted((downstream(changing + shared, deps) & parted), key=lambda k: k.to_user_string())
    report = bool(shared) or any(todo.values()) or args.all or _report_stale(defs, instance, root, seeds)
    if not report:
        print("act-pipeline: every asset of every seed is fresh, nothing to do (--all recomputes)")
        return []
    print(f"act-pipeline: run {run_id}: {len(shared)} shared asset(s), then seeds "
          + ", ".join(f"{s}: {len(todo[s])} asset(s)" for s in seeds) + ", then the report"
          f"\nact-pipeline: full log: {log_file}", flush=True)
    run_log.libraries()
    config = console_config(defs, log_file)
    job = defs.resolve_job_def(JOB)
    if shared:
        res = job.execute_in_process(instance=instance, raise_on_error=False, asset_selection=shared, run_id=run_id,
                                     run_config=config)
        if not res.success:
            print(f"act-pipeline: run {run_id} (shared assets) FAILED; the full log: {log_file}", file=sys.stderr)
            return False
    work = [(s, [k.to_user_string() for k in todo[s]]) for s in seeds if todo[s]]
    # 0: as many seeds at once as the machine has cores (more processes than cores only share the
    # cores), and no more than model steps fit in memory: each seed's run trains models (3 seeds' IL
    # trainings on 2 cores and 24 GiB were OOM-killed)
    jobs = max(1, min(*concurrency(args.jobs, args.model_steps), len(work)))
    threads = step_threads(profile_threads, jobs, os.cpu_count() or 1, os.environ)
    if work:
        print(f"act-pipeline: {len(work)} seed run(s), {jobs} at a time, "
              f"{threads_text(profile_threads, threads, os.environ)}", flush=True)
    failed = []
    if jobs == 1:
        failed = [s for s, keys in work if not _seed_run(str(args.profile), root, s, keys)]
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # a fresh process per seed (nothing carried over from one seed's run to the next); the pool
        # starts a seed's process as one ends (max_tasks_per_child), so the threads stay set throughout
        with thread_env(threads), ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), max_tasks_per_child=1) as pool:
            futures = [pool.submit(_seed_run, str(args.profile), root, s, keys) for s, keys in work]
        failed = [s for (s, _), f in zip(work, futures) if not f.result()]
    if failed:
        print(f"act-pipeline: the run of seed(s) {', '.join(failed)} FAILED (their logs: {Path(root) / 'logs'})",
              file=sys.stderr)
        return False
    res = job.execute_in_process(instance=instance, raise_on_error=False, asset_selection=[EVAL_REPORT],
                                 run_config=config)
    if not res.success:
        print(f"act-pipeline: the report run FAILED; the full log: {log_file}", file=sys.stderr)
        return False
    return shared + [k for s in seeds for k in todo[s]] + [EVAL_REPORT]


def _report_stale(defs, instance, root: str, seeds: list[str]) -> bool:
    """Whether the report (over every seed) must be made again: missing, its code changed, or a
    seed's evaluation (any partitioned input) materialized since it was made."""
    from act_pipeline.resources import manifest_path

    rec = latest_materialization(instance, EVAL_REPORT, None)
    if rec is None or not manifest_path(root, EVAL_REPORT).exists():
        return True
    spec = next(s for s in defs.resolve_all_asset_specs() if s.key == EVAL_REPORT)
    if (rec.asset_materialization.tags or {}).get(CODE_VERSION_TAG) != spec.code_version:
        return True
    return any((r := latest_materialization(instance, d.asset_key, seed)) is not None and r.timestamp > rec.timestamp
               for d in spec.deps for seed in seeds)


def console_config(defs, log_file, prefix: str = "") -> dict:
    from act_pipeline import console

    return console.run_config(log_file, checks=console.check_steps(defs), prefix=prefix)


def _seed_run(profile: str, root: str, seed: str, keys: list[str]) -> bool:
    """One training seed's run (a partition of the arms and the evaluation), in its own process
    (``act-pipeline run`` starts one per seed, ``--jobs`` at a time), with its own log file."""
    os.environ["ACT_PROFILE"], os.environ["ACT_HOME"] = profile, root
    from act_pipeline import console
    from act_pipeline.definitions import make_definitions

    run_id = str(uuid.uuid4())
    log_file = Path(root) / "logs" / f"{run_id}.log"
    with console.RunLog(log_file) as run_log:
        defs = console.with_loggers(make_definitions(profile, root))
        print(f"act-pipeline: seed {seed}: run {run_id} materializes {len(keys)} asset(s); log: {log_file}", flush=True)
        run_log.libraries()
        with dg.DagsterInstance.get() as instance:
            res = defs.resolve_job_def(JOB).execute_in_process(
                instance=instance, raise_on_error=False, partition_key=seed, run_id=run_id,
                asset_selection=[dg.AssetKey.from_user_string(k) for k in keys],
                run_config=console_config(defs, log_file, prefix=f"[seed {seed}] "))
    return res.success


def _selection(defs, instance, root: str, quiet: bool = False) -> list:
    """The assets to materialize: the stale and missing ones and everything downstream of them.
    Prints the ones left as they are (when some are not)."""
    from act_pipeline.assets.sensors import IMPORTED
    from act_pipeline.resources import manifest_path

    statuses = stale_status(defs, instance)
    for key in statuses:  # one Dagster instance can serve several data roots
        if not manifest_path(root, key).exists():
            statuses[key] = MISSING
    if _imports_changed(root):  # files imported since the last materialization
        statuses[IMPORTED] = STALE
    # whatever depends on a stale asset reruns too (its inputs are about to change)
    selection = downstream([k for k, st in statuses.items() if st != FRESH], _deps(defs))
    fresh = sorted(k.to_user_string() for k, st in statuses.items() if st == FRESH and k not in selection)
    if fresh and selection and not quiet:  # (with nothing to do, the run says so in one line)
        print(f"act-pipeline: fresh, not recomputed: {', '.join(fresh)}")
    return sorted(selection, key=lambda k: k.to_user_string())


def _prepare(args) -> int:
    """Resolve (convert/build once) the base model of a profile; print its folder."""
    from act_pipeline.models import resolve_base_model

    try:
        cfg = load_config(args.profile)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    path = resolve_base_model(cfg.model, cfg.seed, log=(lambda m: None) if args.quiet else print)
    if not args.quiet:
        print(path)
    return 0


def _lineage_doc(uri: str) -> dict | None:
    """The lineage record of an artifact: a checkpoint's model_card.json or a table's lineage.json."""
    p = Path(uri)
    for cand in (p / "model_card.json", p.parent / "lineage.json" if p.suffix == ".parquet" else None):
        if cand is not None and cand.is_file():
            return json.loads(cand.read_text())
    return None


def lineage_tree(uri: str, depth: int = 0, seen: set | None = None) -> list[str]:
    """Lines of the chain from an artifact back to the games it came from."""
    seen = set() if seen is None else seen
    doc = _lineage_doc(uri)
    pad = "  " * depth
    if doc is None:
        return [f"{pad}{uri}  (base model or external input: no lineage record)"]
    h = doc.get("hash") or ""
    extra = {k: doc[k] for k in ("source", "expert", "k", "temperature", "seed", "global_step") if k in doc}
    lines = [f"{pad}{doc.get('asset')}: {uri}" + (f"  [hash {h[:12]}]" if h else "")
             + (f"  {json.dumps(extra)}" if extra else "") + f"  (run {doc.get('dagster_run_id')})"]
    # imported expert steps: the files they came from, by digest (the store's <sha256>.jsonl)
    lines += [f"{pad}  <- file sha256:{f['sha256']}  ({f.get('rows')} rows; from {f.get('source')})"
              for f in doc.get("files", [])]
    if uri in seen:
        return lines
    seen.add(uri)
    for name, parent in doc.get("parents", {}).items():
        lines.append(f"{pad}  <- {name}")
        lines += lineage_tree(parent["uri"], depth + 2, seen)
    return lines


def _lineage(args) -> int:
    path = Path(args.path).resolve()
    if _lineage_doc(str(path)) is None:
        print(f"error: {path} has no model_card.json / lineage.json (not an act-pipeline artifact?)", file=sys.stderr)
        return 2
    print("\n".join(lineage_tree(str(path))))
    return 0


def _unfinished_runs() -> set[str]:
    """Run ids of the Dagster instance's runs that have not finished (queued, starting, started, ...)."""
    os.environ.setdefault("DAGSTER_HOME", str(REPO_ROOT))
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    done = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
    with dg.DagsterInstance.get() as instance:
        return set(instance.get_run_ids(dg.RunsFilter(statuses=[s for s in dg.DagsterRunStatus if s not in done])))


def _gc(args) -> int:
    """List (or, with --delete, remove) the data root's folders nothing current refers to; or pin."""
    from act_pipeline import artifact_gc as gc
    from act_pipeline.resources import default_data_root

    home = args.home or default_data_root()
    wrong = ("--min-age is minutes, >= 0" if args.min_age < 0 else
             "--pin/--unpin only edit the pins (list or --delete in a second call)"
             if (args.pin or args.unpin) and (args.delete or args.profile) else None)
    if wrong:
        print(f"error: {wrong}", file=sys.stderr)
        return 2
    try:
        if args.pin or args.unpin:
            pins = None
            for what in args.pin or []:
                pins = gc.pin(home, what)
            for what in args.unpin or []:
                pins = gc.pin(home, what, on=False)
            print(f"act-pipeline gc: {gc.data_root(home) / gc.PINS}: runs {pins['runs']}, paths {pins['paths']}")
            return 0
        resume, judged = None, "the profile"
        if args.profile:
            from act_pipeline.assets.training import resume_dirs

            root = gc.data_root(home)
            resume = set().union(*(resume_dirs(load_config(p), root) for p in args.profile))
            judged = " or ".join(Path(p).name for p in args.profile)
        running = _unfinished_runs()
        plan = gc.plan(home, running, resume, judged, min_age_s=args.min_age * 60)
    except (gc.GcError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    mode = "removing" if args.delete else "dry run: nothing is removed (--delete removes)"
    print(f"act-pipeline gc: {plan.home} ({mode}; {len(running)} unfinished run(s) in the Dagster instance at "
          f"{os.environ['DAGSTER_HOME']})")
    print("\n".join(gc.report(plan, args.delete)))
    summary = (f"{len(plan.remove)} folder(s), {gc.human(plan.freed)} ({plan.freed} bytes); "
               f"kept {len(plan.keep)} folder(s), {gc.human(plan.kept)}")
    if not args.delete:
        print(f"act-pipeline gc: would free {summary}")
        return 0
    freed, errors = gc.remove(plan)
    for e in errors:
        print(f"error: could not remove {e}", file=sys.stderr)
    print(f"act-pipeline gc: freed {gc.human(freed)} ({freed} bytes) in {len(plan.remove) - len(errors)} folder(s)"
          + (f"; {len(errors)} failed (a trash folder left is finished by the next gc)" if errors else ""))
    return 1 if errors else 0


def _gc_doc() -> str:
    from act_pipeline import artifact_gc

    return artifact_gc.__doc__.split("\n\nThis module")[0]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="act-pipeline", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="materialize every asset of the ACT pipeline")
    r.add_argument("--profile", default=str(REPO_ROOT / "configs" / "default.yaml"))
    r.add_argument("--home", default=None, help="data root (default $ACT_HOME or .act_home)")
    r.add_argument("--all", action="store_true",
                   help="recompute every asset (default: only stale and missing ones, as Dagster sees them)")
    r.add_argument("--jobs", type=int, default=0,
                   help="steps run at the same time, each in its own process (Dagster's multiprocess executor; "
                        "a profile with `seeds`: training seeds at the same time, each a run in its own process) "
                        "with the profile's torch threads, or with `threads: 0` and OMP_NUM_THREADS unset "
                        "max(1, cores // N) each; 0 (default): as many as CPU cores; "
                        "1: one step after another in this process")
    r.add_argument("--model-steps", type=int, default=0,
                   help="of those, steps that load a model (sampling, training, evaluation) at the same time; "
                        "0: as many as fit in memory at 11 GiB each (at least 1, at most --jobs)")
    r.set_defaults(func=_run)
    im = sub.add_parser("import-expert", help="validate expert JSONL files, import them and retrain downstream")
    im.add_argument("files", nargs="+")
    im.add_argument("--profile", default=str(REPO_ROOT / "configs" / "default.yaml"))
    im.add_argument("--home", default=None)
    im.add_argument("--all", action="store_true", help=argparse.SUPPRESS)
    im.add_argument("--no-run", action="store_true", help="only import; do not materialize")
    im.add_argument("--jobs", type=int, default=0, help=argparse.SUPPRESS)
    im.add_argument("--model-steps", type=int, default=0, help=argparse.SUPPRESS)
    im.set_defaults(func=_import)
    pr = sub.add_parser("prepare", help="convert the bundled model once (or build the tiny test model)")
    pr.add_argument("--profile", default=str(REPO_ROOT / "configs" / "default.yaml"))
    pr.add_argument("--quiet", action="store_true")
    pr.set_defaults(func=_prepare)
    ln = sub.add_parser("lineage", help="print the chain from a checkpoint (or table) back to the games")
    ln.add_argument("path", help="a checkpoint folder or a Parquet artifact")
    ln.set_defaults(func=_lineage)
    g = sub.add_parser("gc", help="list (--delete: remove) the artifact folders no manifest, lineage or pin refers to",
                       description=_gc_doc(), formatter_class=argparse.RawDescriptionHelpFormatter)
    g.add_argument("--home", default=None, help="data root (default $ACT_HOME or .act_home)")
    g.add_argument("--delete", action="store_true", help="remove them (default: only list what would be freed)")
    g.add_argument("--profile", action="append", default=None,
                   help="judge resume state (trainer_state) against this profile's current trainings: what none "
                        "would resume from goes; repeatable (a data root shared by profiles); without it, kept")
    g.add_argument("--min-age", type=float, default=60.0, metavar="MINUTES",
                   help="keep folders with anything written in the last MINUTES (default 60): a run the Dagster "
                        "instance does not know about may be writing them")
    g.add_argument("--pin", action="append", metavar="RUN_ID|PATH",
                   help="keep every folder of a run, or the artifact holding PATH (and its lineage), from now on")
    g.add_argument("--unpin", action="append", metavar="RUN_ID|PATH", help="undo --pin")
    g.set_defaults(func=_gc)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
