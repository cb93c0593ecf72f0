"""Resume at the pipeline level: ``act-pipeline run`` (the real CLI, real Dagster, real ALFWorld games,
the tiny model) killed by SIGKILL to its process group during ACT training, and again during IL; the
reruns resume from the last trainer checkpoint and end at the same step count, no half-written
artifact is visible to an asset (the manifests, the Dagster instance) or to the DuckDB warehouse, no
process of a killed run is left, and a rerun with a changed input trains afresh instead of resuming
the other job's checkpoint (which a rerun with the original inputs then resumes).

The training-level kill (the bare trainers) is tests/test_resume.py.

    run A  killed once ACT has a trainer checkpoint
    run B  resumes ACT to its last step; killed once IL (il_policy) has a checkpoint
    run C  il.learning_rate changed: IL trains from step 0 under another trainer_state key, B's left alone
    run D  the original profile again: IL resumes B's checkpoint, to its last step; the run completes
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from .conftest import REPO, SMOKE

# 4 runs of the CLI: 67 s alone on the 2-core Xeon (2026-12-04); in the default run since it rotted unrun as `slow`
pytestmark = [pytest.mark.timeout(2400)]

STEPS, SAVE_STEPS = 6, 2  # per training; a trainer checkpoint every 2 steps (none at the last)
ACT, IL = "alfworld/act_checkpoint", "alfworld/il_policy"
TEMP_SUFFIXES = (".tmp", ".old", ".partial")  # act_pipeline/files.py: `.<name>.<random>.tmp`, `.<name>.old`, ...


def _profile(path: Path, **il) -> Path:
    """The smoke profile trimmed to what ACT and IL need: ALFWorld only, ACT + the IL arms, two
    training games, short prompts, no roll-outs; 6 steps per training with a checkpoint every 2 steps;
    every arm trains (``training.reuse: false``)."""
    p = yaml.safe_load(SMOKE.read_text())
    p["name"] = "resume"
    p["arms"] = ["il_baseline", "il_policy"]  # il_policy trains from ACT's checkpoint (a profile keeps its baseline)
    p["scienceworld"]["enabled"] = False
    p["alfworld"].update(train_games=2, eval_state_games=1, history_len=1)
    p["sampling"].update(k=2, max_new_tokens=8)
    p["act"].update(max_steps=STEPS, save_steps=SAVE_STEPS, save_every_s=0.0, probe_every=0,
                    max_completion_length=4)
    p["il"].update(max_steps=STEPS, per_device_train_batch_size=2, save_steps=SAVE_STEPS, save_every_s=0.0, **il)
    p["eval"].update(thinking_arm=False, heldout_pairs=4, heldout_states=4, games_valid_seen=0,
                     games_valid_unseen=0, max_new_tokens=6)
    p["envs"]["eval_workers"] = 1
    # the tiny model's ACT learns nothing here (its checkpoint holds the base model's tensors), so with
    # reuse il_policy would be il_baseline's training, linked and never trained: this test needs it trained
    p.setdefault("training", {})["reuse"] = False
    path.write_text(yaml.safe_dump(p, sort_keys=False))
    return path


class Pipeline:
    """``python -m act_pipeline.cli run`` on one data root and Dagster instance, in its own session."""

    def __init__(self, tmp: Path, data: Path):
        self.tmp, self.home = tmp, (tmp / "home").resolve()
        self.dagster_home = tmp / "dagster_home"
        self.dagster_home.mkdir()
        (self.dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        self.env = dict(os.environ, ALFWORLD_DATA=str(data), DAGSTER_HOME=str(self.dagster_home),
                        HF_HUB_OFFLINE="1", PYTHONPATH=os.pathsep.join(filter(None, [str(REPO),
                                                                                    os.environ.get("PYTHONPATH")])))
        self.proc, self.runs = None, 0

    def start(self, profile: Path) -> Path:
        self.runs += 1
        out = self.tmp / f"run{self.runs}.out"
        with open(out, "w") as f:
            self.proc = subprocess.Popen([sys.executable, "-m", "act_pipeline.cli", "run", "--profile", str(profile),
                                          "--home", str(self.home)], cwd=REPO, env=self.env, stdout=f,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        return out

    def checkpoints(self, asset: str) -> list[Path]:
        """The complete trainer checkpoints of ``asset``: those a resume would accept (``checkpoint_complete``)."""
        from act_pipeline.training.common import checkpoint_complete

        return sorted(c for c in (self.home / "trainer_state" / asset).glob("*/checkpoint-*") if checkpoint_complete(c))

    def kill_at_checkpoint(self, asset: str, out: Path, timeout: float = 900) -> Path:
        """SIGKILL the run's process group once ``asset`` has a trainer checkpoint; the last complete
        checkpoint, the one the rerun should resume from."""
        deadline = time.time() + timeout
        while not self.checkpoints(asset):
            assert self.proc.poll() is None, (f"the run ended before {asset} had a checkpoint:\n"
                                              f"{out.read_text()[-3000:]}")
            assert time.time() < deadline, f"no checkpoint of {asset} within {timeout} s"
            time.sleep(0.05)
        # the orphan check sees the run's processes (it can fail): the CLI itself, before the kill
        assert any(p.startswith(f"{self.proc.pid}:") for p in _leftovers(self.home))
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        last = max(self.checkpoints(asset), key=lambda p: int(p.name.split("-")[1]))
        assert int(last.name.split("-")[1]) < STEPS  # killed mid-training
        return last

    def finish(self, out: Path, timeout: float = 900, watch: str | None = None) -> set[Path]:
        """Wait for the run to succeed; the trainer_state folders of ``watch`` seen meanwhile."""
        seen, deadline = set(), time.time() + timeout
        while self.proc.poll() is None:
            if watch:
                seen |= {p.parent for p in self.checkpoints(watch)}
            assert time.time() < deadline, f"the run did not end within {timeout} s"
            time.sleep(0.05)
        assert self.proc.returncode == 0, out.read_text()[-5000:]
        return seen

    def manifest(self, key: str) -> dict:
        return json.loads((self.home / "manifests" / f"{key.replace('/', '__')}.json").read_text())


def _leftovers(home: Path) -> list[str]:
    """Live processes (not this one) whose command line names the data root or whose environment sets
    it (``ACT_HOME``: the CLI sets it, every process it starts inherits it, environment workers too)."""
    mark, found = str(home).encode(), []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if (d / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            cmdline, environ = (d / "cmdline").read_bytes(), (d / "environ").read_bytes()
        except (OSError, IndexError):
            continue
        if mark in cmdline or b"ACT_HOME=" + mark in environ.split(b"\0"):
            found.append(f"{d.name}: " + cmdline.replace(b"\0", b" ").decode(errors="replace")[:200])
    return found


def _no_orphans(home: Path, grace: float = 60) -> None:
    """Every process of the killed run is gone within ``grace`` seconds (environment workers lead
    sessions of their own, so the kill of the CLI's group does not reach them: they must end on their
    own); any still there fails the test, and is killed."""
    deadline = time.time() + grace
    while (left := _leftovers(home)) and time.time() < deadline:
        time.sleep(0.5)
    _kill(left)
    assert not left, f"processes of the killed run left behind: {left}"


def _kill(procs: list[str]) -> None:
    for line in procs:
        try:
            os.kill(int(line.split(":")[0]), signal.SIGKILL)
        except ProcessLookupError:
            pass


def _temp(path: str) -> bool:
    return any(part.startswith(".") and part.endswith(TEMP_SUFFIXES) for part in Path(path).parts)


def _nothing_half_written_visible(pipe: Pipeline) -> None:
    """What assets read (the manifests the IO manager hands them, the URIs the Dagster instance
    recorded) and what the warehouse's views read are complete artifacts, never temporary folders."""
    import dagster as dg
    import duckdb

    from act_pipeline.artifact_gc import _strings  # every string of a JSON document

    for m in (pipe.home / "manifests").rglob("*.json"):
        assert not _temp(str(m)), m
        for p in (s for s in _strings(json.loads(m.read_text())) if s.startswith("/")):  # URIs, report files, ...
            assert not _temp(p) and Path(p).exists(), (m.name, p)
    with dg.DagsterInstance.from_config(str(pipe.dagster_home)) as instance:
        for key in instance.get_asset_keys():
            ev = instance.get_latest_materialization_event(key)
            uri = ev.asset_materialization.metadata.get("uri") if ev else None
            if uri is not None:
                assert not _temp(uri.value) and Path(uri.value).exists(), (key, uri.value)
    warehouse = pipe.home / "warehouse.duckdb"
    if warehouse.exists():
        with duckdb.connect(str(warehouse), read_only=True) as con:
            views = con.execute("SELECT view_name, sql FROM duckdb_views() WHERE NOT internal").fetchall()
        assert views
        for name, sql in views:
            for p in re.findall(r"read_parquet\('((?:[^']|'')*)'\)", sql):
                assert not _temp(p) and Path(p).is_file(), (name, p)


def _resumed(out: Path, asset: str) -> list[str]:
    """The checkpoints the run's ``asset`` said it resumed from (``train_and_save``'s log line)."""
    return re.findall(rf"{re.escape(asset)}: .*: resuming from (\S+)", out.read_text())


def _card(pipe: Pipeline, asset: str) -> dict:
    return json.loads((Path(pipe.manifest(asset)["uri"]) / "model_card.json").read_text())


def test_killed_pipeline_resumes_each_training_and_never_the_wrong_one(tmp_path, alfworld_data):
    t0 = time.time()
    profile = _profile(tmp_path / "resume.yaml")
    pipe = Pipeline(tmp_path, alfworld_data)
    try:
        # A: killed during ACT
        out = pipe.start(profile)
        act_ckpt = pipe.kill_at_checkpoint(ACT, out)
        _no_orphans(pipe.home)
        _nothing_half_written_visible(pipe)
        assert not (pipe.home / "manifests" / f"{ACT.replace('/', '__')}.json").exists()
        # a kill that lands while the trainer writes its next checkpoint (in place, trainer_state.json
        # last) leaves it half-written: the rerun must resume from the complete one before it
        half = act_ckpt.with_name(f"checkpoint-{int(act_ckpt.name.split('-')[1]) + SAVE_STEPS}")
        shutil.copytree(act_ckpt, half, dirs_exist_ok=True)
        (half / "trainer_state.json").unlink()
        weights = half / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])

        # B: ACT resumes from A's checkpoint and ends at the same step count; killed during IL
        out = pipe.start(profile)
        il_ckpt = pipe.kill_at_checkpoint(IL, out)
        _no_orphans(pipe.home)
        _nothing_half_written_visible(pipe)
        assert _resumed(out, ACT) == [str(act_ckpt)]
        assert pipe.manifest(ACT)["global_step"] == STEPS
        assert _card(pipe, ACT)["resumed_from"] == str(act_ckpt)
        assert not act_ckpt.parent.exists()  # its trainer state is removed once the final model is saved

        # C: IL's inputs changed (its learning rate): IL trains from step 0 under a key of its own
        kept = {p.name: p.stat().st_mtime_ns for p in il_ckpt.iterdir()}
        out = pipe.start(_profile(tmp_path / "changed.yaml", learning_rate=3e-5))
        keys = pipe.finish(out, watch=IL)
        assert "resuming from" not in out.read_text()
        assert keys - {il_ckpt.parent}  # its checkpoints went to another trainer_state folder
        assert pipe.manifest(IL)["global_step"] == STEPS and _card(pipe, IL)["resumed_from"] is None
        # B's checkpoint left as it was, for the job it belongs to
        assert {p.name: p.stat().st_mtime_ns for p in il_ckpt.iterdir()} == kept
        _nothing_half_written_visible(pipe)

        # D: the original inputs again: IL resumes B's checkpoint, ends at the same step count
        out = pipe.start(profile)
        pipe.finish(out)
        assert _resumed(out, IL) == [str(il_ckpt)]
        assert pipe.manifest(IL)["global_step"] == STEPS and _card(pipe, IL)["resumed_from"] == str(il_ckpt)
        assert not il_ckpt.parent.exists()
        _nothing_half_written_visible(pipe)
        assert not _leftovers(pipe.home)
    finally:
        if pipe.proc is not None and pipe.proc.poll() is None:
            os.killpg(pipe.proc.pid, signal.SIGKILL)
            pipe.proc.wait()
        _kill(_leftovers(pipe.home))  # a failed test leaves nothing running either
        print(f"\n{pipe.runs} runs of act-pipeline in {time.time() - t0:.0f} s")
