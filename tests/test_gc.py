"""``act-pipeline gc`` on a real data root: the first data assets materialized three times with the
real Dagster machinery (real ALFWorld games, the planner expert, a real instance), then gc through
the command line.

    run 1 (profile P1): alfworld/games, imported_expert_steps, expert_trajectories
    run 2 (P2: max_expert_steps changed): imported_expert_steps, expert_trajectories
    run 3 (P2): alfworld/games

After run 3 the manifests name games(3), imported(2), trajectories(2); trajectories(2)'s lineage.json
names games(1), which no manifest names any more. So imported(1) and trajectories(1) are superseded
and nothing else: games(1) is a lineage parent of a current artifact. Every check reads the
filesystem (which folders exist, their bytes, what the manifests name), not what gc says about itself.
The tests share one data root and run in file order: the removing ones last.
"""

import json
import os
import re
import shutil
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
import yaml

from act_pipeline.assets.alfworld import ALFWORLD
from act_pipeline.assets.graph import build_assets
from act_pipeline.assets.training import work_dir
from act_pipeline.config import load_config
from act_pipeline.definitions import build_resources

from .conftest import SMOKE, asset, restored, run_main
from .conftest import dagster_home as make_dagster_home
from .test_layers import PKG, _imports

FIRST = ["alfworld/games", "alfworld/imported_expert_steps", "alfworld/expert_trajectories"]
LINE = re.compile(r"^  (keep|would free|remove)\s+[\d.]+ \S+( \+ [\d.]+ \S+ hard-linked)?\s+(\S+)  \((.*)\)$")
pytestmark = pytest.mark.timeout(1200)  # the module's runs: about a minute on 2 idle cores
OLD = time.time() - 3 * 3600  # mtimes set on folders a test makes, so that the min-age guard does not keep them


@contextmanager
def _env(**env):
    old = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(old)


def _games(alfworld_data: Path, out: Path) -> Path:
    """One pick-and-place game of each split, copied (files only: the source folders are read-only)."""
    for split in ("train", "valid_seen", "valid_unseen"):
        task = sorted((alfworld_data / "json_2.1.1" / split).glob("pick_and_place_simple-*"))[0]
        trial = sorted(task.iterdir())[0]
        dst = out / "json_2.1.1" / split / task.name / trial.name
        dst.mkdir(parents=True)
        for f in trial.iterdir():
            shutil.copyfile(f, dst / f.name)
    return out


def _profile(path: Path, **alfworld) -> Path:
    d = yaml.safe_load(SMOKE.read_text())
    d["name"] = path.stem
    d["scienceworld"] = {"enabled": False}
    d["alfworld"].update(train_games=1, eval_state_games=0, **alfworld)
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def dagster_dir(tmp_path_factory) -> Path:
    return make_dagster_home(tmp_path_factory)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory, alfworld_data, dagster_dir):
    tmp = tmp_path_factory.mktemp("gc")
    data = _games(alfworld_data, tmp / "alfworld")
    p1, p2 = _profile(tmp / "p1.yaml"), _profile(tmp / "p2.yaml", max_expert_steps=29)
    home, dh = tmp / "home", dagster_dir
    runs = []
    with _env(ALFWORLD_DATA=str(data)), dg.DagsterInstance.from_config(str(dh)) as instance:
        for profile, keys in ((p1, FIRST), (p2, FIRST[1:]), (p2, FIRST[:1])):
            res = dg.materialize(build_assets(load_config(profile)), selection=keys,
                                 resources=build_resources(str(profile), str(home)), instance=instance)
            assert res.success
            runs.append(res.run_id)
    return {"home": home.resolve(), "dagster_home": dh, "runs": runs, "p1": p1, "p2": p2, "tmp": tmp}


@pytest.fixture
def built(scenario):
    """The scenario's data root and Dagster instance as the three runs left them, for this test
    alone: what it pins, deletes or materializes is undone after it (tests pass in any order)."""
    with restored(scenario["home"], scenario["dagster_home"]):
        yield scenario


def _gc(built, *argv) -> tuple[int, str, str]:
    import io
    from contextlib import redirect_stderr, redirect_stdout

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = run_main(["gc", "--home", str(built["home"]), *argv], DAGSTER_HOME=str(built["dagster_home"]))
    return rc, out.getvalue(), err.getvalue()


def _listed(out: str) -> dict[str, tuple[str, str]]:
    """{folder: (verb, why)} from gc's lines."""
    return {m[3]: (m[1], m[4]) for m in map(LINE.match, out.splitlines()) if m}


def _folder(built, asset_: str, run: int) -> str:
    return f"artifacts/alfworld/{asset_}/{built['runs'][run]}"


def _superseded(built) -> set[str]:
    return {_folder(built, "imported_expert_steps", 0), _folder(built, "expert_trajectories", 0)}


def _artifact_folders(home: Path) -> set[str]:
    """artifacts/<benchmark>/<asset>/<entry> (trash names aside), links not followed on the way."""
    out, top = set(), home / "artifacts"
    for bench in (e for e in os.scandir(top) if e.is_dir(follow_symlinks=False)):
        for a in (e for e in os.scandir(bench.path) if e.is_dir(follow_symlinks=False)):
            out |= {Path(e.path).relative_to(home).as_posix() for e in os.scandir(a.path) if not e.name.startswith(".")}
    return out


def _tree(path: Path) -> dict[str, tuple]:
    """Every entry under ``path`` (links not followed): kind, size, mtime."""
    out = {}
    for d, dirs, files in os.walk(path):
        for name in dirs + files:
            p = Path(d) / name
            st = p.lstat()
            out[p.relative_to(path).as_posix()] = (p.is_symlink(), p.is_dir(), st.st_size, st.st_mtime_ns)
    return out


def _du(path: Path) -> int:
    """Bytes on disk under ``path``, links not followed (what `du -s --block-size=1` counts)."""
    total = path.lstat().st_blocks * 512
    for d, dirs, files in os.walk(path):
        total += sum((Path(d) / n).lstat().st_blocks * 512 for n in dirs + files)
    return total


def _age(path: Path, t: float = OLD) -> None:
    for d, dirs, files in os.walk(path):
        for n in dirs + files:
            os.utime(Path(d) / n, (t, t), follow_symlinks=False)
    os.utime(path, (t, t), follow_symlinks=False)


def _manifest_uris(home: Path) -> list[str]:
    return [json.loads(m.read_text())["uri"] for m in sorted(home.glob("manifests/**/*.json"))]


def test_the_scenario(built):
    """What the other tests rely on, read from the files the runs wrote."""
    home = built["home"]
    uris = _manifest_uris(home)
    assert len(set(built["runs"])) == 3 and len(_artifact_folders(home)) == 6
    g1, g3 = _folder(built, "games", 0), _folder(built, "games", 2)
    assert any(u.startswith(f"{home}/{g3}/") for u in uris) and not any(g1 in u for u in uris)
    t2 = home / _folder(built, "expert_trajectories", 1)
    assert any(u.startswith(f"{t2}/") for u in uris)
    parents = json.loads((t2 / "lineage.json").read_text())["parents"]
    assert parents["games"]["uri"].startswith(f"{home}/{g1}/")
    assert not any(s in u for u in uris for s in _superseded(built))


def test_dry_run_lists_exactly_the_superseded_folders_and_removes_nothing(built):
    home = built["home"]
    before = _tree(home)
    rc, out, err = _gc(built, "--min-age", "0")
    assert rc == 0, err
    assert _tree(home) == before  # nothing written, nothing removed
    listed = _listed(out)
    assert set(listed) == _artifact_folders(home)  # every folder is accounted for
    assert {f for f, (verb, _) in listed.items() if verb == "would free"} == _superseded(built)
    verb, why = listed[_folder(built, "games", 0)]
    assert verb == "keep" and why.startswith("lineage: named by ") and "expert_trajectories" in why
    assert f"({sum(_du(home / f) for f in _superseded(built))} bytes)" in out


def test_the_default_min_age_keeps_what_was_just_written(built):
    rc, out, err = _gc(built)
    assert rc == 0, err
    listed = _listed(out)
    assert all(verb == "keep" for verb, _ in listed.values())
    assert all(listed[f][1].startswith("young: ") for f in _superseded(built))


def test_a_pinned_run_and_its_lineage_are_kept(built):
    home, r1 = built["home"], built["runs"][0]
    rc, out, err = _gc(built, "--pin", r1)
    assert rc == 0, err
    assert json.loads((home / "pins.json").read_text()) == {"runs": [r1], "paths": []}
    rc, out, _ = _gc(built, "--min-age", "0")
    listed = _listed(out)
    assert all(verb == "keep" for verb, _ in listed.values())
    assert all(listed[f][1] == "pinned (pins.json)" for f in _superseded(built))
    assert _gc(built, "--unpin", r1)[0] == 0

    # a path: its artifact is kept, and what that artifact's lineage names (the imported steps)
    t1 = home / _folder(built, "expert_trajectories", 0)
    assert _gc(built, "--pin", str(t1 / "steps.parquet"))[0] == 0
    listed = _listed(_gc(built, "--min-age", "0")[1])
    assert listed[_folder(built, "expert_trajectories", 0)] == ("keep", "pinned (pins.json)")
    verb, why = listed[_folder(built, "imported_expert_steps", 0)]
    assert verb == "keep" and why == f"lineage: named by {_folder(built, 'expert_trajectories', 0)}/lineage.json"
    assert _gc(built, "--unpin", str(t1 / "steps.parquet"))[0] == 0
    assert json.loads((home / "pins.json").read_text()) == {"runs": [], "paths": []}
    listed = _listed(_gc(built, "--min-age", "0")[1])
    assert {f for f, (verb, _) in listed.items() if verb == "would free"} == _superseded(built)


def test_pins_that_name_nothing_are_refused(built, tmp_path):
    (tmp_path / "f.txt").write_text("x")
    pins = built["home"] / "pins.json"
    before = pins.read_text() if pins.exists() else None
    for what, needle in ((str(uuid.uuid4()), "no artifact folder of run"), (str(tmp_path / "f.txt"), "not inside"),
                         (str(built["home"] / "manifests" / "alfworld__games.json"), "not inside"),
                         (str(tmp_path / "missing"), "no such file")):
        rc, out, err = _gc(built, "--pin", what)
        assert rc == 2 and err.startswith("error: ") and needle in err, (what, err)
    assert _gc(built, "--unpin", str(uuid.uuid4()))[0] == 2
    assert (pins.read_text() if pins.exists() else None) == before


def test_an_unfinished_run_keeps_its_folders_and_every_resume_state(built):
    home, run_id = built["home"], str(uuid.uuid4())
    writing = home / "artifacts" / "alfworld" / "games" / run_id
    (writing / "train").mkdir(parents=True)
    (writing / "train" / "game.tw-pddl").write_text("being written")
    resume = home / "trainer_state" / "alfworld" / "il_baseline" / "0123456789abcdef" / "checkpoint-2"
    resume.mkdir(parents=True)
    (resume / "trainer_state.json").write_text("{}")
    _age(writing), _age(resume.parent.parent)
    with dg.DagsterInstance.from_config(str(built["dagster_home"])) as instance:
        instance.add_run(dg.DagsterRun(job_name="act_pipeline_job", run_id=run_id, status=dg.DagsterRunStatus.STARTED))
        try:
            listed = _listed(_gc(built, "--min-age", "0", "--profile", str(built["p2"]))[1])
            assert listed[f"artifacts/alfworld/games/{run_id}"] == ("keep", "its run is in progress")
            assert listed["trainer_state/alfworld/il_baseline/0123456789abcdef"] == (
                "keep", "resume state: a run is in progress")
        finally:
            instance.delete_run(run_id)
    listed = _listed(_gc(built, "--min-age", "0", "--profile", str(built["p2"]))[1])
    assert listed[f"artifacts/alfworld/games/{run_id}"][0] == "would free"
    assert listed["trainer_state/alfworld/il_baseline/0123456789abcdef"][0] == "would free"
    shutil.rmtree(writing), shutil.rmtree(home / "trainer_state")


def test_resume_state_is_judged_against_the_named_profiles(built, tiny_model):
    """A trainer_state folder at the key the il_baseline arm would use now (inputs from the current
    manifests, the arm's code version from its asset definition) is kept for that profile only."""
    home = built["home"]
    (home / "manifests" / "base_model.json").write_text(json.dumps({"uri": tiny_model, "hash": "tiny"}))
    traj = json.loads((home / "manifests" / "alfworld__expert_trajectories.json").read_text())
    cfg = load_config(built["p2"])
    key = dg.AssetKey(["alfworld", "il_baseline"])
    current = work_dir(home, key, cfg, ALFWORLD, "il", "tiny", traj["hash"],
                       asset(cfg, "alfworld/il_baseline").code_versions_by_key[key], None)
    stale = current.with_name("0123456789abcdef")
    for d in (current, stale):
        (d / "checkpoint-2").mkdir(parents=True)
        (d / "checkpoint-2" / "trainer_state.json").write_text("{}")
        _age(d)
    cur, old = current.relative_to(home).as_posix(), stale.relative_to(home).as_posix()
    try:
        listed = _listed(_gc(built, "--min-age", "0")[1])
        assert listed[cur] == listed[old] == ("keep", "resume state: not judged without a profile")
        listed = _listed(_gc(built, "--min-age", "0", "--profile", str(built["p2"]))[1])
        assert listed[cur] == ("keep", "resume state of a current training of p2.yaml")
        assert listed[old][0] == "would free"
        listed = _listed(_gc(built, "--min-age", "0", "--profile", str(built["p1"]))[1])  # another alfworld section
        assert listed[cur][0] == listed[old][0] == "would free"
        listed = _listed(_gc(built, "--min-age", "0", "--profile", str(built["p1"]), "--profile", str(built["p2"]))[1])
        assert listed[cur][0] == "keep" and listed[old][0] == "would free"
    finally:
        shutil.rmtree(home / "trainer_state")
        (home / "manifests" / "base_model.json").unlink()


def test_delete_removes_exactly_the_superseded_folders_never_through_a_link(built, tmp_path):
    home, tmp = built["home"], tmp_path
    outside = tmp / "outside"  # what links point to: never followed, never removed
    (outside / str(uuid.uuid4())).mkdir(parents=True)
    (outside / "big.bin").write_bytes(b"x" * (1 << 20))
    links = [home / "artifacts" / "alfworld" / "games" / str(uuid.uuid4()),  # where an artifact folder would be
             home / "artifacts" / "alfworld" / "elsewhere",  # a label folder
             home / _folder(built, "imported_expert_steps", 0) / "escape"]  # inside a folder that goes
    for link in links:
        link.symlink_to(outside, target_is_directory=True)
    outside_before, folders_before = _tree(outside), _artifact_folders(home)
    sizes = sum(_du(home / f) for f in _superseded(built))

    rc, out, err = _gc(built, "--min-age", "0")
    listed = _listed(out)
    for link in links[:2]:
        assert listed[link.relative_to(home).as_posix()] == ("keep", "a symbolic link: never followed")
    assert str(outside) not in out and f"({sizes} bytes)" in out  # the link's target not counted

    rc, out, err = _gc(built, "--min-age", "0", "--delete")
    assert rc == 0, err
    assert _artifact_folders(home) == folders_before - _superseded(built)
    assert _tree(outside) == outside_before
    assert all(link.is_symlink() for link in links[:2]) and not links[2].is_symlink()
    assert not list(home.glob("artifacts/**/.gc-trash-*"))
    assert f"({sizes} bytes) in 2 folder(s)" in out
    for link in links[:2]:
        link.unlink()

    # what is current still loads, and the lineage parent is still there
    for uri in _manifest_uris(home):
        assert pq.read_table(uri).num_rows >= 0
    games = pq.read_table(json.loads((home / "manifests" / "alfworld__games.json").read_text())["uri"]).to_pylist()
    assert games and all(Path(g["gamefile"]).is_file() for g in games)
    t2 = home / _folder(built, "expert_trajectories", 1)
    for parent in json.loads((t2 / "lineage.json").read_text())["parents"].values():
        assert pq.read_table(parent["uri"]).num_rows >= 0
    listed = _listed(_gc(built, "--min-age", "0")[1])
    assert listed and all(verb == "keep" for verb, _ in listed.values())


def test_an_interrupted_removal_leaves_a_trash_folder_the_next_gc_finishes(built, monkeypatch):
    """A removal that dies after the rename: the folder is gone from its name (no half-deleted
    folder where a reader looks), and the next gc removes the trash."""
    home, p2 = built["home"], built["p2"]
    with _env(ALFWORLD_DATA=str(built["tmp"] / "alfworld")), \
            dg.DagsterInstance.from_config(str(built["dagster_home"])) as instance:
        res = dg.materialize(build_assets(load_config(p2)), selection=FIRST[:1],
                             resources=build_resources(str(p2), str(home)), instance=instance)
    assert res.success
    g3 = _folder(built, "games", 2)  # superseded by the run just made, named by no lineage record
    going = _superseded(built) | {g3}
    assert {f for f, (verb, _) in _listed(_gc(built, "--min-age", "0")[1]).items() if verb == "would free"} == going

    import act_pipeline.artifact_gc as gc

    def dies(path, *a, **k):
        raise OSError(f"simulated crash while removing {path}")

    monkeypatch.setattr(gc.shutil, "rmtree", dies)
    rc, out, err = _gc(built, "--min-age", "0", "--delete")
    assert rc == 1 and "simulated crash" in err
    assert not any((home / f).exists() for f in going)  # none left half-deleted under its own name
    trash = sorted(home.glob("artifacts/*/*/.gc-trash-*"))
    assert sorted((t.parent, t.name.rsplit("-", 1)[0]) for t in trash) == sorted(
        ((home / f).parent, f".gc-trash-{Path(f).name}") for f in going)  # each renamed beside itself
    assert all(any(t.iterdir()) for t in trash)  # the crash came before any content went
    monkeypatch.undo()

    listed = _listed(_gc(built, "--min-age", "0")[1])
    for t in trash:
        assert listed[t.relative_to(home).as_posix()] == ("would free", "left by an interrupted gc")
    assert _gc(built, "--min-age", "0", "--delete")[0] == 0
    assert not any(t.exists() for t in trash) and _artifact_folders(home) == {
        _folder(built, "games", 0), _folder(built, "imported_expert_steps", 1),
        _folder(built, "expert_trajectories", 1), f"artifacts/alfworld/games/{res.run_id}"}


def test_a_hard_linked_checkpoint_is_freed_once_and_only_with_every_link(dagster_dir, tmp_path, capsys):
    """A training stage whose inputs equal an earlier one's links that checkpoint's files into its
    own folder: removing one of the two folders frees nothing of the shared file, removing both
    frees it once."""
    from act_pipeline.artifact_gc import human

    root = _root(tmp_path)
    a, b = (root / "artifacts" / "alfworld" / "il_baseline" / str(uuid.uuid4()) / "model" for _ in range(2))
    for d in (a, b):
        d.mkdir(parents=True)
        (d / "model_card.json").write_text("{}")
    (a / "model.safetensors").write_bytes(os.urandom(1 << 20))
    os.link(a / "model.safetensors", b / "model.safetensors")
    _age(a.parent), _age(b.parent)
    shared = (b / "model.safetensors").lstat().st_blocks * 512
    own_a, own_b = _du(a.parent) - shared, _du(b.parent) - shared  # (_du counts the inode in each)
    assert shared >= 1 << 20 and (b / "model.safetensors").lstat().st_nlink == 2

    def gc(current: Path, *argv) -> tuple[int, str]:
        (root / "manifests" / "a.json").write_text(json.dumps({"uri": str(current)}))
        capsys.readouterr()
        rc = run_main(["gc", "--home", str(root), "--min-age", "0", *argv], DAGSTER_HOME=str(dagster_dir))
        return rc, capsys.readouterr().out

    rel_a, rel_b = (d.parent.relative_to(root).as_posix() for d in (a, b))
    rc, out = gc(b / "model.safetensors")  # b current: a goes, the shared file stays with b
    assert rc == 0 and _listed(out)[rel_a][0] == "would free" and _listed(out)[rel_b][0] == "keep"
    assert f"+ {human(shared)} hard-linked  {rel_a}" in out
    assert f"would free 1 folder(s), {human(own_a)} ({own_a} bytes); kept 1 folder(s), {human(own_b + shared)}" in out

    rc, out = gc(root / "elsewhere", "--delete")  # neither current: both go, the shared file counted once
    assert rc == 0 and not a.parent.exists() and not b.parent.exists()
    assert f"({own_a + own_b + shared} bytes) in 2 folder(s)" in out


def _root(tmp_path: Path) -> Path:
    (tmp_path / "artifacts").mkdir(parents=True)
    (tmp_path / "manifests").mkdir()
    return tmp_path


@pytest.mark.parametrize("case,needle", [
    ("missing", "is not a folder"),
    ("no artifacts", "artifacts/ is missing"),
    ("no manifest", "no manifest"),
    ("artifacts is a link", "symbolic link"),
    ("moved", "was this data root moved or copied"),
    ("bad manifest", "cannot read this manifest"),
    ("bad pins", "pins.json"),
    ("bad lineage", "cannot read this lineage record"),
])
def test_refused_with_one_error_and_nothing_removed(dagster_dir, tmp_path, capsys, case, needle):
    root = tmp_path / "root"
    if case != "missing":
        _root(root)
        old = root / f"artifacts/alfworld/games/{uuid.uuid4()}"  # named by nothing: would go
        old.mkdir(parents=True)
        _age(old)
        (root / "manifests" / "a.json").write_text(json.dumps({"uri": str(root / "elsewhere")}))
    if case == "no artifacts":
        shutil.rmtree(root / "artifacts")
    elif case == "no manifest":
        (root / "manifests" / "a.json").unlink()
    elif case == "artifacts is a link":
        shutil.move(root / "artifacts", tmp_path / "target")
        (root / "artifacts").symlink_to(tmp_path / "target")
    elif case == "moved":  # manifests written under another root
        (root / "manifests" / "a.json").write_text(
            json.dumps({"uri": f"/old/home/artifacts/alfworld/games/{uuid.uuid4()}/games.parquet"}))
    elif case == "bad manifest":
        (root / "manifests" / "b.json").write_text("{")
    elif case == "bad pins":
        (root / "pins.json").write_text(json.dumps(["not", "a", "pin", "file"]))
    elif case == "bad lineage":
        current = root / f"artifacts/alfworld/expert_trajectories/{uuid.uuid4()}"
        current.mkdir(parents=True)
        (current / "lineage.json").write_text("{")
        (root / "manifests" / "a.json").write_text(json.dumps({"uri": str(current / "steps.parquet")}))
    before = _tree(tmp_path)
    capsys.readouterr()
    rc = run_main(["gc", "--home", str(root), "--min-age", "0", "--delete"], DAGSTER_HOME=str(dagster_dir))
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1 and needle in err, err
    assert _tree(tmp_path) == before


def test_the_core_never_imports_dagster():
    imported = _imports(PKG / "artifact_gc.py")
    assert not any(n.startswith("!dagster") for n in imported)
    assert {n for n in imported if not n.startswith("!")} == {"files"}
