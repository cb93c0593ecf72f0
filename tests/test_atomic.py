"""SIGKILL in the middle of writing a table or saving a checkpoint: the previous version survives
intact and a rerun succeeds."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from act_pipeline.data.store import write_parquet_atomic

WRITE_TABLE = """
import sys, pyarrow as pa
from act_pipeline.data.store import write_parquet_atomic
n = 3_000_000
table = pa.table({"pair_id": pa.array([f"p{i:09d}" for i in range(n)]), "expert_slot": pa.array([1, 2] * (n // 2))})
print("writing", flush=True)
write_parquet_atomic(table, sys.argv[1])
"""

SAVE_CHECKPOINT = """
import sys
from act_pipeline.models import load_model
from act_pipeline.files import atomic_dir
model, tok = load_model(sys.argv[1])
print("saving", flush=True)
with atomic_dir(sys.argv[2]) as tmp:
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
"""


def _kill_when(proc, ready, timeout=300):
    """SIGKILL the process as soon as ``ready()`` holds (the write is under way)."""
    deadline = time.time() + timeout
    while not ready():
        assert proc.poll() is None, "the write finished before it could be killed"
        assert time.time() < deadline
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_killed_table_write_leaves_previous_version(tmp_path):
    path = tmp_path / "pairs.parquet"
    old = pa.table({"pair_id": ["a", "b"], "expert_slot": [1, 2]})
    write_parquet_atomic(old, path)
    proc = subprocess.Popen([sys.executable, "-c", WRITE_TABLE, str(path)], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    assert proc.stdout.readline().strip() == "writing"
    _kill_when(proc, lambda: any(p.stat().st_size > 0 for p in tmp_path.glob(".pairs.parquet.*.tmp")))
    assert pq.read_table(path).equals(old)  # the killed writer never replaced it
    new = pa.table({"pair_id": ["c"], "expert_slot": [1]})
    write_parquet_atomic(new, path)  # a rerun succeeds
    assert pq.read_table(path).equals(new)


def test_killed_checkpoint_save_leaves_previous_version(tmp_path, tiny_model):
    from act_pipeline.config import ModelConfig
    from act_pipeline.models import load_model, resolve_base_model
    from act_pipeline.files import dir_hash
    from act_pipeline.training.cache import model_identity

    big = resolve_base_model(ModelConfig(source="smollm2-gguf"), 0, log=lambda m: None)  # ~540 MB: slow to save
    ckpt = tmp_path / "model"
    subprocess.run([sys.executable, "-c", SAVE_CHECKPOINT, tiny_model, str(ckpt)], check=True)
    before = dir_hash(ckpt)
    proc = subprocess.Popen([sys.executable, "-c", SAVE_CHECKPOINT, big, str(ckpt)], stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    assert proc.stdout.readline().strip() == "saving"
    _kill_when(proc, lambda: any(p.stat().st_size > 0 for p in tmp_path.glob(".model.*.tmp/*.safetensors")))
    assert dir_hash(ckpt) == before  # the old checkpoint is intact and still loads
    load_model(str(ckpt))
    # a rerun succeeds. Only the killed save needs the big model (slow enough to be caught mid-write); the
    # rerun saves another tiny one (seed 1), whose hash differs from the checkpoint already there: the
    # tiny model itself would leave the same bytes, so a rerun that replaced nothing would pass
    other = resolve_base_model(ModelConfig(source="tiny-random"), 1, log=lambda m: None)
    subprocess.run([sys.executable, "-c", SAVE_CHECKPOINT, other, str(ckpt)], check=True)
    # the same model as `other` (compared as loaded: the model cache may have been built by another
    # transformers release, which writes its version into config.json), and not the one before
    assert model_identity(ckpt) == model_identity(other) and dir_hash(ckpt) != before


def _complete(folder: Path) -> bool:
    return (folder / "weights").exists()


def test_a_cache_folder_another_process_completed_meanwhile_stays(tmp_path):
    """``atomic_dir(keep_if=...)``, as the model cache uses it: two processes building the same cached
    model at once (e.g. two pytest-xdist workers). Whoever finishes second keeps the first one's
    folder and drops its own, without an error and without moving the folder a reader may be loading;
    a folder at the target that is not complete is replaced."""
    from act_pipeline.files import atomic_dir

    dst = tmp_path / "cache" / "model"
    with atomic_dir(dst, keep_if=_complete) as tmp:
        (tmp / "weights").write_text("ours")
        # the other process finishes first: its complete folder appears under the name
        with atomic_dir(dst, keep_if=_complete) as theirs:
            (theirs / "weights").write_text("theirs")
        inode = dst.stat().st_ino
    assert (dst / "weights").read_text() == "theirs" and dst.stat().st_ino == inode  # never moved aside
    assert sorted(p.name for p in dst.parent.iterdir()) == ["model"]  # no temporary folder left behind

    (dst / "weights").unlink()  # an incomplete folder (with a file in it) under the name: replaced
    (dst / "config").write_text("left by a build that died")
    with atomic_dir(dst, keep_if=_complete) as tmp:
        (tmp / "weights").write_text("new")
    assert (dst / "weights").read_text() == "new" and not (dst / "config").exists()
    assert sorted(p.name for p in dst.parent.iterdir()) == ["model"]

    with atomic_dir(dst) as tmp:  # without keep_if: replaced, as every artifact is
        (tmp / "weights").write_text("newer")
    assert (dst / "weights").read_text() == "newer"
