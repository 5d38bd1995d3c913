"""Real services started for the cluster tests and benchmarks: PostgreSQL and HAProxy.

* :class:`Postgres`: ``initdb`` + ``pg_ctl`` from the machine's PostgreSQL
  (on ``PATH``, ``/usr/local/bin`` or ``/usr/lib/postgresql/*/bin``) into a
  temporary folder, on 127.0.0.1 and a free port, without durability (a
  throwaway cluster), stopped by :meth:`Postgres.close`.  PostgreSQL refuses
  to run as root, so as root it runs as ``nobody`` through ``runuser``, which
  owns the data folder.
* :func:`start_haproxy`: Debian's ``haproxy`` running ``deploy/haproxy.cfg``
  in front of given nodes (the addresses go in its environment).

Used by ``tests/services.py`` (fixtures) and ``bench/cluster.py``.
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
import time
from pathlib import Path

__all__ = [
    "HAPROXY_CONFIG",
    "Postgres",
    "find_haproxy",
    "find_pg_bin",
    "free_port",
    "start_haproxy",
]

SERVICE_USER = "nobody"
HAPROXY_CONFIG = Path(__file__).resolve().parent.parent / "deploy" / "haproxy.cfg"


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


def find_haproxy() -> str | None:
    """The ``haproxy`` program, or None."""
    found = shutil.which("haproxy")
    if found is None and os.access("/usr/sbin/haproxy", os.X_OK):
        found = "/usr/sbin/haproxy"
    return found


def start_haproxy(
    binary: str, port: int, nodes: list[int], log: Path, **settings: str
) -> subprocess.Popen[bytes]:
    """HAProxy with ``deploy/haproxy.cfg`` on 127.0.0.1:``port`` before the node ports.

    ``settings`` are more of the file's variables (``FT_BALANCE``, ...).
    Returns once it accepts connections; raises RuntimeError if it exits.
    """
    if len(nodes) != 3:  # an unset FT_NODEn would send traffic to the example's 10.0.0.x
        raise ValueError(f"deploy/haproxy.cfg has three servers: {len(nodes)} node ports given")
    env = dict(os.environ)
    env.update(FT_LISTEN=f"127.0.0.1:{port}", FT_MAXCONN="1000", **settings)
    env.update({f"FT_NODE{i + 1}": f"127.0.0.1:{node}" for i, node in enumerate(nodes)})
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            [binary, "-db", "-f", str(HAPROXY_CONFIG)], env=env, stdout=handle, stderr=handle
        )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"haproxy exited: {log.read_text(errors='replace')}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"haproxy did not listen: {log.read_text(errors='replace')}")
