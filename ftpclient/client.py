"""``FileTransferClient``: the protocol from the client's side, as a library.

Every method sends one request, follows its handshake and returns a value or
raises: :class:`~ftpproto.errors.RemoteError` for an error reply,
:class:`LocalError` for a problem with a local file, ``ConnectionError`` or
``TimeoutError`` when the connection is lost.  Nothing here prints or prompts.

Downloads are written to ``<local>.part`` and renamed into place only when
the SHA-256 matches, so a failed download never leaves a truncated file under
the real name.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import socket
import stat
import time
from dataclasses import dataclass

from ftpproto.channel import Channel, GuardedWriter, Progress
from ftpproto.errors import ErrorCode, MessageError, RemoteError
from ftpproto.messages import (
    Message,
    abort,
    digest,
    parse_digest,
    parse_size,
    recv_ready,
    request,
)

__all__ = ["PART_SUFFIX", "Entry", "FileTransferClient", "LocalError", "TransferResult"]

PART_SUFFIX = ".part"


class LocalError(Exception):
    """A problem with a local file (the remote side is fine)."""


@dataclass(frozen=True)
class Entry:
    """One line of a remote listing."""

    name: str
    type: str  # file, dir, link or other
    size: int
    mtime: int  # seconds since the epoch


@dataclass(frozen=True)
class TransferResult:
    """What a finished, verified transfer moved."""

    remote: str
    local: str
    size: int
    sha256: str
    seconds: float


def _local_error(exc: OSError, path: str) -> LocalError:
    return LocalError(f"{exc.strerror or exc}: {path}")


class FileTransferClient:
    """A connection to a FileTransfer server."""

    def __init__(self, host: str, port: int, timeout: float | None = 60.0) -> None:
        self.host = host
        self.port = port
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.channel = Channel(sock)
        self.user: str | None = None

    def __enter__(self) -> FileTransferClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection without saying goodbye."""
        self.channel.close()

    def _call(self, command: str, *args: str) -> Message:
        """Send a request and return its reply; raise RemoteError for an error reply."""
        self.channel.send(request(command, *args))
        return self._reply(command)

    def _reply(self, command: str) -> Message:
        reply = self.channel.recv().raise_if_error()
        if reply.command != command:
            raise MessageError(f"expected a reply to {command}, got {reply.command}")
        return reply

    # -- session -------------------------------------------------------------

    def login(self, user: str, password: str) -> str:
        """Log in; returns the user name the server confirmed."""
        (name,) = self._call("login", user, password).expect("login", "ok", 1)
        self.user = name
        return name

    def quit(self) -> None:
        """Say goodbye and close the connection."""
        try:
            self._call("quit").expect("quit", "ok", 0)
        finally:
            self.close()

    def help(self, command: str | None = None) -> tuple[str, ...]:
        """The server's command names, or ``(usage, summary)`` for one command."""
        reply = self._call("help", *([command] if command else []))
        return reply.expect("help", "ok", len(reply.fields) - 1)

    # -- navigation ----------------------------------------------------------

    def pwd(self) -> str:
        """The remote working folder."""
        (path,) = self._call("pwd").expect("pwd", "ok", 1)
        return path

    def cd(self, path: str) -> str:
        """Change the remote working folder; returns the new one."""
        (new,) = self._call("cd", path).expect("cd", "ok", 1)
        return new

    def ls(self, path: str | None = None) -> list[Entry]:
        """List a remote folder (or one file), sorted by name."""
        self.channel.send(request("ls", *([path] if path is not None else [])))
        entries: list[Entry] = []
        while True:
            reply = self._reply("ls")
            if reply.status == "entry":
                name, kind, size, mtime = reply.expect("ls", "entry", 4)
                entries.append(Entry(name, kind, parse_size(size), parse_size(mtime)))
                continue
            (count,) = reply.expect("ls", "ok", 1)
            if parse_size(count) != len(entries):
                raise MessageError("listing count does not match the entries received")
            return sorted(entries, key=lambda e: e.name)

    # -- transfers -----------------------------------------------------------

    def get(
        self, remote: str, local: str | None = None, progress: Progress | None = None
    ) -> TransferResult:
        """Download ``remote`` to ``local`` (default: its name in the current folder)."""
        target = _local_target(local, remote)
        part = target + PART_SUFFIX
        started = time.monotonic()
        size = self._ready("get", remote)
        try:
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            self.channel.send(abort("get"))
            raise _local_error(exc, part) from exc
        try:
            writer = GuardedWriter(fd)
            self.channel.send(recv_ready("get"))
            hasher = hashlib.sha256()
            self.channel.recv_file(writer, size, hasher, progress)
            (claimed,) = self._reply("get").expect("get", "digest", 1)
            if parse_digest(claimed) != hasher.hexdigest():
                raise RemoteError(ErrorCode.DIGEST_MISMATCH, f"digest mismatch: {remote}")
            if writer.error is not None:
                raise _local_error(writer.error, part)
            os.close(fd)
            fd = -1
            os.replace(part, target)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(part)
            raise
        return TransferResult(remote, target, size, claimed, time.monotonic() - started)

    def put(
        self, local: str, remote: str | None = None, progress: Progress | None = None
    ) -> TransferResult:
        """Upload ``local`` to ``remote`` (default: its name in the remote folder)."""
        target = remote if remote else os.path.basename(local.rstrip(os.sep))
        started = time.monotonic()
        try:
            source = open(local, "rb", buffering=0)  # noqa: SIM115 - closed below
        except OSError as exc:
            raise _local_error(exc, local) from exc
        with source:
            st = os.fstat(source.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise LocalError(f"not a regular file: {local}")
            size = self._ready("put", target, str(st.st_size))
            hasher = hashlib.sha256()
            sent = self.channel.send_stream(source, size, hasher, progress)
            if sent < size:
                self.channel.send(abort("put"))
                with contextlib.suppress(RemoteError):
                    self._reply("put")
                raise LocalError(f"file shrank while it was sent: {local}")
            self.channel.send(digest("put", hasher.hexdigest()))
            stored, claimed = self._reply("put").expect("put", "ok", 2)
            if parse_size(stored) != size or claimed != hasher.hexdigest():
                raise RemoteError(ErrorCode.DIGEST_MISMATCH, f"server stored other bytes: {target}")
        return TransferResult(target, local, size, claimed, time.monotonic() - started)

    def _ready(self, command: str, *args: str) -> int:
        """Send a transfer request and return the size from the ``ready`` reply."""
        (size,) = self._call(command, *args).expect(command, "ready", 1)
        return parse_size(size)


def _local_target(local: str | None, remote: str) -> str:
    """Where a download goes: ``local``, or inside it if it is a folder."""
    name = posixpath.basename(remote.rstrip("/")) or "download"
    if not local:
        return name
    if os.path.isdir(local):
        return os.path.join(local, name)
    return local
