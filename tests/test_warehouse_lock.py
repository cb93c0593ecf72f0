"""Two writers never corrupt the warehouse: the second one waits for the first, or fails clearly."""

import subprocess
import sys
import time

import pyarrow as pa
import pytest

from act_pipeline.data.store import Warehouse, WarehouseBusyError, write_parquet_atomic

HOLD = """
import duckdb, sys, time
con = duckdb.connect(sys.argv[1])
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


def _holder(path, seconds):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_writer_waits_then_succeeds(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb", wait_s=30)
    t = write_parquet_atomic(pa.table({"x": [1, 2, 3]}), tmp_path / "t.parquet")
    proc = _holder(wh.path, 2.0)
    t0 = time.monotonic()
    wh.register("t", t)  # blocks until the other process lets go
    assert time.monotonic() - t0 >= 1.0
    proc.wait()
    assert wh.scalar("SELECT sum(x) FROM t") == 6


def test_second_writer_gives_a_clear_error_when_the_lock_stays(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb", wait_s=1)
    proc = _holder(wh.path, 10.0)
    try:
        with pytest.raises(WarehouseBusyError, match=r"w.duckdb is locked by another process"):
            wh.register("t", write_parquet_atomic(pa.table({"x": [1]}), tmp_path / "t.parquet"))
    finally:
        proc.kill()
        proc.wait()
