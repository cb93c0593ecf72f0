"""A throwaway PostgreSQL for the tests: Debian's `postgresql` package (scripts/setup.sh installs it
where it can), a new cluster in a temporary folder, listening on 127.0.0.1 on a free port, password
authentication (scram-sha-256, a random password), stopped with its whole process group after.

Postgres refuses to run as root: when the tests run as root, the cluster belongs to the `postgres`
user the package creates (``nobody`` where there is none) and every server binary runs as that user
(``subprocess``'s ``user=``/``group=``, no ``su``/``runuser`` in between).

Without the binaries (or without ``dagster-postgres``) the tests that need them skip; under
``CI`` (``.ci/run`` exports ``CI=1``) they fail instead.
"""

import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

USER, DB = "act", "dagster"  # the cluster's superuser and the database Dagster stores in


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


def unavailable(reason: str):
    """Skip, or under CI fail: what CI claims to test must not silently go missing."""
    if in_ci():
        pytest.fail(f"{reason} (CI=1: a failure, not a skip)")
    pytest.skip(reason)


def bindir() -> Path | None:
    """The folder of PostgreSQL's server binaries (initdb, postgres, pg_isready, psql): $ACT_PG_BINDIR,
    else beside `postgres`/`initdb` on PATH, else the newest /usr/lib/postgresql/<version>/bin (Debian
    keeps initdb there, off PATH)."""
    cands = [os.environ.get("ACT_PG_BINDIR")]
    cands += [str(Path(p).resolve().parent) for p in map(shutil.which, ("initdb", "postgres")) if p]
    cands += sorted((str(p) for p in Path("/usr/lib/postgresql").glob("*/bin")),
                    key=lambda p: int(re.sub(r"\D", "", Path(p).parent.name) or 0), reverse=True)
    for c in filter(None, cands):
        if all(os.access(Path(c) / b, os.X_OK) for b in ("initdb", "postgres", "pg_isready", "psql")):
            return Path(c)
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_user() -> dict:
    """Keyword arguments for subprocess that run a server binary as an unprivileged user when we are root."""
    if os.geteuid() != 0:
        return {}
    for name in ("postgres", "nobody"):
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            continue
        return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
    raise RuntimeError("running as root and neither a `postgres` nor a `nobody` user exists to run PostgreSQL")


@dataclass
class Postgres:
    bindir: Path
    port: int
    password: str
    host: str = "127.0.0.1"
    user: str = USER
    db: str = DB

    def env(self) -> dict[str, str]:
        """The variables deploy/dagster.yaml reads for its Postgres storage (the port is not one of them)."""
        return {"DAGSTER_PG_HOST": self.host, "DAGSTER_PG_USERNAME": self.user,
                "DAGSTER_PG_PASSWORD": self.password, "DAGSTER_PG_DB": self.db}

    def psql(self, sql: str, db: str | None = None) -> list[list[str]]:
        """Rows of ``sql`` (psql, unaligned, tab-separated; an error raises)."""
        out = subprocess.run([str(self.bindir / "psql"), "-h", self.host, "-p", str(self.port), "-U", self.user,
                              "-d", db or self.db, "-X", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", sql],
                             env=dict(os.environ, PGPASSWORD=self.password, PGCONNECT_TIMEOUT="10"),
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"psql failed ({out.returncode}): {out.stderr.strip()}\n{sql}")
        return [line.split("\t") for line in out.stdout.splitlines() if line]


def stop_group(proc: subprocess.Popen, sig: int = signal.SIGINT, grace: float = 30.0) -> None:
    """Stop a process started with ``start_new_session=True`` and everything it started: ``sig`` to its
    process group, then, after ``grace`` seconds, SIGKILL to that group and to the group of every
    descendant that is still there (PostgreSQL's backends and Dagster's run workers' environment
    workers each lead a group of their own; their parents normally stop them first)."""
    import psutil

    try:
        tree = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        tree = []
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    for pgid in {proc.pid} | {_pgid(p) for p in tree if p.is_running()} - {None}:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)
    psutil.wait_procs(tree, timeout=30)


def _pgid(p) -> int | None:
    try:
        return os.getpgid(p.pid)
    except ProcessLookupError:
        return None


@contextmanager
def running(start_timeout: float = 60.0) -> Iterator[Postgres]:
    """A fresh cluster, serving until the block ends; then stopped (fast shutdown: SIGINT to its
    process group, SIGKILL after 30 s) and its folder removed."""
    bins = bindir()
    if bins is None:
        unavailable("PostgreSQL is not installed (scripts/setup.sh installs Debian's postgresql when run as root; "
                    "or set ACT_PG_BINDIR)")
    as_user = _server_user()
    # not under pytest's tmp_path: that is private to the test user, and the server's user must reach it
    base = Path(tempfile.mkdtemp(prefix="act-pg-"))
    try:
        password = secrets.token_hex(16)
        (base / "pwfile").write_text(password + "\n")
        if as_user:
            for p in (base, base / "pwfile"):
                os.chown(p, as_user["user"], as_user["group"])
        subprocess.run([str(bins / "initdb"), "-D", str(base / "data"), "-U", USER, f"--pwfile={base / 'pwfile'}",
                        "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync"],
                       check=True, capture_output=True, timeout=120, **as_user)
        (base / "pwfile").unlink()
        for attempt in range(3):  # a free port can be taken between choosing and binding it
            port = free_port()
            with open(base / "server.log", "ab") as log:
                proc = subprocess.Popen(
                    [str(bins / "postgres"), "-D", str(base / "data"), "-c", "listen_addresses=127.0.0.1",
                     "-c", f"port={port}", "-c", f"unix_socket_directories={base}", "-c", "fsync=off"],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    start_new_session=True, **as_user)  # its own process group: stopped as one
            try:
                deadline, ready = time.time() + start_timeout, False
                while not ready and proc.poll() is None and time.time() < deadline:
                    ready = subprocess.run([str(bins / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)],
                                           timeout=30).returncode == 0
                    time.sleep(0 if ready else 0.2)
                if proc.poll() is not None:
                    if attempt < 2:
                        continue
                    raise RuntimeError(f"postgres exited ({proc.returncode}):\n{(base / 'server.log').read_text()}")
                if not ready:
                    raise RuntimeError(f"postgres not ready in {start_timeout:.0f} s:\n"
                                       f"{(base / 'server.log').read_text()}")
                pg = Postgres(bins, port, password)
                pg.psql(f"CREATE DATABASE {DB}", db="postgres")
                yield pg
                return
            finally:
                stop_group(proc)
    finally:
        shutil.rmtree(base, ignore_errors=True)
