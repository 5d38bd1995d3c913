"""The columns of the tree workloads: how each tool copies a tree or a file, as command lines.

Each column's :meth:`Column.serve` starts its server on a :class:`~bench.links.Link`
(ours: ``python -m ftpserver``; rsync and sftp: a private sshd; lftp: vsftpd)
and yields an :class:`Endpoint`, which builds the client command lines and
names where the server keeps what it received.  Every column serves the same
files from its own folder: ``tree`` (the test tree) and ``big.bin``.
"""

from __future__ import annotations

import contextlib
import shlex
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench import peers
from bench.environment import child_env
from bench.links import Link
from bench.servers import USER, Kind, our_config, ours_command, running

__all__ = ["COLUMNS", "Column", "Endpoint", "Shared"]

COLUMNS = ("ours", "ours-tls", "rsync", "sftp", "lftp")


@dataclass
class Shared:
    """What all columns share: folders, the benchmark user and the certificate."""

    tmp: Path
    users: Path  # our server's users file
    password: str
    cert: Path
    key: Path
    rounds: int  # bcrypt cost of the benchmark user
    homes: dict[str, Path] = field(default_factory=dict)  # column family -> served folder
    identity: Path | None = None  # ours' client key (the user's key), as ssh's columns use one


@dataclass
class Endpoint:
    """One started server of a column, and how its client is run against it."""

    column: str
    served: Path  # the real folder behind the client's remote names
    prefix: list[str]  # the client's side of the link
    env: dict[str, str]
    host: str
    port: int
    key: Path | None = None  # ssh client key
    tls: Path | None = None  # ours over TLS: the certificate to trust
    identity: Path | None = None  # ours: log in with this key instead of the password

    def _ours(self, command: str) -> list[str]:
        tls = ["--cafile", str(self.tls)] if self.tls else []
        key = ["--identity", str(self.identity)] if self.identity else []
        return [*self.prefix, sys.executable, "-m", "ftpclient", "--host", self.host,
                "--port", str(self.port), "--user", USER, "-q", *tls, *key,
                "-c", command]  # fmt: skip

    def _ssh(self) -> str:
        assert self.key is not None
        return shlex.join(["ssh", *peers.ssh_options(self.port, self.key)])

    def _sftp(self, batch: str) -> list[str]:
        assert self.key is not None
        script = self.served.parent / f"batch-{len(batch)}-{abs(hash(batch))}.txt"
        script.write_text(batch + "\n")
        options = peers.ssh_options(self.port, self.key)
        options[0] = "-P"  # sftp spells the port -P
        return [*self.prefix, "sftp", "-q", "-b", str(script), *options, f"root@{self.host}"]

    def _lftp(self, command: str) -> list[str]:
        script = f"set cmd:fail-exit yes; set net:max-retries 1; {command}; quit"
        return [*self.prefix, "lftp", "-u", "anonymous,", "-p", str(self.port), "-e", script,
                self.host]  # fmt: skip

    def _remote(self, name: str) -> str:
        """The client's name for ``name`` in the served folder."""
        if self.column.startswith("ours"):
            return name
        if self.column == "lftp":
            return f"/pub/{name}"
        return str(self.served / name)

    def upload_tree(self, local: Path, name: str) -> list[str]:
        """Copy the local folder ``local`` to a new remote folder ``name``."""
        remote = self._remote(name)
        if self.column.startswith("ours"):
            return self._ours(shlex.join(["put", "-r", str(local), remote]))
        if self.column == "rsync":
            return [*self.prefix, "rsync", "-a", "-e", self._ssh(), f"{local}/",
                    f"root@{self.host}:{remote}/"]  # fmt: skip
        if self.column == "sftp":
            return self._sftp(shlex.join(["put", "-r", str(local), remote]))
        return self._lftp(shlex.join(["mirror", "-R", str(local), remote]))

    def download_tree(self, name: str, local: Path) -> list[str]:
        """Copy the remote folder ``name`` to the new local folder ``local``."""
        remote = self._remote(name)
        if self.column.startswith("ours"):  # mirror keeps the times, as rsync -a and lftp do
            return self._ours(shlex.join(["mirror", remote, str(local)]))
        if self.column == "rsync":
            return [*self.prefix, "rsync", "-a", "-e", self._ssh(), f"root@{self.host}:{remote}/",
                    f"{local}/"]  # fmt: skip
        if self.column == "sftp":
            return self._sftp(shlex.join(["get", "-r", remote, str(local)]))
        return self._lftp(shlex.join(["mirror", remote, str(local)]))

    def mirror_tree(
        self, name: str, local: Path, by_digest: bool = False, rehash: bool = False
    ) -> list[str] | None:
        """Bring ``local`` (already a copy) up to date with ``name``; None: no such command.

        By size and modification time, as the peers' (``rsync -a``, lftp's
        ``mirror``) do; ``by_digest``: ours with ``-c`` (by BLAKE3, trusting
        the local digests its download kept), ``rehash``: with ``--rehash``
        too (every local file read).
        """
        if self.column.startswith("ours"):
            flags = (["-c", "--rehash"] if rehash else ["-c"]) if by_digest else []
            return self._ours(shlex.join(["mirror", *flags, self._remote(name), str(local)]))
        if by_digest:
            return None
        if self.column == "sftp":
            return None
        return self.download_tree(name, local)

    def session(self) -> list[str]:
        """Ours only: connect, log in, one local command, quit (the mirror target's baseline)."""
        return self._ours("lpwd")

    def get_file(self, name: str, local: Path) -> list[str]:
        """Download one file."""
        if self.column.startswith("ours"):
            return self._ours(shlex.join(["get", self._remote(name), str(local)]))
        return self._lftp(shlex.join(["get", self._remote(name), "-o", str(local)]))

    def put_file(self, local: Path, name: str) -> list[str]:
        """Upload one file."""
        if self.column.startswith("ours"):
            return self._ours(shlex.join(["put", str(local), self._remote(name)]))
        return self._lftp(shlex.join(["put", str(local), "-o", self._remote(name)]))


class Column:
    """How one column's server is started on a link."""

    def __init__(self, name: str, shared: Shared) -> None:
        self.name, self.shared = name, shared

    @property
    def family(self) -> str:
        """ours, ssh or ftp: which server, and so which served folder."""
        return {"rsync": "ssh", "sftp": "ssh", "lftp": "ftp"}.get(self.name, "ours")

    def _env(self) -> dict[str, str]:
        env = child_env()
        if self.shared.identity is None:  # with a key, a refused key fails rather than falls back
            env["FTPCLIENT_PASSWORD"] = self.shared.password
        env["XDG_CONFIG_HOME"] = str(self.shared.tmp / "xdg")  # no user config, no default key
        env["XDG_CACHE_HOME"] = str(self.shared.tmp / "xdg-cache")  # the run's digest caches
        return env

    @contextlib.contextmanager
    def serve(self, link: Link) -> Iterator[Endpoint]:
        """Start the server on ``link`` for the ``with`` block; stop it afterwards."""
        served = self.shared.homes[self.family]
        logs = self.shared.tmp / "logs"
        prefix = link.client_command([])
        env = self._env()
        if self.family == "ours":
            tls = (self.shared.cert, self.shared.key) if self.name == "ours-tls" else None
            config = our_config(logs / f"{self.name}-{link.name}.yaml", self.shared.users,
                                served.parent, self.shared.rounds, tls=tls,
                                host=link.server_host)  # fmt: skip
            command = tuple(link.server_command(list(ours_command(config))))
            kind = Kind(self.name, command, served, self.shared.password)
            with running(kind, logs) as server, link.reach([server.info.port]) as host:
                cafile = self.shared.cert if tls else None
                yield Endpoint(self.name, served, prefix, env, host, server.info.port, tls=cafile,
                               identity=self.shared.identity)  # fmt: skip
            return
        # free here and on the proxy's target; a fresh namespace has every port free
        hosts = ("127.0.0.1", link.server_host) if link.method == "proxy" else ("127.0.0.1",)
        if self.family == "ssh":
            port = peers.free_ports(1, hosts)[0]
            folder = Path(tempfile.mkdtemp(prefix="sshd-", dir=self.shared.tmp))
            sshd, key = peers.start_sshd(folder, link.server_host, port, link.server_command([]))
            try:
                with link.reach([port]) as host:
                    yield Endpoint(self.name, served, prefix, env, host, port, key=key)
            finally:
                sshd.stop()
            return
        ports = peers.free_ports(1 + peers.PASV_PORTS, hosts)
        advertise = "127.0.0.1" if link.method == "proxy" else None
        folder = Path(tempfile.mkdtemp(prefix="vsftpd-", dir=self.shared.tmp))
        vsftpd = peers.start_vsftpd(folder, served.parent, link.server_host, ports[0],
                                    ports[1:], advertise, link.server_command([]))  # fmt: skip
        try:
            with link.reach(ports) as host:
                yield Endpoint(self.name, served, prefix, env, host, ports[0])
        finally:
            vsftpd.stop()
