"""Parquet files and the DuckDB warehouse that exposes them as views.

Every Parquet file is written to a temporary name beside its target and renamed into place
only when complete, so a crash never leaves a half-written table. The DuckDB file holds
*views* over those files (the ``project_fully_featured`` pattern): the Parquet file is the
artifact, the view makes it queryable, and the view is replaced in one transaction.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from act_pipeline.files import atomic_file, sha256_bytes

log = logging.getLogger(__name__)


def write_parquet_atomic(table: pa.Table, path: str | Path) -> Path:
    with atomic_file(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def read_parquet(path: str | Path) -> pa.Table:
    return pq.read_table(path)


def table_hash(table: pa.Table) -> str:
    """Content hash of a table's rows (independent of Parquet encoding details)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table.combine_chunks())
    return sha256_bytes(sink.getvalue().to_pybytes())


class WarehouseBusyError(RuntimeError):
    pass


def _quote(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def parquet_scan(path: str | Path) -> str:
    """SQL for reading one Parquet file (views cannot take prepared parameters)."""
    return f"read_parquet({_quote(str(Path(path).resolve()))})"


class Warehouse:
    """A DuckDB file with one view per Parquet artifact."""

    def __init__(self, path: str | Path, wait_s: float = 600.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.wait_s = wait_s

    def connect(self, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        """Open the warehouse. DuckDB allows one writing process: a second one waits (up to
        ``wait_s``, saying so once) instead of failing, then gives a clear error."""
        if read_only and not self.path.exists():
            raise FileNotFoundError(f"warehouse {self.path} does not exist yet")
        deadline = time.monotonic() + self.wait_s
        told = False
        while True:
            try:
                return duckdb.connect(str(self.path), read_only=read_only)
            except duckdb.IOException as e:
                if "lock" not in str(e).lower():
                    raise
                if time.monotonic() >= deadline:
                    raise WarehouseBusyError(
                        f"warehouse {self.path} is locked by another process (another materialization?) "
                        f"and stayed locked for {self.wait_s:.0f} s: {e}") from None
                if not told:
                    log.warning("warehouse %s is in use by another process; waiting for it", self.path)
                    told = True
                time.sleep(0.5)

    def register(self, name: str, parquet_path: str | Path) -> None:
        """Point view ``name`` at a Parquet file (in one transaction)."""
        if not name.isidentifier():
            raise ValueError(f"invalid view name {name!r}")
        with self.connect() as con:
            con.execute("BEGIN")
            con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM {parquet_scan(parquet_path)}")
            con.execute("COMMIT")

    def insert(self, ddl: str, table_name: str, rows: pa.Table, replace: bool = False) -> None:
        """``rows`` into ``table_name`` (made by ``ddl`` if it is not there) in one transaction; a
        row whose key is there already keeps the old row, or with ``replace`` the new one."""
        with self.connect() as con:
            con.execute(ddl)
            con.register("new_rows", rows)
            con.execute("BEGIN")
            con.execute(f"INSERT OR {'REPLACE' if replace else 'IGNORE'} INTO {table_name} SELECT * FROM new_rows")
            con.execute("COMMIT")

    def query(self, sql: str, params: list | None = None) -> pa.Table:
        with self.connect() as con:
            rel = con.sql(sql, params=params or None)
            # duckdb >= 2 names it to_arrow_table; 1.x arrow()
            return rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()

    def scalar(self, sql: str, params: list | None = None):
        with self.connect() as con:
            row = con.execute(sql, params or []).fetchone()
        return None if row is None else row[0]
