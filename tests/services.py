"""Real services for the cluster tests: a throwaway PostgreSQL and HAProxy.

* :func:`require` skips a test whose service is missing, with the reason,
  unless ``FT_REQUIRE_SERVICES=1`` (CI), where it fails instead: CI can
  never pass by skipping.
* :class:`Postgres`: ``initdb`` + ``pg_ctl`` from the machine's PostgreSQL
  (on ``PATH``, ``/usr/local/bin`` or ``/usr/lib/postgresql/*/bin``) into a
  temporary folder, on 127.0.0.1 and a free port, without durability (a
  test cluster), stopped afterwards.  PostgreSQL refuses to run as root, so
  when the tests run as root it runs as ``nobody`` through ``runuser``,
  which owns the data folder.
* ``postgres`` (one per test session) and ``pg_url`` (a fresh database per
  test) are fixtures: import them into a test module.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["Postgres", "find_pg_bin", "free_port", "pg_url", "postgres", "require"]

REQUIRED = os.environ.get("FT_REQUIRE_SERVICES", "").strip().lower() in ("1", "true", "yes")
SERVICE_USER = "nobody"


def require(found: object, reason: str) -> None:
    """Skip (by hand) or fail (``FT_REQUIRE_SERVICES=1``) unless ``found``."""
    if found:
        return
    if REQUIRED:
        pytest.fail(f"{reason} (FT_REQUIRE_SERVICES=1: a missing service is a failure)")
    pytest.skip(reason)


def free_port() -> int:
    """A TCP port on 127.0.0.1 free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_pg_bin() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``, or None."""
    candidates = [shutil.which("initdb"), "/usr/local/bin/initdb"]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            folder = Path(candidate).parent
            if (folder / "pg_ctl").exists():
                return folder
    return None


class Postgres:
    """A PostgreSQL cluster in a temporary folder, on 127.0.0.1:``port``."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="ft-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.databases = 0
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam(SERVICE_USER)
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._as_user = ["runuser", "-u", SERVICE_USER, "--"]
        self.root.chmod(0o755)

    def _run(self, *args: str, timeout: float = 60) -> None:
        done = subprocess.run(
            [*self._as_user, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {done.stderr or done.stdout}")

    def start(self) -> None:
        """initdb and start; raises RuntimeError with PostgreSQL's words if either fails."""
        self._run(
            str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", "postgres",
            "--auth=trust", "--no-sync", "-E", "UTF8",
        )  # fmt: skip
        self.run_ctl("start")

    def run_ctl(self, action: str) -> None:
        """``pg_ctl start`` or ``stop`` (fast), waiting for it to finish."""
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        args = [str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-w", "-t", "60"]
        if action == "start":
            args += ["-l", str(self.root / "postgres.log"), "-o", options, "start"]
        else:
            args += ["-m", "fast", "stop"]
        self._run(*args, timeout=90)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; its URL."""
        import psycopg

        self.databases += 1
        name = f"t{self.databases}_{os.getpid()}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.run_ctl("stop")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL cluster for the test session (skips or fails when there is none)."""
    bin_dir = find_pg_bin()
    require(bin_dir, "PostgreSQL is not installed (no initdb/pg_ctl; apt-get install postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        require(False, "psycopg is not installed (pip install '.[cluster]')")
    assert bin_dir is not None
    server = Postgres(bin_dir)
    try:
        server.start()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        server.close()
        require(False, f"the test PostgreSQL did not start: {exc}")
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def pg_url(postgres: Postgres) -> str:
    """The URL of a fresh, empty database for one test."""
    return postgres.create_database()
