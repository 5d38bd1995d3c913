"""The protocol's only I/O: framed messages and exact-length file data on a socket.

A :class:`Channel` owns one connected socket.  Control messages go through
:mod:`ftpproto.framing`; file data is raw bytes read or written to an exact
count, so it can never be taken for a message and no message can run into
the data ("sticky packets").

Without :class:`Deadlines` the socket's own timeout applies to every call.
With them (the server), the channel enforces: the first byte of a message
within ``idle`` seconds; the rest of it within ``request`` seconds (a client
dribbling a byte every few seconds is cut off); and during file data at least
``min_rate`` bytes per second over every ``stall`` seconds.  A broken
deadline surfaces as :class:`~ftpproto.errors.DeadlineExceeded` (a
``TimeoutError``) whose text says which, such as ``idle for 300 s``.

A channel may owe replies (:attr:`Channel.owed`, the server's pipelined
transfers): they go out in order before anything else is written, and
before the channel waits for the peer, so they can ride along with the
next write instead of each taking one.  Before a read, they go out only
when the read would wait, or once :data:`PAY_AT` are owed: while the
peer's next bytes are already here, replies wait to ride along with later
ones (a write and a wake-up of the peer for several files, not one each).
Replies still being finished (another thread commits an upload) hold up
a read only when the read would wait, or before more than a piece of file
data: otherwise the ones ready go out and the rest wait for a later read
or write.

A read first takes what the peer sent already, in one ``read`` of the
socket's non-blocking descriptor (a plain socket with a timeout); only a
read that would wait sets the deadline's timeout and goes through the
socket's ``recv``, which polls first (three system calls, not one, for the
messages and small files of a pipelined tree).

:attr:`Channel.in_step` tells whether the outgoing stream ends at a frame
boundary, so a last message (why the connection closes) can still be read
as one: not after a write that failed half-way, nor in the middle of file
data.  :meth:`Channel.send_last` sends it only then.

The file data methods (``recv_file``, ``send_file``, ``send_stream``) are
:class:`~ftpproto.filedata.FileData`'s.
"""

from __future__ import annotations

import contextlib
import select
import socket
import time
from typing import Protocol

from ftpproto.digest import Hasher
from ftpproto.errors import ConnectionClosed, DeadlineExceeded, ProtocolError
from ftpproto.filedata import CHUNK_SIZE, SENDFILE_MIN, SPLICE_MIN, Deadlines, FileData, Progress
from ftpproto.framing import MAX_FRAME_SIZE, FrameDecoder, encode_frame
from ftpproto.messages import Message
from ftpproto.splicing import SpliceSink

__all__ = [
    "CHUNK_SIZE",
    "PAY_AT",
    "SENDFILE_MIN",
    "SPLICE_MIN",
    "Channel",
    "Deadlines",
    "Hasher",
    "Owed",
    "Progress",
    "SpliceSink",
]


# Owed replies that go out before a read even while the peer's next bytes are here
# (a client's pipelined uploads wait on these answers: see ftpclient.pipelinedput);
# the most an Owed's pay_at should be (the server's is less for a small window).
PAY_AT = 16


class Owed(Protocol):
    """The replies a channel owes (see the module docstring)."""

    # How many may wait for a later write while the peer's next bytes are here.
    pay_at: int

    def due(self, every: bool) -> list[Message]:
        """The replies to write now, in order: all (``every``, waiting if need be) or the ready."""
        ...

    def owing(self) -> int:
        """How many replies are owed (ready or still being finished)."""
        ...


class Channel(FileData):
    """Send and receive framed messages and exact byte counts on one socket."""

    def __init__(
        self,
        sock: socket.socket,
        max_frame: int = MAX_FRAME_SIZE,
        deadlines: Deadlines | None = None,
    ) -> None:
        self.sock = sock
        self.deadlines = deadlines
        self._timeout: float | None = None
        self._decoder = FrameDecoder(max_frame)
        self.in_step = True  # the outgoing stream ends at a frame boundary
        # Replies not written yet: asked before every write and every read of the peer,
        # it gives them in order (and owes nothing more until the next one is deferred).
        self.owed: Owed | None = None
        self._poll: select.poll | None = None

    def _owed_bytes(self, every: bool = True) -> bytes:
        """The frames of the replies owed, now due (only those ready unless ``every``)."""
        if self.owed is None:
            return b""
        return b"".join(encode_frame(m.encode()) for m in self.owed.due(every))

    def pay(self, every: bool = True) -> None:
        """Write the replies owed, if any (before waiting for the peer, or other writes)."""
        data = self._owed_bytes(every)
        if data:
            self.in_step = False
            self.sock.sendall(data)
            self.in_step = True

    def _pay_before_read(self) -> None:
        """Write the replies owed before a read that would wait (all), or once ``owed.pay_at`` are.

        Once that many are owed and the read will not wait, only the ready ones go.
        """
        owed = self.owed
        if owed is None or not owed.owing():
            return
        if self._readable():
            self._pay_while_readable()
        else:
            self.pay()

    def _pay_while_readable(self) -> None:
        """The peer's bytes are here: owed replies ride along with later ones, up to a point.

        Once ``owed.pay_at`` are owed, the ready ones go.
        """
        owed = self.owed
        if owed is not None and owed.owing() >= owed.pay_at:
            self.pay(every=False)

    def _readable(self) -> bool:
        """Whether the peer's next bytes are here already (reading them will not wait)."""
        pending = getattr(self.sock, "pending", None)  # TLS: decrypted bytes not read yet
        if pending is not None and pending():
            return True
        if self._poll is None:
            self._poll = select.poll()
            self._poll.register(self.sock, select.POLLIN)
        return bool(self._poll.poll(0))

    def _set_timeout(self, seconds: float) -> None:
        """``settimeout`` only when the value changes (each call is a system call)."""
        if seconds != self._timeout:
            self.sock.settimeout(seconds)
            self._timeout = seconds

    def _data_timeout(self) -> None:
        if self.deadlines is not None:
            self._set_timeout(self.deadlines.stall)

    def send(self, *messages: Message) -> None:
        """Send one or more messages in a single write."""
        data = b"".join([self._owed_bytes(), *(encode_frame(m.encode()) for m in messages)])
        self.in_step = False
        self.sock.sendall(data)
        self.in_step = True

    def send_parts(self, *parts: Message | bytes | memoryview) -> None:
        """Send messages and raw file data in one write (small pipelined files).

        With deadlines, a peer that does not read for ``stall`` seconds
        breaks it, as during any file data.
        """
        self.in_step = False
        self._data_timeout()
        with self._stall_watch():
            self._send_joined(parts)
        self.in_step = True

    def _send_joined(self, parts: tuple[Message | bytes | memoryview, ...]) -> None:
        owed = self._owed_bytes()
        framed = (encode_frame(p.encode()) if isinstance(p, Message) else p for p in parts)
        buffers = [owed, *framed]
        if type(self.sock) is not socket.socket:  # TLS: one record stream, no sendmsg
            self.sock.sendall(b"".join(buffers))
            return
        # Gathered by the kernel (sendmsg) rather than joined here: no copy of the file data.
        views = [memoryview(b).cast("B") for b in buffers if len(b)]
        while views:
            sent = self.sock.sendmsg(views)
            while views and sent >= len(views[0]):
                sent -= len(views[0])
                del views[0]
            if sent:
                views[0] = views[0][sent:]

    def send_last(self, message: Message, timeout: float = 5.0) -> bool:
        """Send a last ``message`` before closing, if the peer can still read it as one.

        Not after a write that failed half-way or in the middle of file
        data (:attr:`in_step`); waits at most ``timeout`` seconds for a peer
        that does not read.  Returns whether it was sent; errors are ignored.
        """
        if not self.in_step:
            return False
        try:
            self._set_timeout(timeout)
            self.send(message)
        except OSError:
            return False
        return True

    def recv(self) -> Message:
        """Receive the next message.

        Raises :class:`ConnectionClosed` at end of stream,
        :class:`~ftpproto.errors.FramingError` on a framing violation and
        :class:`~ftpproto.errors.MessageError` on a frame that is no message.
        """
        return Message.parse(self.recv_frame())

    def recv_frame(self) -> bytes:
        """Receive the next frame's payload, not parsed: :meth:`recv` without its last step.

        For a reader with a faster parse of its own for the messages it
        expects most (the client's ``tree`` answer); anything else it must
        give to :meth:`Message.parse`.
        """
        begun: float | None = None
        while True:
            payload = self._decoder.next_frame()
            if payload is not None:
                return payload
            want = max(self._decoder.wanted(), 4096)
            data = self._read_now(want)
            if data is not None:  # no wait: no deadline to set
                self._pay_while_readable()
                if not data:
                    raise ConnectionClosed("connection closed by peer")
                self._decoder.feed(data)
                continue
            if self.deadlines is not None:
                if not self._decoder.buffered:
                    self._set_timeout(self.deadlines.idle)
                else:
                    now = time.monotonic()
                    begun = begun or now
                    left = self.deadlines.request - (now - begun)
                    if left <= 0:
                        raise self._late()
                    self._set_timeout(min(left, self.deadlines.idle))
            self._pay_before_read()
            try:
                data = self.sock.recv(want)
            except TimeoutError:
                if self.deadlines is None:
                    raise
                raise self._late() from None
            if not data:
                raise ConnectionClosed("connection closed by peer")
            self._decoder.feed(data)

    def last_message(self, timeout: float) -> Message | None:
        """After a failed write: a message the peer sent before it closed, if one waits.

        A peer that gives up (a server whose deadline passed) may say why
        and close; those words can wait unread behind the data being sent.
        Waits at most ``timeout`` seconds; None if nothing readable came.
        """
        saved = self.sock.gettimeout()
        try:
            self.sock.settimeout(timeout)
            return self.recv()
        except (OSError, ProtocolError):
            return None
        finally:
            with contextlib.suppress(OSError):
                self.sock.settimeout(saved)

    def _late(self) -> DeadlineExceeded:
        """Which deadline a message broke: none of it came, or not all of it."""
        assert self.deadlines is not None
        if self._decoder.buffered:
            return DeadlineExceeded(f"message not completed within {self.deadlines.request:g} s")
        return DeadlineExceeded(f"idle for {self.deadlines.idle:g} s")

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()
