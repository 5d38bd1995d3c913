"""One client interface over the three protocols, so every workload is written once.

* ours: :class:`ftpclient.client.FileTransferClient` (plain TCP or TLS); a
  download is verified with BLAKE3 by the client, an upload by the server
  and the client.
* ftp: Python's ``ftplib`` against pyftpdlib, used as efficiently as ftplib
  allows: binary type set once, downloads received with ``recv_into`` into a
  reused 256 KiB buffer (``retrbinary`` would use 8 KiB reads), uploads with
  ``storbinary`` in 256 KiB blocks, listings read straight from the data
  connection without the ``TYPE A`` that ``retrlines`` sends each time.
* plain: :mod:`bench.plain`, one connection per transfer, no login.

:func:`open_session` connects and (by default) logs in.
"""

from __future__ import annotations

import ftplib
import os
import socket
import ssl
from typing import Protocol

from bench import plain
from bench.servers import ServerInfo

__all__ = ["Session", "open_session", "tls_for"]

RECV_BUFFER = 256 * 1024
TIMEOUT = 300.0


class Session(Protocol):
    """A connection to one server, as the workloads use it."""

    def login(self) -> None:
        """Log in as the benchmark user."""

    def download(self, remote: str, local: str) -> int:
        """Fetch ``remote`` into ``local``; the bytes received."""

    def upload(self, local: str, remote: str) -> int:
        """Send ``local`` as ``remote``; the bytes sent."""

    def pwd(self) -> None:
        """Ask for the working folder."""

    def ls(self, path: str) -> int:
        """List ``path``; the number of entries."""

    def quit(self) -> None:
        """Say goodbye and close."""

    def close(self) -> None:
        """Close without a goodbye."""


def tls_for(info: ServerInfo) -> ssl.SSLContext | None:
    """The client TLS context for ``info`` (None for plain TCP)."""
    if info.cafile is None:
        return None
    from ftpclient.client import tls_context

    return tls_context(info.cafile)


class OursSession:
    """Our client library."""

    def __init__(self, info: ServerInfo, tls: ssl.SSLContext | None) -> None:
        from ftpclient.client import FileTransferClient

        self.info = info
        self.client = FileTransferClient(info.host, info.port, timeout=TIMEOUT, tls=tls)
        self.last_digest = ""

    def login(self) -> None:
        self.client.login(self.info.user, self.info.password)

    def download(self, remote: str, local: str) -> int:
        result = self.client.get(remote, local)
        self.last_digest = result.blake3
        return result.size

    def upload(self, local: str, remote: str) -> int:
        result = self.client.put(local, remote)
        self.last_digest = result.blake3
        return result.size

    def pwd(self) -> None:
        self.client.pwd()

    def ls(self, path: str) -> int:
        return len(self.client.ls(path))

    def quit(self) -> None:
        self.client.quit()

    def close(self) -> None:
        self.client.close()


class FtpSession:
    """ftplib against pyftpdlib."""

    def __init__(self, info: ServerInfo) -> None:
        self.info = info
        self.ftp = ftplib.FTP()
        self.ftp.connect(info.host, info.port, timeout=TIMEOUT)
        assert self.ftp.sock is not None
        self.ftp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._binary = False
        self.last_digest = ""

    def login(self) -> None:
        self.ftp.login(self.info.user, self.info.password)

    def _type_binary(self) -> None:
        if not self._binary:
            self.ftp.voidcmd("TYPE I")
            self._binary = True

    def download(self, remote: str, local: str) -> int:
        self._type_binary()
        buffer = bytearray(RECV_BUFFER)
        view = memoryview(buffer)
        total = 0
        fd = os.open(local, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            with self.ftp.transfercmd(f"RETR {remote}") as conn:
                while True:
                    count = conn.recv_into(view)
                    if not count:
                        break
                    chunk = view[:count]
                    while chunk:
                        chunk = chunk[os.write(fd, chunk) :]
                    total += count
        finally:
            os.close(fd)
        self.ftp.voidresp()
        return total

    def upload(self, local: str, remote: str) -> int:
        self._type_binary()
        with open(local, "rb") as source:
            self.ftp.storbinary(f"STOR {remote}", source, blocksize=RECV_BUFFER)
        return os.path.getsize(local)

    def pwd(self) -> None:
        self.ftp.pwd()

    def ls(self, path: str) -> int:
        data = bytearray()
        with self.ftp.transfercmd(f"LIST {path}") as conn:
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
        self.ftp.voidresp()
        return data.count(b"\n")

    def quit(self) -> None:
        try:
            self.ftp.quit()
        finally:
            self.ftp.close()

    def close(self) -> None:
        self.ftp.close()


class PlainSession:
    """The plain-socket limit: a new connection per transfer, nothing else."""

    def __init__(self, info: ServerInfo) -> None:
        self.info = info
        self.last_digest = ""

    def login(self) -> None:
        pass

    def download(self, remote: str, local: str) -> int:
        return plain.download(self.info.host, self.info.port, remote, local, TIMEOUT)

    def upload(self, local: str, remote: str) -> int:
        return plain.upload(self.info.host, self.info.port, local, remote, TIMEOUT)

    def pwd(self) -> None:
        raise NotImplementedError("the plain limit has no commands")

    def ls(self, path: str) -> int:
        raise NotImplementedError("the plain limit has no commands")

    def quit(self) -> None:
        pass

    def close(self) -> None:
        pass


def open_session(
    info: ServerInfo, login: bool = True, tls: ssl.SSLContext | None = None
) -> OursSession | FtpSession | PlainSession:
    """Connect to ``info`` (``tls``: a context to reuse) and log in unless told not to."""
    session: OursSession | FtpSession | PlainSession
    if info.protocol == "ours":
        session = OursSession(info, tls if tls is not None else tls_for(info))
    elif info.protocol == "ftp":
        session = FtpSession(info)
    else:
        session = PlainSession(info)
    if login:
        try:
            session.login()
        except BaseException:
            session.close()
            raise
    return session
