"""``act-pipeline``: run the Dagster job from the command line and print what it produced.

    act-pipeline run [--profile configs/default.yaml] [--home .act_home]
    act-pipeline prepare [--profile ...]     # convert the bundled model once

Runs ``act_pipeline_job`` (every asset) in-process against the Dagster instance in
``$DAGSTER_HOME`` (the repo root's dagster.yaml by default), so the run shows up in
``dagster dev`` exactly as one launched from the UI.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from act_pipeline.config import REPO_ROOT, ConfigError, load_config


def _run(args) -> int:
    profile = Path(args.profile).resolve()
    try:
        load_config(profile)  # fail fast, with the file and field, before Dagster starts
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    os.environ["ACT_PROFILE"] = str(profile)
    if args.home:
        os.environ["ACT_HOME"] = str(Path(args.home).resolve())
    os.environ.setdefault("DAGSTER_HOME", str(REPO_ROOT))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)

    import dagster as dg

    from act_pipeline.definitions import defs
    from act_pipeline.resources import default_data_root

    t0 = time.time()
    job = defs.resolve_job_def("act_pipeline_job")
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False)
    minutes = (time.time() - t0) / 60
    if not result.success:
        print(f"act-pipeline: run {result.run_id} FAILED after {minutes:.1f} min; see the log above "
              "or the run in `dagster dev`", file=sys.stderr)
        return 1
    manifest = json.loads((Path(default_data_root()) / "manifests" / "eval_report.json").read_text())
    print(f"\nact-pipeline: run {result.run_id} succeeded in {minutes:.1f} min")
    print(f"report: {manifest['report_md']}\n        {manifest['report_json']}\n        {manifest['plot']}")
    for k, v in manifest["metrics"].items():
        print(f"  {k:55s} {100 * v:5.1f}%")
    return 0


def _prepare(args) -> int:
    """Resolve (convert/build once) the base model of a profile; print its folder."""
    from act_pipeline.training.models import resolve_base_model

    try:
        cfg = load_config(args.profile)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    path = resolve_base_model(cfg.model, cfg.seed, log=(lambda m: None) if args.quiet else print)
    if not args.quiet:
        print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="act-pipeline", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="materialize every asset of the ACT pipeline")
    r.add_argument("--profile", default=str(REPO_ROOT / "configs" / "default.yaml"))
    r.add_argument("--home", default=None, help="data root (default $ACT_HOME or .act_home)")
    r.set_defaults(func=_run)
    pr = sub.add_parser("prepare", help="convert the bundled model once (or build the tiny test model)")
    pr.add_argument("--profile", default=str(REPO_ROOT / "configs" / "default.yaml"))
    pr.add_argument("--quiet", action="store_true")
    pr.set_defaults(func=_prepare)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
