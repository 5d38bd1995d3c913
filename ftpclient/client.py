"""``FileTransferClient``: the protocol from the client's side, as a library.

Every method sends one request, follows its handshake and returns a value or
raises: :class:`~ftpproto.errors.RemoteError` for an error reply,
:class:`LocalError` for a problem with a local file, ``ConnectionError`` or
``TimeoutError`` when the connection is lost.  Nothing here prints or prompts.

Downloads are written to ``<local>.part`` and renamed into place only when
the BLAKE3 digest matches, so a failed download never leaves a truncated file under
the real name.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import posixpath
import socket
import stat
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Protocol

from ftpfiles.files import BackgroundDigest, GuardedWriter, file_digest
from ftpproto.channel import SENDFILE_MIN, Channel
from ftpproto.digest import Hasher
from ftpproto.errors import ConnectionClosed, MessageError, ProtocolError, ServerClosed
from ftpproto.handshake import ClientGet, ClientPut
from ftpproto.keylogin import (
    ALGORITHM,
    NO_BINDING,
    certificate_binding,
    decode_field,
    encode_field,
    signed_data,
)
from ftpproto.messages import Message, parse_digest, parse_size, request

if TYPE_CHECKING:
    import ssl

    from ftpclient.pipelined import FileOutcome, MonitorFor

__all__ = [
    "PART_SUFFIX",
    "Entry",
    "FileTransferClient",
    "LocalError",
    "Monitor",
    "Quota",
    "Signer",
    "Stat",
    "TransferResult",
    "TreeEntry",
    "tls_context",
]

PART_SUFFIX = ".part"
FAREWELL_WAIT = 2.0  # seconds to read why the server closed a connection mid-transfer


class Monitor(Protocol):
    """Told how a transfer advances (a progress bar, for instance)."""

    def start(self, total: int, done: int) -> None:
        """The file has ``total`` bytes, ``done`` of them there already (a resume)."""

    def update(self, count: int) -> None:
        """``count`` more bytes moved."""

    def close(self) -> None:
        """The transfer ended, well or not."""


class Signer(Protocol):
    """A private key for :meth:`FileTransferClient.login_key` (see ``ftpclient.identity``)."""

    @property
    def blob(self) -> bytes:
        """The public key in OpenSSH's wire form."""

    def sign(self, data: bytes) -> bytes:
        """The Ed25519 signature of ``data``."""


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
class TreeEntry:
    """One entry of a remote tree (``tree``): ``path`` relative to its root, ``/``-separated."""

    type: str  # file, dir, link or other
    path: str
    size: int
    mtime: int
    blake3: str | None  # with digests=True, for a file whose digest the server knew or made


@dataclass(frozen=True)
class TransferResult:
    """What a finished, verified transfer moved."""

    remote: str
    local: str
    size: int
    blake3: str
    seconds: float
    offset: int = 0  # where a resumed transfer started


@dataclass(frozen=True)
class Stat:
    """Facts about one remote path."""

    path: str
    type: str
    size: int
    mtime: int
    blake3: str | None = None


@dataclass(frozen=True)
class Quota:
    """A user's space on the server."""

    used: int
    limit: int | None
    available: int


def _open_part(part: str, offset: int) -> int:
    """Open and lock the ``.part`` file, cut to ``offset`` bytes and positioned there.

    The lock makes a second download into the same file fail at once rather
    than mix its bytes into this one (or truncate the file under it).
    """
    while True:
        fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise BlockingIOError(errno.EWOULDBLOCK, "another download is writing") from None
            st = os.fstat(fd)
            if not _names(part, st):
                os.close(fd)  # renamed into place by the download that held the lock
                continue
            if st.st_size != offset:
                # Only when needed: on ext4, truncating a file makes its close flush it.
                os.ftruncate(fd, offset)
            os.lseek(fd, offset, os.SEEK_SET)
        except BaseException:
            os.close(fd)
            raise
        return fd


def _names(path: str, st: os.stat_result) -> bool:
    """Whether ``path`` is still the file whose status is ``st``."""
    try:
        return os.path.samestat(st, os.stat(path))
    except FileNotFoundError:
        return False


def _local_error(exc: OSError, path: str) -> LocalError:
    return LocalError(f"{exc.strerror or exc}: {path}")


class FileTransferClient:
    """A connection to a FileTransfer server."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout: float | None = 60.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """Connect; with ``tls`` the server's certificate is verified against ``host``."""
        self.host = host
        self.port = port
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            try:
                sock = tls.wrap_socket(sock, server_hostname=host)
            except BaseException:
                sock.close()
                raise
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
        return self.channel.recv().check_reply(command)

    # -- session -------------------------------------------------------------

    def login(self, user: str, password: str) -> str:
        """Log in; returns the user name the server confirmed."""
        (name,) = self._call("login", user, password).expect("login", "ok", 1)
        self.user = name
        return name

    def login_key(self, user: str, key: Signer) -> str:
        """Log in with a public key: sign this connection's challenge (PROTOCOL.md 4.1.1)."""
        (text,) = self._call("challenge").expect("challenge", "ok", 1)
        try:
            challenge = decode_field(text, "the challenge")
        except ValueError as exc:
            raise MessageError(str(exc)) from None
        import ssl  # here, not at the top: it costs 5-10 ms at every start

        sock = self.channel.sock
        der = sock.getpeercert(binary_form=True) if isinstance(sock, ssl.SSLSocket) else None
        binding = certificate_binding(der) if der else NO_BINDING
        signature = key.sign(signed_data(challenge, user, key.blob, binding))
        reply = self._call(
            "login_key", user, ALGORITHM, encode_field(key.blob), encode_field(signature)
        )
        (name,) = reply.expect("login_key", "ok", 1)
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
        return self.read_listing()

    def read_listing(self) -> list[Entry]:
        """The answer to an ``ls`` request already sent (several may be pipelined), sorted."""
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

    def tree(self, path: str, digests: bool = False) -> list[TreeEntry]:
        """Every file and folder under the remote folder ``path``, in one request.

        Folders come before what they hold; with ``digests`` each file's
        BLAKE3 digest too (None where the server could not give one).
        """
        self.channel.send(request("tree", path, *(["blake3"] if digests else [])))
        entries: list[TreeEntry] = []
        while True:
            reply = self._reply("tree")
            if reply.status != "entry":
                (count,) = reply.expect("tree", "ok", 1)
                if parse_size(count) != len(entries):
                    raise MessageError("tree count does not match the entries received")
                return entries
            kind, relative, size, mtime, hexdigest = reply.expect("tree", "entry", 5)
            known = parse_digest(hexdigest) if hexdigest != "-" else None
            entries.append(TreeEntry(kind, relative, parse_size(size), parse_size(mtime), known))

    def touch(self, path: str, mtime: int) -> None:
        """Set a remote file's (or folder's) modification time, in seconds since the epoch."""
        self._call("touch", path, str(mtime)).expect("touch", "ok", 2)

    def touch_many(self, items: list[tuple[str, int]], window: int = 128) -> list[Exception | None]:
        """:meth:`touch` for many paths, ``window`` requests in flight: one error (or None) each."""
        outcomes: list[Exception | None] = []
        for start in range(0, len(items), window):
            chunk = items[start : start + window]
            self.channel.send(*(request("touch", path, str(mtime)) for path, mtime in chunk))
            for _ in chunk:
                try:
                    self._reply("touch").expect("touch", "ok", 2)
                    outcomes.append(None)
                except ProtocolError as exc:
                    outcomes.append(exc)
        return outcomes

    # -- transfers -----------------------------------------------------------

    def get(
        self,
        remote: str,
        local: str | None = None,
        monitor: Monitor | None = None,
        resume: bool = False,
    ) -> TransferResult:
        """Download ``remote`` to ``local`` (default: its name in the current folder).

        Data goes to ``<local>.part``, renamed into place once the digest of
        the whole file matched.  An interrupted download (connection lost,
        Ctrl-C) keeps the ``.part`` file; with ``resume=True`` it is continued
        if the server's file starts with the same bytes, else started over.
        """
        target = _local_target(local, remote)
        part = target + PART_SUFFIX
        started = time.monotonic()
        offer: tuple[int, Hasher] | None = None
        if resume and os.path.isfile(part):
            with open(part, "rb") as existing:
                prefix, have = file_digest(existing, 0, os.fstat(existing.fileno()).st_size)
            offer = (have, prefix)
        handshake = ClientGet(remote, offer)
        self.channel.send(handshake.request())
        try:
            handshake.ready(self.channel.recv())
        except MessageError:
            if handshake.state == "ready":  # a ready that does not fit: call it off
                self.channel.send(handshake.abort())
            raise
        count, offset = handshake.count, handshake.offset
        try:
            fd = _open_part(part, offset)
        except OSError as exc:
            self.channel.send(handshake.abort())
            raise _local_error(exc, part) from exc
        keep_part = True
        try:
            writer = GuardedWriter(fd)
            self.channel.send(handshake.recv_ready())
            if monitor:
                monitor.start(offset + count, offset)
            update = monitor.update if monitor else None
            self.channel.recv_file(writer, count, handshake.hasher, update)
            keep_part = False  # every byte arrived: only a verified file is kept now
            claimed = handshake.check(self.channel.recv())
            if writer.error is not None:
                raise _local_error(writer.error, part)
            os.replace(part, target)  # still locked: no other download can open it meanwhile
            os.close(fd)
            fd = -1
        except BaseException:
            if fd >= 0:
                os.close(fd)
            if not keep_part:
                with contextlib.suppress(OSError):
                    os.unlink(part)
            raise
        finally:
            if monitor:
                monitor.close()
        return TransferResult(remote, target, count, claimed, time.monotonic() - started, offset)

    def put(
        self,
        local: str,
        remote: str | None = None,
        monitor: Monitor | None = None,
        resume: bool = False,
    ) -> TransferResult:
        """Upload ``local`` to ``remote`` (default: its name in the remote folder).

        With ``resume=True`` an interrupted upload the server kept is
        continued if it matches the start of the local file, else started over.
        """
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
            offer: tuple[int, Hasher] | None = None
            if resume:
                have = self.partial(target)
                if 0 < have <= st.st_size:
                    offer = (have, file_digest(source, 0, have)[0])
            handshake = ClientPut(target, st.st_size, offer)
            self.channel.send(handshake.request())
            reply = self.channel.recv()
            try:
                handshake.ready(reply)
            except MessageError as exc:
                if reply.status != "ready":
                    raise
                self.close()  # the server waits for data this client cannot make sense of
                raise ConnectionAbortedError(f"bad reply from the server: {exc}") from exc
            count, offset = handshake.count, handshake.offset
            source.seek(offset)
            if monitor:
                monitor.start(offset + count, offset)
            try:
                sent = self._send(source, offset, count, handshake.hasher, monitor)
            finally:
                if monitor:
                    monitor.close()
            if sent < count:
                self.channel.send(handshake.abort())
                handshake.aborted(self.channel.recv())
                raise LocalError(f"file shrank while it was sent: {local}")
            try:
                self.channel.send(handshake.digest())
            except (ConnectionError, TimeoutError) as exc:  # the data fitted in the buffers
                self._raise_farewell(exc)
                raise
            claimed = handshake.check(self.channel.recv())
        return TransferResult(target, local, count, claimed, time.monotonic() - started, offset)

    def get_many(
        self, pairs: Iterable[tuple[str, str]], monitor_for: MonitorFor | None = None
    ) -> Iterator[FileOutcome]:
        """Download many ``(remote, local)`` pairs pipelined; one outcome per file, in order.

        See :func:`ftpclient.pipelined.get_many`.
        """
        from ftpclient.pipelined import get_many

        return get_many(self, pairs, monitor_for)

    def put_many(
        self,
        pairs: Iterable[tuple[str, str]],
        monitor_for: MonitorFor | None = None,
        stop_at_failure: bool = False,
    ) -> Iterator[FileOutcome]:
        """Upload many ``(remote, local)`` pairs pipelined; one outcome per file, in order.

        See :func:`ftpclient.pipelined.put_many`.
        """
        from ftpclient.pipelined import put_many

        return put_many(self, pairs, monitor_for, stop_at_failure)

    def partial(self, remote: str) -> int:
        """Bytes of an interrupted upload to ``remote`` the server keeps (0 if none)."""
        (size,) = self._call("partial", remote).expect("partial", "ok", 1)
        return parse_size(size)

    def _send(
        self, source: BinaryIO, offset: int, count: int, hasher: Hasher, monitor: Monitor | None
    ) -> int:
        """Send an upload's data, hashing it; the bytes read (fewer: the file shrank)."""
        update = monitor.update if monitor else None
        try:
            if count < SENDFILE_MIN:
                return self.channel.send_stream(source, count, hasher, update)
            # sendfile in this thread, the digest of the same bytes in a helper
            background = BackgroundDigest(source, offset, count, hasher)
            sent = 0
            try:
                sent = self.channel.send_file(source, offset, count, update, 1 << 20)
            finally:
                hashed = background.result()[1]
            return min(sent, hashed)
        except (ConnectionError, TimeoutError) as exc:
            self._raise_farewell(exc)
            raise

    def _raise_farewell(self, lost: BaseException) -> None:
        """After ``lost`` mid-upload: raise why the server closed, if it said so."""
        message = self.channel.last_message(FAREWELL_WAIT)
        if message is None or (message.command, message.status) != ("error", "error"):
            return
        try:
            message.raise_if_error()
        except ConnectionClosed as exc:
            raise exc from lost
        except ProtocolError as exc:
            raise ServerClosed(exc.text) from lost

    # -- managing files ------------------------------------------------------

    def mkdir(self, path: str, parents: bool = False) -> str:
        """Create a remote folder (and its parents with ``parents=True``)."""
        (made,) = self._call("mkdir", path, *(["parents"] if parents else [])).expect(
            "mkdir", "ok", 1
        )
        return made

    def rmdir(self, path: str) -> str:
        """Remove an empty remote folder."""
        (removed,) = self._call("rmdir", path).expect("rmdir", "ok", 1)
        return removed

    def rm(self, path: str, recursive: bool = False) -> tuple[int, int]:
        """Remove a remote file, or a tree with ``recursive=True``; ``(files, bytes)`` removed."""
        files, freed, _ = self.rm_counts(path, recursive)
        return files, freed

    def rm_counts(self, path: str, recursive: bool = False) -> tuple[int, int, int]:
        """:meth:`rm`, returning ``(files, bytes, folders)`` removed."""
        if not recursive:
            (files, freed) = self._call("rm", path).expect("rm", "ok", 2)
            return parse_size(files), parse_size(freed), 0
        reply = self._call("rm", path, "recursive", "folders")
        files, freed, folders = reply.expect("rm", "ok", 3)
        return parse_size(files), parse_size(freed), parse_size(folders)

    def mv(self, old: str, new: str, replace: bool = False) -> str:
        """Rename or move a remote file or folder; returns the new path.

        An existing target is refused, or with ``replace=True`` replaced atomically.
        """
        reply = self._call("mv", old, new, *(["replace"] if replace else []))
        (moved,) = reply.expect("mv", "ok", 1)
        return moved

    def stat(self, path: str, digest: bool = False) -> Stat:
        """Type, size, modification time (and a file's BLAKE3 digest on request)."""
        reply = self._call("stat", path, *(["blake3"] if digest else []))
        fields = reply.expect("stat", "ok", len(reply.fields) - 1)
        if len(fields) not in (3, 4):
            raise MessageError("malformed stat reply")
        digest_text = parse_digest(fields[3]) if len(fields) == 4 else None
        return Stat(path, fields[0], parse_size(fields[1]), parse_size(fields[2]), digest_text)

    def quota(self) -> Quota:
        """Bytes used, the quota (None for none) and bytes available."""
        used, limit, available = self._call("quota").expect("quota", "ok", 3)
        return Quota(
            parse_size(used), None if limit == "-" else parse_size(limit), parse_size(available)
        )


def tls_context(cafile: str | None = None) -> ssl.SSLContext:
    """A client TLS context: the system's trusted CAs (or ``cafile``), host name checked."""
    import ssl  # here, not at the top: only TLS needs it

    context = ssl.create_default_context(cafile=cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _local_target(local: str | None, remote: str) -> str:
    """Where a download goes: ``local``, or inside it if it is a folder."""
    name = posixpath.basename(remote.rstrip("/")) or "download"
    if not local:
        return name
    if os.path.isdir(local):
        return os.path.join(local, name)
    return local
