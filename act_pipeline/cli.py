"""``act-pipeline``: run the Dagster job from the command line and print what it produced.

    act-pipeline run [--profile configs/default.yaml] [--home .act_home]
    act-pipeline prepare [--profile ...]     # convert the bundled model once
    act-pipeline lineage CHECKPOINT          # the chain from a checkpoint back to the games

Runs ``act_pipeline_job`` in-process against the Dagster instance in
``$DAGSTER_HOME`` (the repo root's dagster.yaml by default), so the run shows up in
``dagster dev`` exactly as one launched from the UI. Only assets Dagster reports as stale or
missing are materialized (``--all`` for every asset): a second run with nothing changed
recomputes nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from act_pipeline.config import REPO_ROOT, ConfigError, load_config


def stale_status(defs, instance) -> dict:
    """Dagster's own stale status of every asset (what the UI's "Materialize stale and missing" uses).

    FRESH: code version and every input's data version unchanged since the last materialization.
    This reads Dagster's internal resolver (no public API exposes it outside the webserver).
    """
    from dagster._core.definitions.data_version import CachingStaleStatusResolver
    from dagster._core.loader import LoadingContext

    class _Loading(LoadingContext):
        def __init__(self, instance):
            self._instance, self._loaders = instance, {}

        @property
        def instance(self):
            return self._instance

        @property
        def loaders(self):
            return self._loaders

    graph = defs.resolve_asset_graph()
    resolver = CachingStaleStatusResolver(instance, graph, _Loading(instance))
    return {key: resolver.get_status(key).value for key in graph.materializable_asset_keys}


def _imports_changed(root: str) -> bool:
    import dagster as dg

    from act_pipeline.resources import manifest_path

    m = manifest_path(root, dg.AssetKey("imported_expert_steps"))
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

    from act_pipeline.definitions import make_definitions
    from act_pipeline.resources import default_data_root, manifest_path

    # resources from this call's profile and home (not from whatever was set when the module loaded)
    defs = make_definitions(str(profile), default_data_root())

    t0 = time.time()
    job = defs.resolve_job_def("act_pipeline_job")
    with dg.DagsterInstance.get() as instance:
        selection = None
        if not args.all:
            statuses = stale_status(defs, instance)
            for key in statuses:  # one Dagster instance can serve several data roots
                if not manifest_path(default_data_root(), key).exists():
                    statuses[key] = "MISSING"
            if _imports_changed(default_data_root()):  # files imported since the last materialization
                statuses[dg.AssetKey("imported_expert_steps")] = "STALE"
            stale = [k for k, st in statuses.items() if st != "FRESH"]
            # whatever depends on a stale asset reruns too (its inputs are about to change)
            selection = sorted(dg.AssetSelection.assets(*stale).downstream().resolve(defs.resolve_asset_graph())
                               if stale else [], key=lambda k: k.to_user_string())
            # (an asset downstream of a stale one reruns even when its own status is fresh)
            fresh = sorted(k.to_user_string() for k, st in statuses.items() if st == "FRESH" and k not in selection)
            if fresh:
                print(f"act-pipeline: fresh, not recomputed: {', '.join(fresh)}")
        if selection == []:
            print(f"act-pipeline: every asset is fresh, nothing to do ({time.time() - t0:.1f} s; --all recomputes)")
        else:
            result = job.execute_in_process(instance=instance, raise_on_error=False, asset_selection=selection)
            minutes = (time.time() - t0) / 60
            if not result.success:
                print(f"act-pipeline: run {result.run_id} FAILED after {minutes:.1f} min; see the log above "
                      "or the run in `dagster dev`", file=sys.stderr)
                return 1
            print(f"\nact-pipeline: run {result.run_id} succeeded in {minutes:.1f} min")
    manifest = json.loads(manifest_path(default_data_root(), dg.AssetKey("eval_report")).read_text())
    print(f"report: {manifest['report_md']}\n        {manifest['report_json']}\n        {manifest['plot']}")
    for k, v in manifest["metrics"].items():
        print(f"  {k:55s} " + ("    — (N=0)" if v is None else f"{100 * v:5.1f}%"))
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="act-pipeline", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="materialize every asset of the ACT pipeline")
    r.add_argument("--profile", default=str(REPO_ROOT / "configs" / "default.yaml"))
    r.add_argument("--home", default=None, help="data root (default $ACT_HOME or .act_home)")
    r.add_argument("--all", action="store_true",
                   help="recompute every asset (default: only stale and missing ones, as Dagster sees them)")
    r.set_defaults(func=_run)
    im = sub.add_parser("import-expert", help="validate expert JSONL files, import them and retrain downstream")
    im.add_argument("files", nargs="+")
    im.add_argument("--profile", default=str(REPO_ROOT / "configs" / "default.yaml"))
    im.add_argument("--home", default=None)
    im.add_argument("--all", action="store_true", help=argparse.SUPPRESS)
    im.add_argument("--no-run", action="store_true", help="only import; do not materialize")
    im.set_defaults(func=_import)
    pr = sub.add_parser("prepare", help="convert the bundled model once (or build the tiny test model)")
    pr.add_argument("--profile", default=str(REPO_ROOT / "configs" / "default.yaml"))
    pr.add_argument("--quiet", action="store_true")
    pr.set_defaults(func=_prepare)
    ln = sub.add_parser("lineage", help="print the chain from a checkpoint (or table) back to the games")
    ln.add_argument("path", help="a checkpoint folder or a Parquet artifact")
    ln.set_defaults(func=_lineage)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
