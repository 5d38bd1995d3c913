"""Pipelined transfers (docs/PROTOCOL.md, section 5.4), sans-IO, for both ends.

Many files in flight on one connection.  Each file keeps every guarantee
of the one-file handshakes (:mod:`ftpproto.handshake`): the server refuses
it before its data flows, the receiver checks its BLAKE3 digest, an upload
becomes visible only when complete; what goes away is the wait for a reply
before each step.

* ``window`` asks the server for its window: how many files and bytes a
  client may have in flight (:class:`Window`).
* Downloads: ``fetch|PATH`` is answered ``fetch|ready|SIZE``, the data and
  ``fetch|digest|BLAKE3`` at once (no ``recv_ready``), or ``fetch|error``.
  A client sends up to a window of them before reading the first answer.
* Uploads: ``offer|PATH|SIZE`` is answered ``offer|ready|SIZE`` (space and
  quota reserved, a window slot taken) or ``offer|error``; for each ready
  offer, oldest first, the client sends ``send``, the data and
  ``send|digest|BLAKE3`` (answered ``send|ok|SIZE|BLAKE3``), or
  ``send|abort`` to withdraw it without data.

One object per file and side, as in :mod:`ftpproto.handshake`; methods
called out of turn raise :class:`~ftpproto.handshake.HandshakeStateError`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ftpproto.digest import Hasher, new_hasher
from ftpproto.errors import ErrorCode, MessageError, ProtocolError, RemoteError
from ftpproto.handshake import (
    HandshakeStateError,
    _Machine,
    _Sender,
    abort_answered,
    received_digest,
    stored_digest,
    upload_aborted,
)
from ftpproto.messages import Message, abort, digest, ok, parse_digest, parse_size, ready, request

__all__ = [
    "REQUEST_BYTES",
    "ClientFetch",
    "ClientOffer",
    "HandshakeStateError",
    "ServerFetch",
    "ServerOffer",
    "Window",
    "parse_window",
    "window_reply",
]

# Bytes of requests a client leaves unanswered at most: they wait in the
# server's socket buffer while it sends, and must always fit there.
REQUEST_BYTES = 32 * 1024


@dataclass
class Window:
    """How many files and bytes may be in flight; what is in flight now.

    A file is admitted while fewer than :attr:`files` are in flight and its
    size fits in :attr:`size` bytes with the others' (a file bigger than
    the whole window goes alone).  The server counts an offered upload from
    reading its ``offer`` until it reads the file's ``send``; the client from its
    ``offer`` until it has sent that ``send`` (its data follows), so on one
    ordered stream the server never counts more than the client.
    """

    files: int
    size: int
    held_files: int = 0
    held_bytes: int = 0

    def admits(self, size: int) -> bool:
        """Whether a file of ``size`` bytes may be put in flight now."""
        if self.held_files >= self.files:
            return False
        return self.held_files == 0 or self.held_bytes + size <= self.size

    def take(self, size: int) -> None:
        """Count a file of ``size`` bytes as in flight."""
        self.held_files += 1
        self.held_bytes += size

    def give(self, size: int) -> None:
        """A file of ``size`` bytes is no longer in flight."""
        self.held_files -= 1
        self.held_bytes -= size

    def full(self) -> ProtocolError:
        """The server's refusal of an offer beyond the window (a client's mistake)."""
        return ProtocolError(
            ErrorCode.BAD_STATE,
            f"pipeline window full: {self.files} files, {self.size} bytes in flight at most",
        )

    def narrowed(self, files: int, size: int) -> Window:
        """An empty window no wider than this one nor ``(files, size)``."""
        return Window(max(1, min(self.files, files)), max(1, min(self.size, size)))


def window_reply(window: Window) -> Message:
    """``window|ok|FILES|BYTES``: the server's answer to ``window``."""
    return ok("window", str(window.files), str(window.size))


def parse_window(reply: Message) -> Window:
    """The server's window from its ``window|ok|FILES|BYTES`` reply (``RemoteError`` if refused)."""
    files, size = reply.expect("window", "ok", 2)
    return Window(max(1, parse_size(files)), max(1, parse_size(size)))


class ServerFetch(_Sender):
    """The server's side of one ``fetch``: ``ready``, the data, then the digest.

    After :meth:`ready` the caller sends :attr:`count` bytes, feeding
    :attr:`hasher` (unless it knows the digest), then :meth:`digest` - or,
    if the file changed meanwhile, the error :meth:`file_changed` instead.
    """

    def __init__(self, path: str, size: int) -> None:
        super().__init__()
        self.path = path
        self.count = size
        self.hasher = new_hasher()

    def ready(self) -> Message:
        """``fetch|ready|SIZE``: the data follows at once."""
        self._move("ready", "start", "sending")
        return ready("fetch", self.count)

    def digest(self, hexdigest: str) -> Message:
        """``fetch|digest|BLAKE3`` after the data."""
        self._move("digest", "sending", "done")
        return digest("fetch", hexdigest)


class ClientFetch(_Machine):
    """The client's side of one ``fetch``: request, ``ready`` or error, data, digest.

    After :meth:`ready` the caller receives :attr:`count` bytes, feeding
    :attr:`hasher`, and hands the next message to :meth:`check`.  A
    :class:`RemoteError` from :meth:`ready` is the server's refusal: no
    data follows for this file.
    """

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.count = 0
        self.hasher = new_hasher()

    def request(self) -> Message:
        """``fetch|PATH``."""
        self._move("request", "start", "requested")
        return request("fetch", self.path)

    def ready(self, reply: Message) -> None:
        """Take the answer: ``fetch|ready|SIZE`` sets :attr:`count`; an error is raised.

        A reply that fits neither leaves the stream out of step: the caller
        must close the connection.
        """
        self._move("ready", "requested", "done")
        (size,) = reply.check_reply("fetch").expect("fetch", "ready", 1)
        self.count = parse_size(size)
        self.state = "receiving"

    def check(self, reply: Message) -> str:
        """The digest, if the ``fetch|digest`` after the data matches the bytes received.

        Raises :class:`RemoteError` for an error reply (``462``) and ``460``
        for another digest.
        """
        self._move("check", "receiving", "done")
        (claimed,) = reply.check_reply("fetch").expect("fetch", "digest", 1)
        if parse_digest(claimed) != self.hasher.hexdigest():
            raise RemoteError(ErrorCode.DIGEST_MISMATCH, f"digest mismatch: {self.path}")
        return claimed


class ServerOffer(_Machine):
    """The server's side of one ``offer``: ``ready``, later ``send`` with the data, the digest.

    Made once the upload is started (space reserved).  After :meth:`ready`
    the offer waits in the session's queue; :meth:`begin` takes the
    client's ``send`` (True: :attr:`count` bytes of data follow, feeding
    :attr:`hasher`; False: ``send|abort``, withdrawn), then :meth:`check`
    takes the message after the data.
    """

    def __init__(self, path: str, size: int, hasher: Hasher) -> None:
        super().__init__()
        self.path = path
        self.count = size
        self.hasher = hasher

    def ready(self) -> Message:
        """``offer|ready|SIZE``."""
        self._move("ready", "start", "offered")
        return ready("offer", self.count)

    def begin(self, withdraw: bool) -> bool:
        """The client's ``send`` (data follows) or ``send|abort`` (withdrawn, nothing follows)."""
        self._move("begin", "offered", "done" if withdraw else "receiving")
        return not withdraw

    def withdrawn(self) -> ProtocolError:
        """The answer to ``send|abort``."""
        return upload_aborted(self.path)

    def check(self, message: Message) -> str:
        """The digest of the file if ``message`` is ``send|digest`` with it.

        Raises ``461`` for ``send|abort``, ``460`` for another digest and
        :class:`MessageError` for anything else; the upload is discarded
        unless this returns.
        """
        self._move("check", "receiving", "done")
        return received_digest(message, "send", self.hasher, self.path)


class ClientOffer(_Machine):
    """The client's side of one ``offer``: request, ``ready`` or error, ``send``, data, result.

    After :meth:`ready` the caller sends :meth:`send` and :attr:`size`
    bytes of its file, feeding :attr:`hasher`, then :meth:`digest`, and
    later hands the answer to :meth:`check`.  To withdraw a ready offer
    (the file cannot be read) it sends :meth:`withdraw` instead, and after
    data that fell short (padded with zeros) :meth:`abort`; the answer then
    goes to :meth:`aborted`.
    """

    def __init__(self, path: str, size: int) -> None:
        super().__init__()
        self.path = path
        self.size = size
        self.hasher = new_hasher()

    def request(self) -> Message:
        """``offer|PATH|SIZE``."""
        self._move("request", "start", "requested")
        return request("offer", self.path, str(self.size))

    def ready(self, reply: Message) -> None:
        """Take the answer to the offer; an error reply is raised (nothing to send)."""
        self._move("ready", "requested", "done")
        (size,) = reply.check_reply("offer").expect("offer", "ready", 1)
        if parse_size(size) != self.size:
            raise MessageError(f"offer|ready announces {size} bytes, not {self.size}")
        self.state = "ready"

    def send(self) -> Message:
        """``send``: this file's data follows."""
        self._move("send", "ready", "sending")
        return request("send")

    def withdraw(self) -> Message:
        """``send|abort`` instead of :meth:`send`: no data, nothing stored."""
        self._move("withdraw", "ready", "aborting")
        return abort("send")

    def digest(self) -> Message:
        """``send|digest|BLAKE3`` of the file, after the data."""
        self._move("digest", "sending", "sent")
        return digest("send", self.hasher.hexdigest())

    def abort(self) -> Message:
        """``send|abort`` after data that fell short (padded to the size)."""
        self._move("abort", "sending", "aborting")
        return abort("send")

    def check(self, reply: Message) -> str:
        """The digest, if the server stored exactly the size and bytes sent."""
        self._move("check", "sent", "done")
        return stored_digest(reply, "send", self.size, self.hasher, self.path)

    def aborted(self, reply: Message) -> None:
        """Take the server's answer to a withdrawal or abort (``send|error|461``, expected)."""
        self._move("aborted", "aborting", "done")
        abort_answered(reply, "send")
