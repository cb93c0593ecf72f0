"""Hostile input wherever user data is read: expert JSONL (the CLI and the landing folder), run
profiles (YAML), ALFWorld data, `scripts/run.sh`'s ALFWORLD_DATA. Pathological files (nesting
100,000 deep, a 50 MB line, a YAML bomb) give one line naming file, line and field, never a stack
trace, and leave nothing behind; links out of the ALFWorld data folder are refused before they
are read; a bad ALFWORLD_DATA stops run.sh in seconds, before any installation."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from act_pipeline.cli import main
from act_pipeline.envs import alfworld as aw

from .conftest import REPO

pytestmark = pytest.mark.timeout(300)

STEP = {"game_id": "kitchen/trial_1", "task_type": "pick_and_place_simple", "task": "put a mug in the sink.",
        "step": 0, "observation": "You are in the middle of a room.", "admissible": ["go to sink 1", "look"],
        "expert_action": "go to sink 1"}
DEEP = "[" * 100_000
BIG = 50 * 2**20  # a 50 MB value


def _one_line_error(err: str) -> str:
    """The single `error: ...` line the CLI printed (and nothing that looks like a stack trace)."""
    assert "Traceback" not in err and "RecursionError" not in err and "MemoryError" not in err, err[:2000]
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, err[:2000]
    assert len(lines[0]) < 400, lines[0][:400]  # the value itself is never echoed whole
    return lines[0]


# ---------------------------------------------------------------------------------------- expert JSONL

def _jsonl(path: Path, *lines: str) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


JSONL = [
    ("deep value", lambda: json.dumps(STEP)[:-1] + ', "history": ' + DEEP, ":2: field `history`: nested deeper than 64"),
    ("deep document", lambda: DEEP, ":2: nested deeper than 64"),
    ("50 MB value", lambda: json.dumps(dict(STEP, step=1, observation="x" * BIG)),
     ":2: field `observation`: line longer than 4 MiB"),
    ("huge number", lambda: json.dumps(STEP)[:-1] + ', "won": ' + "9" * 100_000 + "}", ":2: field `won`: a number longer"),
]


@pytest.mark.parametrize("name,line2,needle", JSONL, ids=[c[0] for c in JSONL])
def test_pathological_jsonl_is_one_line_naming_file_line_field(tmp_path, capsys, name, line2, needle):
    f = _jsonl(tmp_path / "steps.jsonl", json.dumps(STEP), line2())
    home = tmp_path / "home"
    t0 = time.time()
    assert main(["import-expert", str(f), "--home", str(home), "--no-run"]) == 2
    assert time.time() - t0 < 30
    line = _one_line_error(capsys.readouterr().err)
    assert line.startswith(f"error: {f}{needle}"), line
    assert not (home / "expert_imports").exists() or not any((home / "expert_imports").iterdir())


def test_the_landing_folder_refuses_them_the_same_way(tmp_path):
    from act_pipeline.assets.sensors import import_files

    root = tmp_path / "home"
    deep = _jsonl(tmp_path / "deep.jsonl", json.dumps(dict(STEP, observation="o")), '{"observation": ' + DEEP)
    big = _jsonl(tmp_path / "big.jsonl", json.dumps(dict(STEP, task="t" * BIG)))
    accepted, rejected = import_files(root, [deep, big])
    assert accepted == []
    reasons = dict(rejected)
    assert reasons[deep].startswith(f"{deep}:2: field `observation`: nested deeper than 64 levels")
    assert reasons[big].startswith(f"{big}:1: field `task`: line longer than 4 MiB")
    assert all("\n" not in r and len(r) < 400 for r in reasons.values())
    assert not list(root.glob("expert_imports/*"))  # nothing half-imported


# ---------------------------------------------------------------------------------------- profiles (YAML)

PROFILES = [
    ("deep nesting", lambda: "seed: 1\nsampling:\n  k: " + DEEP + "\n", ":3: `sampling.k[0][0]"),
    ("billion laughs", lambda: 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n' + "".join(
        f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi")), ":6: `f[0]` makes the file hold more"),
    ("alias chain", lambda: "x0: &x0 [1]\n" + "".join(f"x{i}: &x{i} [*x{i - 1}]\n" for i in range(1, 3000)),
     ":32: `x31[0]` nests deeper than 32"),
    ("recursive alias", lambda: "seed: 1\nalfworld:\n  task_types: &t [*t]\n", ":3: `alfworld.task_types[0]` refers to"),
    ("50 MB value", lambda: "seed: 1\nname: " + "x" * BIG + "\n", ":2: `name` makes the file larger than 1 MiB"),
    ("not UTF-8", lambda: "seed: 1\nname: caf\udce9\n", ":2: not UTF-8"),
    ("syntax", lambda: "seed: 1\nsampling: [\n", ":3: not valid YAML"),
]


@pytest.mark.parametrize("name,text,needle", PROFILES, ids=[c[0] for c in PROFILES])
def test_pathological_profiles_are_one_line_naming_file_line_key(tmp_path, capsys, name, text, needle):
    p = tmp_path / "profile.yaml"
    p.write_bytes(text().encode("utf-8", "surrogateescape"))
    t0 = time.time()
    assert main(["run", "--profile", str(p), "--home", str(tmp_path / "home")]) == 2
    assert time.time() - t0 < 30
    line = _one_line_error(capsys.readouterr().err)
    assert line.startswith(f"error: {p}{needle}"), line
    assert not (tmp_path / "home").exists()  # refused before anything was set up


# ---------------------------------------------------------------------------------------- ALFWorld data

def _data_root(tmp_path: Path, alfworld_data: Path) -> tuple[Path, Path]:
    """A data folder with one real game per split; returns (root, the train game's trial folder)."""
    root = tmp_path / "alfworld"
    trial = None
    for split in aw.SPLITS:
        src = sorted((alfworld_data / "json_2.1.1" / split).glob("*/*/traj_data.json"))[0].parent
        dst = root / "json_2.1.1" / split / src.parent.name / src.name
        shutil.copytree(src, dst)
        trial = trial or dst
    return root, trial


def _outside_game(tmp_path: Path, traj_text: str) -> Path:
    """A task folder outside the data root whose traj_data.json would fail differently if it were read."""
    out = tmp_path / "elsewhere" / "pick_and_place_simple-Mug-None-Sink-1"
    (out / "trial_1").mkdir(parents=True)
    (out / "trial_1" / "traj_data.json").write_text(traj_text)
    (out / "trial_1" / "initial_state.pddl").write_text("(define (problem p) (:init))")
    return out


def test_a_linked_game_folder_outside_the_root_is_refused_before_it_is_read(tmp_path, alfworld_data):
    root, _ = _data_root(tmp_path, alfworld_data)
    assert len(aw.discover_games(root, "train")) == 1
    out = _outside_game(tmp_path, DEEP)  # read, it would be "nested deeper than 64 levels"
    link = root / "json_2.1.1" / "train" / out.name
    link.symlink_to(out, target_is_directory=True)
    with pytest.raises(aw.AlfworldDataError) as e:
        aw.discover_games(root, "train")
    msg = str(e.value)
    assert msg.startswith(f"{link}/trial_1/traj_data.json: refused, a link out of the data folder"), msg
    assert str(out.resolve()) in msg and "nested" not in msg and "\n" not in msg


def test_a_linked_file_outside_the_root_is_refused_and_links_inside_are_fine(tmp_path, alfworld_data):
    root, trial = _data_root(tmp_path, alfworld_data)
    # a link that stays inside the data folder is just a folder
    inside = root / "json_2.1.1" / "train" / "pick_and_place_simple-Cup-None-Sink-2"
    inside.symlink_to(trial.parent, target_is_directory=True)
    assert len(aw.discover_games(root, "train")) == 2
    out = _outside_game(tmp_path, "{not json")
    target = trial / "traj_data.json"
    target.unlink()
    target.symlink_to(out / "trial_1" / "traj_data.json")
    with pytest.raises(aw.AlfworldDataError, match=r"traj_data.json: refused, a link out of the data folder") as e:
        aw.discover_games(root, "train")
    assert "not valid JSON" not in str(e.value)


TRAJ = [
    ("deep nesting", lambda: '{"task_type": "pick_and_place_simple",\n "pddl_params": ' + DEEP + "}",
     ":2: field `pddl_params`: nested deeper than 64"),
    ("50 MB value", lambda: '{"task_type": "pick_and_place_simple",\n "turk_annotations": "' + "x" * BIG + '"}',
     ":2: field `turk_annotations`: larger than 16 MiB"),
    ("syntax", lambda: '{"task_type": "pick_and_place_simple",\n "pddl_params": {,}}', ":2: field `pddl_params`: not valid JSON"),
    ("wrong type", lambda: '{"task_type": "pick_and_place_simple", "pddl_params": {"object_target": 7}}',
     ": field `pddl_params.object_target`: must be a string"),
    ("scene", lambda: '{"task_type": "pick_and_place_simple", "pddl_params": {}, "scene": {"scene_num": "x"}}',
     ": field `scene.scene_num`: must be an integer"),
]


@pytest.mark.parametrize("name,text,needle", TRAJ, ids=[c[0] for c in TRAJ])
def test_pathological_traj_data_is_one_line_naming_file_line_field(tmp_path, alfworld_data, name, text, needle):
    root, trial = _data_root(tmp_path, alfworld_data)
    (trial / "traj_data.json").write_text(text())
    with pytest.raises(aw.AlfworldDataError) as e:
        aw.discover_games(root, "train")
    msg = str(e.value)
    assert msg.startswith(f"{trial / 'traj_data.json'}{needle}"), msg
    assert "\n" not in msg and len(msg) < 400


# ---------------------------------------------------------------------------------------- scripts/run.sh

@pytest.fixture
def run_sh(tmp_path):
    """scripts/run.sh as it is, in a checkout whose scripts/setup.sh is a tripwire (the real one would
    install): it records that it ran and stops, so the test sees what run.sh does before set-up."""
    co = tmp_path / "checkout"
    (co / "scripts").mkdir(parents=True)
    shutil.copy2(REPO / "scripts" / "run.sh", co / "scripts" / "run.sh")
    (co / "scripts" / "setup.sh").write_text("#!/usr/bin/env bash\ntouch setup-ran\nexit 3\n")
    (co / "scripts" / "setup.sh").chmod(0o755)
    (co / "act_pipeline").symlink_to(REPO / "act_pipeline", target_is_directory=True)

    def run(data: Path | str) -> tuple[subprocess.CompletedProcess, float, bool]:
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
        env.update(ALFWORLD_DATA=str(data), PYTHON=sys.executable)
        t0 = time.time()
        res = subprocess.run(["bash", str(co / "scripts" / "run.sh")], env=env, capture_output=True, text=True,
                             timeout=60)
        ran = (co / "setup-ran").exists()
        (co / "setup-ran").unlink(missing_ok=True)
        return res, time.time() - t0, ran

    return run


def test_run_sh_with_a_bad_alfworld_data_fails_in_seconds_before_setup(tmp_path, run_sh, alfworld_data):
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "empty").mkdir()
    (tmp_path / "part" / "json_2.1.1" / "train").mkdir(parents=True)
    for data, reason in [(tmp_path / "missing", "which does not exist"),
                         (tmp_path / "a-file", "is a file, not a folder"),
                         (tmp_path / "empty", "no json_2.1.1/ folder"),
                         (tmp_path / "part", "has no split folder valid_seen, valid_unseen")]:
        res, seconds, setup_ran = run_sh(data)
        assert res.returncode == 2, (data, res.returncode, res.stderr)
        assert not setup_ran, f"{data}: set-up ran before ALFWORLD_DATA was checked"
        assert seconds < 30, seconds
        line = _one_line_error(res.stderr)
        assert line.startswith("error: ALFWORLD_DATA") and str(data) in line and reason in line, line
    res, _, setup_ran = run_sh(alfworld_data)  # a good folder passes the check: set-up is next
    assert setup_ran and res.returncode == 3, res.stderr
