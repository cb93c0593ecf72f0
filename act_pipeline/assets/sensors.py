"""New expert data → retraining.

Users drop JSONL files (format: ``act_pipeline.data.imports``) into ``<data root>/landing/expert/``.
The sensor validates each new file whole; an accepted file is copied into the content-addressed
store ``<data root>/expert_imports/`` and the sensor requests a run of ``imported_expert_steps``
and everything downstream of it (trajectories → alternatives → pairs → ACT → IL → report). A
rejected file gets ``<file>.error.txt`` beside it naming the line and field. The cursor holds the
digests of the files already seen, so a file is processed once however often the sensor ticks.
"""

import json
from pathlib import Path

import dagster as dg

from act_pipeline.assets.alfworld import ALFWORLD
from act_pipeline.data.imports import ExpertDataError, accept
from act_pipeline.files import sha256_file
from act_pipeline.resources import ProfileResource, manifest_path

# imported steps are ALFWorld steps (validated against its games)
IMPORTED = ALFWORLD.key("imported_expert_steps")
DOWNSTREAM = dg.AssetSelection.assets(IMPORTED).downstream()


def eval_game_ids(root: Path) -> set[str]:
    """Game ids of the evaluation splits in the current games manifest (empty before the first run)."""
    import pyarrow.parquet as pq

    m = manifest_path(root, ALFWORLD.key("games"))
    if not m.exists():
        return set()
    games = pq.read_table(json.loads(m.read_text())["uri"]).to_pylist()
    return {g["game_id"] for g in games if g["split"] != "train"}


def import_files(root: Path, files: list[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Validate and accept files; (accepted store paths, [(rejected file, reason)])."""
    evals = eval_game_ids(root)
    accepted, rejected = [], []
    for f in files:
        try:
            accepted.append(accept(f, root / "expert_imports", evals))
        except ExpertDataError as e:
            rejected.append((f, str(e)))
    return accepted, rejected


@dg.sensor(asset_selection=DOWNSTREAM, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.STOPPED,
           description="Imports new expert JSONL files from <data root>/landing/expert and retrains downstream.")
def expert_data_sensor(context: dg.SensorEvaluationContext, profile: ProfileResource):
    root = profile.root()
    landing = root / "landing" / "expert"
    landing.mkdir(parents=True, exist_ok=True)
    seen = set(json.loads(context.cursor)) if context.cursor else set()
    files, escaping = [], []
    for f in sorted(landing.glob("*.jsonl")):
        # a symlink in the landing folder must not reach files outside it
        (files if f.resolve().is_relative_to(landing.resolve()) else escaping).append(f)
    for f in escaping:
        if Path(f"{f}.error.txt").exists():
            continue  # said once
        reason = f"{f}: refused: it resolves to {f.resolve()}, outside the landing folder {landing}"
        Path(f"{f}.error.txt").write_text(reason + "\n")
        context.log.warning(reason)
    new = [(f, sha256_file(f)) for f in files]
    new = [(f, d) for f, d in new if d not in seen]
    if not new:
        return dg.SkipReason(f"no new expert files in {landing}")
    accepted, rejected = import_files(root, [f for f, _ in new])
    for f, reason in rejected:
        Path(f"{f}.error.txt").write_text(reason + "\n")
        context.log.warning(reason)
    cursor = json.dumps(sorted(seen | {d for _, d in new}))
    if not accepted:
        return dg.SensorResult(skip_reason=dg.SkipReason("rejected: " + "; ".join(r for _, r in rejected)),
                               cursor=cursor)
    digests = sorted(p.stem for p in accepted)
    return dg.SensorResult(
        # no asset_selection: the request targets the sensor's own (imported_expert_steps and downstream)
        run_requests=[dg.RunRequest(run_key="expert-import-" + "-".join(d[:12] for d in digests),
                                    tags={"act/expert_files": ",".join(d[:12] for d in digests)})],
        cursor=cursor,
    )
