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

from ftpproto.channel import PAY_AT, Progress
from ftpproto.errors import ErrorCode, ProtocolError
from ftpproto.messages import Message, error, ok, parse_size
from ftpproto.pipeline import ServerFetch, ServerOffer, Window, window_reply
from ftpserver.finishing import Finisher, Job
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
    """An upload offered, being started and reserved, then waiting for its data."""

    offer: ServerOffer
    upload: UploadHandle
    virtual: str
    size: int
    confirm: Confirm | None = None  # its reservation, until the ledger's answer is read
    refusal: ProtocolError | None = None  # once refused


@dataclass(eq=False)
class _Committing:
    """An upload whose data arrived and checked out, being committed: its ``send`` answer."""

    virtual: str
    count: int
    hexdigest: str
    started: float  # when its data began, for the audit record
    moved: int
    done: Job


class Pipeline:
    """One session's pipelined transfers: its window, its queue of offered uploads, its replies."""

    def __init__(self, session: SessionBase, files: int, size: int) -> None:
        self.session = session
        self.window = Window(files, size)
        # Answers held while the client's bytes are here: a quarter of the window at
        # most, so a client refilling at half never waits on them (ftpproto.channel).
        self.pay_at = max(1, min(PAY_AT, files // 4))
        self.queue: deque[_Queued] = deque()
        self.owed: list[Message | _Queued | _Committing] = []  # not written yet, in order
        self.finisher = Finisher()

    def close(self) -> None:
        """Discard every queued upload (the session ends); their reservations go back.

        Uploads whose data arrived complete are committed first.
        """
        self.finisher.close()
        owed, self.owed = self.owed, []
        for item in owed:  # committed, answer unsent: still audited
            if isinstance(item, _Committing):
                with contextlib.suppress(Exception):
                    self._committed(item)
        while self.queue:
            queued = self.queue.popleft()
            self.window.give(queued.size)
            with contextlib.suppress(Exception):  # a refusal holds nothing to give back
                self._confirm(queued)
            with contextlib.suppress(OSError):
                queued.upload.abort()

    def drain(self) -> None:
        """Wait for the uploads being started or committed (before any other command runs)."""
        self.finisher.drain()

    # -- the replies owed (ftpproto.channel.Owed) ----------------------------

    def due(self, every: bool) -> list[Message]:
        """The replies owed, in order: all, or those ready (a commit once the finisher made it).

        An offer's answer reads its reservation's answer, which with workers
        may wait for the supervisor.
        """
        paid: list[Message] = []
        owed = self.owed
        while owed and (every or _ready(owed[0])):
            paid.append(self._answer(owed.pop(0)))  # off the list first: never answered twice
        return paid

    def owing(self) -> int:
        """How many replies are owed."""
        return len(self.owed)

    def _answer(self, item: Message | _Queued | _Committing) -> Message:
        if isinstance(item, _Queued):
            self._confirm(item)
            if item.refusal is not None:
                return error("offer", item.refusal)
            return item.offer.ready()
        if isinstance(item, _Committing):
            return self._committed(item)
        return item

    def _confirm(self, queued: _Queued) -> None:
        """Read how ``queued``'s reservation went; a refusal gives the upload up."""
        failure = None
        confirm, queued.confirm = queued.confirm, None
        if confirm is not None:
            try:
                confirm()
            except ProtocolError as exc:
                failure = exc
            except (ConnectionError, TimeoutError):
                raise
            except OSError as exc:  # measuring the home for the ledger
                failure = os_error(exc, queued.virtual)
        if failure is not None:
            self._refuse(queued, failure)

    def _refuse(self, queued: _Queued, exc: ProtocolError) -> None:
        queued.refusal = exc
        if queued in self.queue:
            self.queue.remove(queued)
            self.window.give(queued.size)
        with contextlib.suppress(OSError):
            queued.upload.abort()
        self.session.activity.refused(exc.code)

    def _committed(self, item: _Committing) -> Message:
        """``send|ok`` once the upload is in place, or why it could not be committed."""
        session = self.session
        try:
            self.finisher.result(item.done)
        except (ConnectionError, TimeoutError) as exc:
            session.log_failed("put", item.virtual, item.moved, item.started, exc)
            raise
        except (ProtocolError, OSError) as exc:
            session.log_failed("put", item.virtual, item.moved, item.started, exc)
            failure = exc if isinstance(exc, ProtocolError) else os_error(exc, item.virtual)
            session.activity.refused(failure.code)
            return error("send", failure)
        session.log_transfer("put", item.virtual, item.count, item.started, item.hexdigest, "ok")
        return ok("send", str(item.count), item.hexdigest)

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
        """``offer|PATH|SIZE``: check, reserve and queue an upload; ``offer|ready|SIZE``.

        The checks, the reservation and the temporary file here, in order;
        the answer is owed (with workers it may wait for the supervisor's
        answer to the reservation).
        """
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
        self.session.channel.owed = self

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
        offer, virtual, upload = queued.offer, queued.virtual, queued.upload
        try:
            if not offer.begin(withdraw=flag is not None):
                raise offer.withdrawn()
        except BaseException:
            with contextlib.suppress(OSError):
                upload.abort()
            raise
        started = time.monotonic()
        meter = session.meter("upload", session.user_account.upload_rate, virtual)
        try:
            session.channel.recv_file(upload.sink, offer.count, offer.hasher, meter)
            final = session.channel.recv()  # a connection lost before keeps what arrived
            upload.keep_partial = False
            hexdigest = offer.check(final)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                upload.abort()  # keeps what arrived as the partial upload, if it should
            if not isinstance(exc, OSError | ProtocolError):
                raise
            session.log_failed("put", virtual, meter.moved, started, exc)
            if isinstance(exc, OSError) and not isinstance(exc, ConnectionError | TimeoutError):
                raise os_error(exc, virtual) from exc
            raise
        done = self.finisher.commit(upload, hexdigest)
        self.owed.append(_Committing(virtual, offer.count, hexdigest, started, meter.moved, done))
        session.channel.owed = self


def _ready(item: Message | _Queued | _Committing) -> bool:
    """Whether an owed reply can be given without waiting for the finisher."""
    if isinstance(item, _Committing):
        return item.done.done
    return True


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
