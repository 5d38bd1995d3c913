"""The transfer handshakes (docs/PROTOCOL.md, section 5), sans-IO, for both ends.

One object per transfer and side.  It takes the messages received and
returns the messages to send and the decisions (where the data starts, how
many bytes move, whether the digest matches); the caller moves the bytes.
Nothing here touches a socket or a file: the digest of a prefix comes
from a callback, so the same rules serve a local disk or any other storage.

==========  ============================  ===================================
side        ``get`` (download)            ``put`` (upload)
==========  ============================  ===================================
server      :class:`ServerGet` sends      :class:`ServerPut` receives
client      :class:`ClientGet` receives   :class:`ClientPut` sends
==========  ============================  ===================================

Each method may be called once, in the order the handshake runs (the order
of the methods below); calling one out of turn raises
:class:`HandshakeStateError`, a bug in the caller.  A message that does not
fit raises :class:`~ftpproto.errors.MessageError` (``400``); the server
answers it with an error reply and the session goes on.  On the client, an
``error`` reply raises :class:`~ftpproto.errors.RemoteError`.

Resuming: the side that holds the first part of the file offers its length
and digest (:data:`Resume`); :func:`download_start` and :func:`upload_start`
decide where the data starts, and the hasher they return already covers the
bytes before it, so the final digest is always of the whole file.
"""

from __future__ import annotations

from collections.abc import Callable

from ftpproto.commands import COMMANDS
from ftpproto.digest import Hasher, new_hasher
from ftpproto.errors import ErrorCode, MessageError, ProtocolError, RemoteError
from ftpproto.messages import (
    Message,
    abort,
    digest,
    parse_digest,
    parse_size,
    ready,
    recv_ready,
    request,
)

__all__ = [
    "ClientGet",
    "ClientPut",
    "HandshakeStateError",
    "PrefixDigest",
    "Resume",
    "ServerGet",
    "ServerPut",
    "abort_answered",
    "download_start",
    "parse_resume",
    "received_digest",
    "stored_digest",
    "upload_aborted",
    "upload_start",
]

Resume = tuple[int, str]  # offset, digest of the bytes before it
PrefixDigest = Callable[[int], Hasher]  # a hasher fed the first n bytes (to continue with the rest)


class HandshakeStateError(RuntimeError):
    """A handshake method called out of turn (a bug in the caller, not in the peer)."""


class _Machine:
    """The state of one handshake: each method moves it on, or raises HandshakeStateError."""

    def __init__(self) -> None:
        self.state = "start"

    def _move(self, method: str, before: str, after: str) -> None:
        if self.state != before:
            raise HandshakeStateError(
                f"{type(self).__name__}.{method} called in state {self.state}"
            )
        self.state = after

    @property
    def finished(self) -> bool:
        """Whether the handshake is over (done, aborted or failed)."""
        return self.state == "done"


def parse_resume(command: str, fields: tuple[str, ...]) -> Resume | None:
    """``(offset, prefix_digest)`` from a request's optional fields, or ``None``."""
    if not fields:
        return None
    if len(fields) != 2:
        spec = COMMANDS[command]
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"usage: {spec.usage} (both or neither)")
    return parse_size(fields[0]), parse_digest(fields[1])


def _verified(resume: Resume, prefix: PrefixDigest) -> tuple[int, Hasher]:
    hasher = prefix(resume[0])
    if hasher.hexdigest() == resume[1]:
        return resume[0], hasher
    return 0, new_hasher()


def download_start(resume: Resume | None, size: int, prefix: PrefixDigest) -> tuple[int, Hasher]:
    """Where a ``get`` of a ``size``-byte file starts, and the hasher to continue.

    At the offered offset if the file is at least that long and its first
    bytes have the offered digest (``prefix`` reads them); else at 0.
    """
    if resume is not None and resume[0] <= size:
        return _verified(resume, prefix)
    return 0, new_hasher()


def upload_start(
    resume: Resume | None, size: int, kept: int, prefix: PrefixDigest
) -> tuple[int, Hasher]:
    """Where a ``put`` of ``size`` bytes starts, given ``kept`` bytes of an interrupted one.

    At the offered offset if the kept part holds exactly that many bytes,
    no more than ``size``, with the offered digest (``prefix`` reads them);
    else at 0.
    """
    if resume is not None and kept == resume[0] <= size:
        return _verified(resume, prefix)
    return 0, new_hasher()


def _unexpected(message: Message, command: str, status: str) -> MessageError:
    return MessageError(f"expected {command}|{status}, got {message.command}|{message.status}")


class _Sender(_Machine):
    """A server's side of a download (``get``, ``fetch``): what ends it when the file changes."""

    path: str

    def file_changed(self) -> ProtocolError:
        """The error sent instead of the digest when the file changed while it was sent."""
        self._move("file_changed", "sending", "done")
        return ProtocolError(ErrorCode.FILE_CHANGED, f"file changed while sent: {self.path}")


def upload_aborted(path: str) -> ProtocolError:
    """``461``: the client aborted (or withdrew) the upload of ``path``."""
    return ProtocolError(ErrorCode.TRANSFER_ABORTED, f"upload aborted: {path}")


def received_digest(message: Message, command: str, hasher: Hasher, path: str) -> str:
    """The server's check of an upload's ``COMMAND|digest|BLAKE3`` (``put``, ``send``).

    Returns the digest of the bytes received; raises ``461`` for
    ``COMMAND|abort``, ``460`` for another digest and :class:`MessageError`
    for anything else.
    """
    if message == abort(command):
        raise upload_aborted(path)
    if message.command != command or message.status != "digest" or len(message.fields) != 2:
        raise _unexpected(message, command, "digest")
    hexdigest = hasher.hexdigest()
    if parse_digest(message.fields[1]) != hexdigest:
        raise ProtocolError(ErrorCode.DIGEST_MISMATCH, f"digest mismatch: {path}")
    return hexdigest


def stored_digest(reply: Message, command: str, size: int, hasher: Hasher, path: str) -> str:
    """The client's check of ``COMMAND|ok|SIZE|BLAKE3``: the server stored what was sent."""
    stored, claimed = reply.check_reply(command).expect(command, "ok", 2)
    if parse_size(stored) != size or claimed != hasher.hexdigest():
        raise RemoteError(ErrorCode.DIGEST_MISMATCH, f"server stored other bytes: {path}")
    return claimed


def abort_answered(reply: Message, command: str) -> None:
    """Take the answer to an upload's abort: the expected error, or raise what else came."""
    if reply.status != "error":
        reply.check_reply(command)


def _ready_message(command: str, count: int, resume: Resume | None, offset: int) -> Message:
    return ready(command, count, None if resume is None else offset)


class ServerGet(_Sender):
    """The server's side of ``get``: ``ready``, then the client's answer, then the digest.

    ``prefix`` reads the file's first bytes if the client offers to resume.
    After :meth:`answer` returned True the caller sends :attr:`count` bytes
    of the file from :attr:`offset`, feeding :attr:`hasher` (or using a
    digest it already knows), then sends :meth:`digest` - or, if the file
    changed meanwhile, the error :meth:`file_changed` instead.
    """

    def __init__(self, path: str, size: int, resume: Resume | None, prefix: PrefixDigest) -> None:
        super().__init__()
        self.path = path
        self.resume = resume
        self.offset, self.hasher = download_start(resume, size, prefix)
        self.count = size - self.offset

    def ready(self) -> Message:
        """``get|ready|COUNT`` (``|START`` when the client offered to resume)."""
        self._move("ready", "start", "ready")
        return _ready_message("get", self.count, self.resume, self.offset)

    def answer(self, message: Message) -> bool:
        """True for ``get|recv_ready`` (send the data), False for ``get|abort`` (end here)."""
        self._move("answer", "ready", "done")
        if message == recv_ready("get"):
            self.state = "sending"
            return True
        if message == abort("get"):
            return False
        raise _unexpected(message, "get", "recv_ready")

    def digest(self, hexdigest: str) -> Message:
        """``get|digest|BLAKE3``: the digest of the whole file, after the data."""
        self._move("digest", "sending", "done")
        return digest("get", hexdigest)


class ServerPut(_Machine):
    """The server's side of ``put``: ``ready``, the data, then the client's digest.

    ``offset`` and ``hasher`` come from :func:`upload_start` (the storage
    that keeps interrupted uploads reads their prefix).  After :meth:`ready`
    the caller receives :attr:`count` bytes into the upload, feeding
    :attr:`hasher`, then hands the next message to :meth:`check`; once the
    upload is stored, the command answers ``put|ok|SIZE|BLAKE3``.
    """

    def __init__(
        self, path: str, size: int, resume: Resume | None, offset: int, hasher: Hasher
    ) -> None:
        super().__init__()
        self.path = path
        self.size = size
        self.resume = resume
        self.offset = offset
        self.hasher = hasher
        self.count = size - offset

    def ready(self) -> Message:
        """``put|ready|COUNT`` (``|START`` when the client offered to resume)."""
        self._move("ready", "start", "receiving")
        return _ready_message("put", self.count, self.resume, self.offset)

    def check(self, message: Message) -> str:
        """The digest of the whole file if ``message`` is ``put|digest`` with it.

        Raises :class:`ProtocolError` ``461`` for ``put|abort`` and ``460``
        for another digest; :class:`MessageError` for anything else.  In
        every case the upload must be discarded unless this returns.
        """
        self._move("check", "receiving", "done")
        return received_digest(message, "put", self.hasher, self.path)


def _ready_reply(reply: Message, command: str, resume: Resume | None) -> tuple[int, int]:
    """``(count, start)`` from the reply to a transfer request; ``start`` is 0 or the offset."""
    reply.check_reply(command)
    fields = reply.expect(command, "ready", 1 if resume is None else 2)
    count = parse_size(fields[0])
    start = 0 if resume is None else parse_size(fields[1])
    if resume is not None and start not in (0, resume[0]):
        raise MessageError(f"{command}|ready starts at {start}, neither 0 nor {resume[0]}")
    return count, start


def _offer(resume: tuple[int, Hasher] | None) -> tuple[Resume | None, Hasher]:
    if resume is None:
        return None, new_hasher()
    return (resume[0], resume[1].hexdigest()), resume[1]


class ClientGet(_Machine):
    """The client's side of ``get``: request, ``ready``, ``recv_ready`` or abort, data, digest.

    ``resume`` is ``(bytes held, hasher over them)`` to offer to continue a
    download.  After :meth:`ready` the caller receives :attr:`count` bytes
    into its file at :attr:`offset` (cut there first), feeding
    :attr:`hasher`, and hands the next message to :meth:`check`.
    """

    def __init__(self, path: str, resume: tuple[int, Hasher] | None = None) -> None:
        super().__init__()
        self.path = path
        self.resume, self._prefix = _offer(resume)
        self.offset = self.count = 0
        self.hasher = new_hasher()

    def request(self) -> Message:
        """``get|PATH`` (``|OFFSET|PREFIX_BLAKE3`` to resume)."""
        self._move("request", "start", "requested")
        return request("get", self.path, *_resume_fields(self.resume))

    def ready(self, reply: Message) -> None:
        """Take the ``get|ready`` reply: sets :attr:`count`, :attr:`offset` and :attr:`hasher`.

        After a ``get|ready`` whose fields do not fit (:class:`MessageError`)
        the server still waits for an answer: send :meth:`abort`.
        """
        self._move("ready", "requested", "done")
        if (reply.command, reply.status) == ("get", "ready"):
            self.state = "ready"
        self.count, self.offset = _ready_reply(reply, "get", self.resume)
        self.hasher = self._prefix if self.offset else new_hasher()

    def recv_ready(self) -> Message:
        """``get|recv_ready``: send the data."""
        self._move("recv_ready", "ready", "receiving")
        return recv_ready("get")

    def abort(self) -> Message:
        """``get|abort``, instead of :meth:`recv_ready`: the server sends nothing more."""
        self._move("abort", "ready", "done")
        return abort("get")

    def check(self, reply: Message) -> str:
        """The digest, if the ``get|digest`` after the data matches the bytes received.

        Raises :class:`RemoteError` for an error reply (``462``: the file
        changed while sent) and ``460`` for another digest.
        """
        self._move("check", "receiving", "done")
        reply.check_reply("get")
        (claimed,) = reply.expect("get", "digest", 1)
        if parse_digest(claimed) != self.hasher.hexdigest():
            raise RemoteError(ErrorCode.DIGEST_MISMATCH, f"digest mismatch: {self.path}")
        return claimed


class ClientPut(_Machine):
    """The client's side of ``put``: request, ``ready``, data, digest or abort, result.

    ``resume`` is ``(bytes the server kept, hasher over that many bytes of
    the local file)``.  After :meth:`ready` the caller sends :attr:`count`
    bytes of its file from :attr:`offset`, feeding :attr:`hasher`, then
    :meth:`digest` and :meth:`check` of the reply - or, if it could not
    send them all, :meth:`abort` and :meth:`aborted` of the reply.
    """

    def __init__(self, path: str, size: int, resume: tuple[int, Hasher] | None = None) -> None:
        super().__init__()
        self.path = path
        self.size = size
        self.resume, self._prefix = _offer(resume)
        self.offset = self.count = 0
        self.hasher = new_hasher()

    def request(self) -> Message:
        """``put|PATH|SIZE`` (``|OFFSET|PREFIX_BLAKE3`` to resume)."""
        self._move("request", "start", "requested")
        return request("put", self.path, str(self.size), *_resume_fields(self.resume))

    def ready(self, reply: Message) -> None:
        """Take the ``put|ready`` reply: sets :attr:`count`, :attr:`offset` and :attr:`hasher`.

        After a ``put|ready`` that does not fit (:class:`MessageError`) the
        server waits for data the client cannot know: close the connection.
        """
        self._move("ready", "requested", "done")
        self.count, self.offset = _ready_reply(reply, "put", self.resume)
        if self.offset + self.count != self.size:
            raise MessageError(f"put|ready announces {self.count} bytes from {self.offset}")
        self.hasher = self._prefix if self.offset else new_hasher()
        self.state = "sending"

    def digest(self) -> Message:
        """``put|digest|BLAKE3`` of the whole file, after the data."""
        self._move("digest", "sending", "sent")
        return digest("put", self.hasher.hexdigest())

    def abort(self) -> Message:
        """``put|abort`` after the data (padded to the count), when the file could not be read."""
        self._move("abort", "sending", "aborting")
        return abort("put")

    def check(self, reply: Message) -> str:
        """The digest, if the server stored exactly the size and bytes sent.

        Raises :class:`RemoteError` for an error reply, and ``460`` if the
        server reports another size or digest.
        """
        self._move("check", "sent", "done")
        return stored_digest(reply, "put", self.size, self.hasher, self.path)

    def aborted(self, reply: Message) -> None:
        """Take the server's answer to :meth:`abort` (``put|error|461|...``, expected)."""
        self._move("aborted", "aborting", "done")
        abort_answered(reply, "put")


def _resume_fields(resume: Resume | None) -> tuple[str, ...]:
    return () if resume is None else (str(resume[0]), resume[1])
