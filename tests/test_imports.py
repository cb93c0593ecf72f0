"""Expert-data imports: validation errors name file, line and field; the sensor requests retraining."""

import json
from pathlib import Path

import dagster as dg
import pytest

from act_pipeline.assets.sensors import expert_data_sensor
from act_pipeline.data.imports import ExpertDataError, accept, load_store, validate_file
from act_pipeline.definitions import build_resources, make_definitions

from .conftest import DEFAULT, SMOKE

GOOD = {"game_id": "kitchen/trial_1", "task_type": "pick_and_place_simple", "task": "put a mug in the sink.",
        "step": 0, "observation": "You are in the middle of a room.", "admissible": ["go to sink 1", "look"],
        "expert_action": "go to sink 1", "won": True}


def _steps(n=3, **over):
    return [dict(GOOD, step=i, **over) for i in range(n)]


def _write(path: Path, rows, raw: bytes | None = None) -> Path:
    path.write_bytes(raw if raw is not None else "\n".join(json.dumps(r) for r in rows).encode() + b"\n")
    return path


def test_good_file_round_trips(tmp_path):
    f = _write(tmp_path / "good.jsonl", _steps(3, history=[{"observation": "o", "action": "look"}]))
    rows = validate_file(f)
    assert [r["step"] for r in rows] == [0, 1, 2] and all(r["split"] == "train" for r in rows)
    stored = accept(f, tmp_path / "store")
    assert stored.name.endswith(".jsonl") and len(stored.stem) == 64
    table, files = load_store(tmp_path / "store")
    assert table.num_rows == 3 and files[0]["source"] == str(f.resolve())


CASES = [
    ("empty file", None, b"", r"empty file"),
    ("blank lines only", None, b"\n\n  \n", r"empty file"),
    ("non-UTF-8", None, json.dumps(GOOD).encode() + b"\n" + b'{"game_id": "\xff\xfe"}\n', r":2: not UTF-8"),
    ("truncated last line", None, (json.dumps(GOOD) + "\n" + json.dumps(GOOD)[:40]).encode(),
     r":2: not valid JSON.*truncated last line"),
    ("not an object", None, b"[1, 2]\n", r":1: expected a JSON object"),
    ("missing field", [{k: v for k, v in GOOD.items() if k != "expert_action"}], None, r":1: field `expert_action`: missing"),
    ("missing task", [GOOD, {k: v for k, v in GOOD.items() if k != "task"}], None, r":2: field `task`: missing"),
    ("wrong type step", [dict(GOOD, step="0")], None, r":1: field `step`: must be an integer"),
    ("bool as step", [dict(GOOD, step=True)], None, r":1: field `step`: must be an integer"),
    ("wrong type admissible", [dict(GOOD, admissible="look")], None, r":1: field `admissible`: must be a list"),
    ("empty admissible", [dict(GOOD, admissible=[])], None, r":1: field `admissible`: must be a non-empty"),
    ("wrong type won", [dict(GOOD, won="yes")], None, r":1: field `won`: must be true/false"),
    ("negative step", [dict(GOOD, step=-1)], None, r":1: field `step`: must be >= 0"),
    ("unknown field", [dict(GOOD, reward=1.0)], None, r":1: field `reward`: unknown field"),
    ("expert not admissible", [dict(GOOD, expert_action="fly to the moon")], None,
     r":1: field `expert_action`: 'fly to the moon' is not among the admissible"),
    ("duplicate step ids", [GOOD, dict(GOOD)], None, r":2: field `step`: duplicate step 0 .*first on line 1"),
    ("evaluation split", [dict(GOOD, split="valid_unseen")], None, r":1: field `split`: imported steps are training"),
    ("bad history", [dict(GOOD, history=[{"action": "look"}])], None, r":1: field `history`"),
    ("game id escapes", [dict(GOOD, game_id="../../etc/trial_1")], None, r":1: field `game_id`: .*must be a relative id"),
    ("absolute game id", [dict(GOOD, game_id="/etc/trial_1")], None, r":1: field `game_id`: .*must be a relative id"),
    ("empty game id", [dict(GOOD, game_id="  ")], None, r":1: field `game_id`: .*must be a relative id"),
    ("null field", [dict(GOOD, observation=None)], None, r":1: field `observation`: must be a string"),
]


@pytest.mark.parametrize("name,rows,raw,pattern", CASES, ids=[c[0] for c in CASES])
def test_malformed_files_name_file_line_field(tmp_path, name, rows, raw, pattern):
    f = _write(tmp_path / "bad.jsonl", rows or [], raw)
    with pytest.raises(ExpertDataError, match=pattern) as e:
        validate_file(f)
    assert str(e.value).startswith(str(f))


def test_evaluation_game_in_training_data_is_refused(tmp_path):
    f = _write(tmp_path / "leak.jsonl", _steps(1, game_id="look_at_obj-x/trial_9"))
    with pytest.raises(ExpertDataError, match=r":1: field `game_id`: .* is an evaluation game"):
        validate_file(f, eval_game_ids={"look_at_obj-x/trial_9"})
    assert not (tmp_path / "store").exists()
    with pytest.raises(ExpertDataError):
        accept(f, tmp_path / "store", {"look_at_obj-x/trial_9"})
    assert not list(tmp_path.glob("store/*.jsonl"))


def _defs(home: Path) -> dg.Definitions:
    """The definitions `dagster dev` loads by default (configs/default.yaml)."""
    return make_definitions(str(DEFAULT), str(home))


def _tick(home: Path, cursor=None):
    with dg.build_sensor_context(cursor=cursor, resources=build_resources(str(SMOKE), str(home)),
                                 repository_def=_defs(home).get_repository_def()) as ctx:
        return expert_data_sensor(ctx), ctx


def test_sensor_imports_new_files_and_requests_downstream_runs(tmp_path):
    home = tmp_path / "home"
    landing = home / "landing" / "expert"
    landing.mkdir(parents=True)
    result, _ = _tick(home)
    assert isinstance(result, dg.SkipReason)

    _write(landing / "batch1.jsonl", _steps(3))
    result, _ = _tick(home)
    assert len(result.run_requests) == 1
    req = result.run_requests[0]
    assert req.run_key.startswith("expert-import-")
    assert len(list((home / "expert_imports").glob("*.jsonl"))) == 1
    # the request targets alfworld/imported_expert_steps and everything downstream of it
    graph = _defs(home).resolve_asset_graph()
    targeted = {k.to_user_string() for k in expert_data_sensor.asset_selection.resolve(graph)}
    assert targeted == {"alfworld/" + a for a in (
        "imported_expert_steps", "expert_trajectories", "sampled_alternatives", "contrast_pairs", "act_checkpoint",
        "il_policy", "il_baseline", "rl_policy", "rl_baseline", "evaluation")} | {"eval_report"}

    again, _ = _tick(home, cursor=result.cursor)  # same file: processed once
    assert isinstance(again, dg.SkipReason)

    _write(landing / "batch2-bad.jsonl", [dict(GOOD, expert_action="dance")])
    bad, _ = _tick(home, cursor=result.cursor)
    assert not bad.run_requests
    assert "batch2-bad.jsonl:1: field `expert_action`" in (landing / "batch2-bad.jsonl.error.txt").read_text()
    assert len(list((home / "expert_imports").glob("*.jsonl"))) == 1  # the bad file never reached the store


def test_import_expert_cli_is_all_or_nothing(tmp_path, capsys):
    from act_pipeline.cli import main

    good = _write(tmp_path / "good.jsonl", _steps(2))
    bad = _write(tmp_path / "bad.jsonl", [dict(GOOD, step="x")])
    home = tmp_path / "home"
    assert main(["import-expert", str(good), str(bad), "--home", str(home), "--no-run"]) == 2
    assert "bad.jsonl:1: field `step`" in capsys.readouterr().err
    assert not list(home.glob("expert_imports/*.jsonl"))
    assert main(["import-expert", str(good), "--home", str(home), "--no-run"]) == 0
    assert len(list(home.glob("expert_imports/*.jsonl"))) == 1


def test_a_symlink_out_of_the_landing_folder_is_refused(tmp_path):
    home = tmp_path / "home"
    landing = home / "landing" / "expert"
    landing.mkdir(parents=True)
    outside = _write(tmp_path / "elsewhere.jsonl", _steps(2))  # valid content, but not in the landing folder
    (landing / "link.jsonl").symlink_to(outside)
    result, _ = _tick(home)
    assert isinstance(result, dg.SkipReason)
    assert "outside the landing folder" in (landing / "link.jsonl.error.txt").read_text()
    assert not list(home.glob("expert_imports/*.jsonl"))


def test_safe_join_refuses_escapes(tmp_path):
    from act_pipeline.files import PathEscapeError, safe_join

    assert safe_join(tmp_path, "a", "b/c") == tmp_path / "a" / "b" / "c"
    for bad in ("../x", "/etc", "a/../../x", ""):
        with pytest.raises(PathEscapeError, match="would leave"):
            safe_join(tmp_path, bad, what="game id")
    (tmp_path / "out").symlink_to("/")
    with pytest.raises(PathEscapeError, match="resolves to .*outside"):
        safe_join(tmp_path, "out", "etc")


def test_lineage_names_the_imported_files_by_digest(tmp_path, capsys):
    """`act-pipeline lineage` on a checkpoint trained on imported steps prints each file's sha256."""
    from act_pipeline.cli import main
    from act_pipeline.files import sha256_file

    f = _write(tmp_path / "batch.jsonl", _steps(2))
    accept(f, tmp_path / "store")
    _, files = load_store(tmp_path / "store")  # what imported_expert_steps records in its lineage.json
    steps = tmp_path / "imported" / "steps.parquet"
    steps.parent.mkdir()
    steps.touch()
    (steps.parent / "lineage.json").write_text(json.dumps(
        {"asset": "alfworld/imported_expert_steps", "uri": str(steps), "hash": "h1", "parents": {}, "files": files}))
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "model_card.json").write_text(json.dumps(
        {"asset": "alfworld/il_baseline", "parents": {"expert_trajectories": {"uri": str(steps), "hash": "h1"}}}))
    assert main(["lineage", str(ckpt)]) == 0
    out = capsys.readouterr().out
    assert f"<- file sha256:{sha256_file(f)}  (2 rows; from {f.resolve()})" in out
