"""The server's side of pipelined transfers (docs/PROTOCOL.md, section 5.4).

``window`` tells the client the session's window (``pipeline_files`` and
``pipeline_bytes``).  ``fetch`` sends one file at once, without waiting for a
``recv_ready``: a client keeps many requested, and they wait in the socket
until the server reads them, so a session holds one file open at a time
whatever the client sends.  ``offer`` starts an upload (the storage checks
the path and reserves space and quota) and queues it; ``send`` receives the
data of the oldest queued offer and commits it.  The queue never holds more
than the window: an offer beyond it is refused (``409``) before anything is
reserved.  Whatever is still queued when the session ends is discarded.

The messages and their order are :mod:`ftpproto.pipeline`'s; the file's
side is :mod:`ftpserver.transfers`'.  This module speaks only to the
session's :class:`~ftpserver.storage.base.Storage`.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ftpproto.channel import Progress
from ftpproto.errors import ErrorCode, ProtocolError
from ftpproto.messages import Message, error, ok, parse_size
from ftpproto.pipeline import ServerFetch, ServerOffer, Window, window_reply
from ftpserver.fsops import os_error
from ftpserver.storage.base import ReadHandle, UploadHandle
from ftpserver.storage.deferred import Confirm, collecting
from ftpserver.transfers import stream_file

if TYPE_CHECKING:
    from ftpserver.session import SessionBase

__all__ = ["SMALL_FILE", "Pipeline"]

SMALL_FILE = 256 * 1024  # up to this size a fetched file goes out in one write with its messages


@dataclass(eq=False)
class _Queued:
    """An upload offered and reserved, waiting for its data."""

    offer: ServerOffer
    upload: UploadHandle
    virtual: str
    size: int
    confirm: Confirm | None = None  # its reservation, until the ledger's answer is read
    refusal: ProtocolError | None = None  # the ledger's, once read


class Pipeline:
    """One session's pipelined transfers: its window, its queue of offered uploads, its replies."""

    def __init__(self, session: SessionBase, files: int, size: int) -> None:
        self.session = session
        self.window = Window(files, size)
        self.queue: deque[_Queued] = deque()
        self.owed: list[Message | _Queued] = []  # replies not written yet, in request order

    def close(self) -> None:
        """Discard every queued upload (the session ends); their reservations go back."""
        self.owed.clear()
        while self.queue:
            queued = self.queue.popleft()
            self.window.give(queued.size)
            with contextlib.suppress(Exception):  # a refusal holds nothing to give back
                self._confirm(queued)
            with contextlib.suppress(OSError):
                queued.upload.abort()

    def _pay(self) -> list[Message]:
        """The replies owed, in order (the channel writes them): each offer's once confirmed."""
        owed, self.owed = self.owed, []
        return [self._answer(item) if isinstance(item, _Queued) else item for item in owed]

    def _answer(self, queued: _Queued) -> Message:
        """``offer|ready`` once the ledger agreed to the reservation, or its refusal."""
        self._confirm(queued)
        if queued.refusal is not None:
            return error("offer", queued.refusal)
        return queued.offer.ready()

    def _confirm(self, queued: _Queued) -> None:
        """Read the ledger's answer to ``queued``'s reservation; a refusal gives the upload up."""
        confirm, queued.confirm = queued.confirm, None
        if confirm is None:
            return
        try:
            confirm()
        except ProtocolError as exc:
            queued.refusal = exc
            if queued in self.queue:
                self.queue.remove(queued)
                self.window.give(queued.size)
            with contextlib.suppress(OSError):
                queued.upload.abort()
            self.session.activity.refused(exc.code)

    def window_command(self) -> None:
        """``window``: the files and bytes a client may have in flight."""
        self.session.channel.send(window_reply(self.window))

    # -- downloads -----------------------------------------------------------

    def fetch(self, path: str) -> None:
        """``fetch|PATH``: ``fetch|ready|SIZE``, the data and the digest, without a wait."""
        session = self.session
        virtual = session.storage.virtual(path)
        started = time.monotonic()
        with session.storage.open_read(virtual) as source:
            rate = session.user_account.download_rate
            meter = session.meter("download", rate, virtual)
            handshake = ServerFetch(virtual, source.size)
            try:
                hexdigest = self._send_file(
                    source, handshake, meter, 64 * 1024 if rate else 8 << 20
                )
            except (ProtocolError, OSError) as exc:
                session.log_failed("get", virtual, meter.moved, started, exc)
                raise
        session.log_transfer("get", virtual, handshake.count, started, hexdigest, "ok")

    def _send_file(
        self,
        source: ReadHandle,
        handshake: ServerFetch,
        meter: Progress,
        step: int,
    ) -> str:
        """Send one fetched file: ready, data, digest (one write for a small file)."""
        channel = self.session.channel
        count = handshake.count
        if count <= SMALL_FILE:
            data = _read_small(source, count)
            if data is not None:
                known = source.stored_digest()
                if known is None:
                    hasher = handshake.hasher
                    hasher.update(data)
                    known = hasher.hexdigest()
                    source.store_digest(known)
                ready = handshake.ready()
                channel.send_parts(ready, data, handshake.digest(known))
                meter(count)
                return known
        channel.send(handshake.ready())
        hexdigest = stream_file(
            channel, source, handshake.path, 0, count, handshake.hasher, meter, step
        )
        if hexdigest is None:
            raise handshake.file_changed()
        channel.send(handshake.digest(hexdigest))
        return hexdigest

    # -- uploads -------------------------------------------------------------

    def offer(self, path: str, size_text: str) -> None:
        """``offer|PATH|SIZE``: check, reserve and queue an upload; ``offer|ready|SIZE``."""
        size = parse_size(size_text)
        if not self.window.admits(size):
            raise self.window.full()
        storage = self.session.storage
        virtual = storage.virtual(path)
        upload = storage.open_upload(virtual)
        with collecting() as confirms:
            try:
                _, hasher = upload.start(size, None)
            except BaseException:
                for confirm in confirms:  # what the ledger holds goes back with the abort
                    with contextlib.suppress(Exception):
                        confirm()
                upload.abort()
                raise
        queued = _Queued(ServerOffer(virtual, size, hasher), upload, virtual, size)
        queued.confirm = confirms[0] if confirms else None
        self.queue.append(queued)
        self.window.take(size)
        self.owed.append(queued)  # answered when the replies go out
        self.session.channel.owed = self._pay

    def send(self, flag: str | None) -> None:
        """``send`` (the oldest offer's data follows) or ``send|abort`` (withdraw it)."""
        session = self.session
        if flag is not None and flag != "abort":
            raise ProtocolError(ErrorCode.BAD_REQUEST, "usage: send [abort]")
        while self.queue and self.queue[0].confirm is not None:  # a client that did not wait
            self._confirm(self.queue[0])
        if not self.queue:
            refusal = ProtocolError(ErrorCode.BAD_STATE, "send without a ready offer")
            if flag is not None:
                raise refusal  # a withdrawal: no data follows
            # Data may follow that nothing announced: the stream is out of step.
            session.channel.send(error("send", refusal))
            raise ConnectionAbortedError("send without a ready offer")
        queued = self.queue.popleft()
        self.window.give(queued.size)
        offer, virtual = queued.offer, queued.virtual
        with queued.upload as upload:
            if not offer.begin(withdraw=flag is not None):
                raise offer.withdrawn()
            started = time.monotonic()
            meter = session.meter("upload", session.user_account.upload_rate, virtual)
            try:
                session.channel.recv_file(upload.sink, offer.count, offer.hasher, meter)
                final = session.channel.recv()  # a connection lost before keeps what arrived
                upload.keep_partial = False
                hexdigest = offer.check(final)
                upload.commit(hexdigest)
            except OSError as exc:
                failure = exc if isinstance(exc, ConnectionError | TimeoutError) else None
                session.log_failed("put", virtual, meter.moved, started, exc)
                if failure is not None:
                    raise
                raise os_error(exc, virtual) from exc
            except ProtocolError as exc:
                session.log_failed("put", virtual, meter.moved, started, exc)
                raise
        session.log_transfer("put", virtual, offer.count, started, hexdigest, "ok")
        self.owed.append(ok("send", str(offer.count), hexdigest))
        session.channel.owed = self._pay


def _read_small(source: ReadHandle, count: int) -> bytes | None:
    """All ``count`` bytes of a small file, or None if it is shorter now or changed."""
    buffer = bytearray(count)
    view = memoryview(buffer)
    source.seek(0)
    done = 0
    while done < count:
        n = source.readinto(view[done:])
        if not n:
            return None
        done += n
    if source.changed():
        return None
    return bytes(buffer)
