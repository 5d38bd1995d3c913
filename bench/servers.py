"""Start and stop the servers under test, each as its own subprocess.

A :class:`Kind` says how to start one server (ours, ours over TLS, ours with
fsync, pyftpdlib, the plain-socket limit) and where its user's home is.
:func:`start` runs it, waits for its ``listening on HOST:PORT`` line and
returns a :class:`Running` server; :meth:`Running.stop` ends it (SIGTERM, then
SIGKILL) and is safe to call twice.  Use :func:`running` as a context manager
so no server outlives a failed run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.environment import REPO_ROOT, child_env

__all__ = ["Kind", "Running", "ServerInfo", "our_config", "running", "start"]

USER = "bench"


@dataclass(frozen=True)
class ServerInfo:
    """What a client needs to reach a server (JSON-friendly, passed to load workers)."""

    kind: str  # ours, ours-tls, ours-fsync, pyftpdlib or plain
    host: str
    port: int
    user: str
    password: str
    cafile: str | None = None  # TLS: the certificate to trust

    @property
    def protocol(self) -> str:
        """``ours``, ``ftp`` or ``plain``: which client speaks to it."""
        if self.kind.startswith("ours"):
            return "ours"
        return "ftp" if self.kind == "pyftpdlib" else "plain"


@dataclass(frozen=True)
class Kind:
    """How to start one kind of server."""

    name: str
    command: tuple[str, ...]
    home: Path  # the benchmark user's home folder (where its files are)
    password: str = ""
    cafile: str | None = None


@dataclass
class Running:
    """A started server process."""

    kind: Kind
    process: subprocess.Popen[bytes]
    info: ServerInfo
    log_path: Path
    _stopped: bool = field(default=False)

    @property
    def pid(self) -> int:
        """The server's process id (the interpreter itself, no shell between)."""
        return self.process.pid

    def stop(self) -> None:
        """SIGTERM, wait up to 10 s, then SIGKILL; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def log_tail(self, lines: int = 20) -> str:
        """The end of the server's stdout and stderr (for error messages)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def our_config(
    path: Path,
    users: Path,
    home_root: Path,
    rounds: int,
    fsync: bool = False,
    tls: tuple[Path, Path] | None = None,
    workers: int | None = None,
    host: str = "127.0.0.1",
) -> Path:
    """Write the ``server.yaml`` the benchmark runs our server with; return its path."""
    lines = [
        f"host: {host}",
        "port: 0",
        f"users: {users}",
        f"home: {home_root}",
        "listen_backlog: 256",
        "max_sessions: 20000",
        "max_sessions_per_ip: 20000",
        "min_transfer_rate: 0",
        f"bcrypt_rounds: {rounds}",
        f"fsync_uploads: {'true' if fsync else 'false'}",
        "log_level: WARNING",
        "shutdown_grace: 2",
    ]
    if workers is not None:
        lines.append(f"workers: {workers}")
    if tls is not None:
        lines += [f"tls_cert: {tls[0]}", f"tls_key: {tls[1]}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def start(kind: Kind, logs: Path, timeout: float = 60.0) -> Running:
    """Start ``kind`` and wait until it listens; raise RuntimeError if it does not."""
    log_path = logs / f"{kind.name}-{time.monotonic_ns()}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            kind.command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(logs),
            env=child_env(),
        )
    placeholder = ServerInfo(kind.name, "127.0.0.1", 0, USER, kind.password, kind.cafile)
    server = Running(kind, process, placeholder, log_path)
    try:
        deadline = time.monotonic() + timeout
        while True:
            for line in log_path.read_text(errors="replace").splitlines():
                if line.startswith("listening on "):
                    host, _, port = line[len("listening on ") :].rpartition(":")
                    server.info = ServerInfo(
                        kind.name, host, int(port), USER, kind.password, kind.cafile
                    )
                    return server
            if process.poll() is not None:
                raise RuntimeError(f"{kind.name} exited with {process.returncode}:\n"
                                   + server.log_tail())  # fmt: skip
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind.name} did not start in {timeout} s:\n"
                                   + server.log_tail())  # fmt: skip
            time.sleep(0.02)
    except BaseException:
        server.stop()
        raise


@contextlib.contextmanager
def running(kind: Kind, logs: Path) -> Iterator[Running]:
    """Start ``kind`` for the ``with`` block and stop it afterwards, whatever happens."""
    server = start(kind, logs)
    try:
        yield server
    finally:
        server.stop()


def ours_command(config: Path) -> tuple[str, ...]:
    """The command line of our server with ``config``."""
    return (sys.executable, "-m", "ftpserver", "serve", "--config", str(config), "--port", "0")


def plain_command(home: Path) -> tuple[str, ...]:
    """The command line of the plain-socket limit server."""
    return (sys.executable, "-m", "bench.plain", "--home", str(home), "--port", "0")


def pyftpd_command(python: Path, home: Path, password: str) -> tuple[str, ...]:
    """The command line of pyftpdlib in the benchmark's venv."""
    script = REPO_ROOT / "bench" / "pyftpd_server.py"
    return (
        str(python), str(script), "--home", str(home), "--user", USER,
        "--password", password, "--port", "0",
    )  # fmt: skip


def is_alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists (for the final check that nothing is left)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
