"""The benchmarks' disk measurement (benchmarks/common.py: disk_use): bytes a command's whole process
tree wrote, and bytes left under the roots, measured on real processes and files."""

import os
import subprocess
import sys

import pytest

from benchmarks.common import disk_use, io_counters, tree_bytes

MB = 1_000_000
# a child that starts a grandchild; the grandchild writes 8 MB to keep (synced to disk) and 4 MB to
# a file it deletes
GRANDCHILD = """
import os, sys
root = sys.argv[1]
with open(os.path.join(root, "kept.bin"), "wb") as f:
    f.write(os.urandom(8 * 1000 * 1000)); f.flush(); os.fsync(f.fileno())
with open(os.path.join(root, "temp.bin"), "wb") as f:
    f.write(os.urandom(4 * 1000 * 1000))
os.remove(os.path.join(root, "temp.bin"))
"""
CHILD = "import subprocess, sys; subprocess.run([sys.executable, '-c', sys.argv[1], sys.argv[2]], check=True)"


def test_disk_use_counts_the_whole_process_tree_and_what_is_left(tmp_path):
    if not io_counters():
        pytest.skip("no /proc/self/io here")
    root = tmp_path / "root"
    root.mkdir()
    (root / "before.bin").write_bytes(b"x" * 1000)
    res, disk = disk_use(lambda: subprocess.run([sys.executable, "-c", CHILD, GRANDCHILD, str(root)], check=True),
                         [root, tmp_path / "missing"])
    assert res.returncode == 0
    assert disk["left_before_bytes"] == 1000 and disk["left_bytes"] == 1000 + 8 * MB
    assert disk["written_bytes"] >= 8 * MB  # the grandchild's synced file: counted through two waits
    assert disk["written_bytes"] >= disk["written_net_bytes"] >= 8 * MB
    assert disk["write_call_bytes"] >= 12 * MB  # both files' write calls


def test_tree_bytes_counts_a_hard_linked_file_once(tmp_path):
    (tmp_path / "a").write_bytes(b"x" * 100)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b").write_bytes(b"y" * 10)
    os.link(tmp_path / "a", tmp_path / "d" / "a_again")
    os.symlink(tmp_path / "a", tmp_path / "d" / "a_link")
    assert tree_bytes(tmp_path) == 110
    assert tree_bytes(tmp_path / "d", tmp_path / "nowhere") == 110  # the hard link is the same file
