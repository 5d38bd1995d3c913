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
next write instead of each taking one.  Replies still being finished
(another thread commits an upload) hold up a read only when the read
would wait, or before more than a piece of file data: while the peer's
bytes are already here, the ones ready go out and the rest wait for a
later read or write.

:attr:`Channel.in_step` tells whether the outgoing stream ends at a frame
boundary, so a last message (why the connection closes) can still be read
as one: not after a write that failed half-way, nor in the middle of file
data.  :meth:`Channel.send_last` sends it only then.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import time
from collections.abc import Callable, Iterator
from typing import BinaryIO, NamedTuple, Protocol

from ftpproto.digest import READ_PIECE, Hasher
from ftpproto.errors import ConnectionClosed, DeadlineExceeded, ProtocolError
from ftpproto.framing import MAX_FRAME_SIZE, FrameDecoder, encode_frame
from ftpproto.messages import Message
from ftpproto.splicing import SpliceSink, can_splice, splice_file

__all__ = [
    "CHUNK_SIZE",
    "SENDFILE_MIN",
    "SPLICE_MIN",
    "Channel",
    "Deadlines",
    "Hasher",
    "Owed",
    "Progress",
    "SpliceSink",
]

CHUNK_SIZE = 256 * 1024
SPLICE_MIN = 2 * 1024 * 1024  # from this size a receiver splices into the file
SENDFILE_MIN = 8 * 1024 * 1024  # from this size a sender hashes in a helper beside sendfile
Progress = Callable[[int], None]


class _Sink(Protocol):
    def write(self, data: bytes | memoryview, /) -> object: ...


class Owed(Protocol):
    """The replies a channel owes (see the module docstring)."""

    def due(self, every: bool) -> list[Message]:
        """The replies to write now, in order: all (``every``, waiting if need be) or the ready."""
        ...

    def unfinished(self) -> bool:
        """Whether replies are still owed once those ready went out (:meth:`due`)."""
        ...


class Deadlines(NamedTuple):
    """How long a peer may take; see the module docstring."""

    idle: float
    request: float
    stall: float
    min_rate: int = 0


class _RateWatch:
    """Raises TimeoutError when a transfer moves less than ``min_rate`` B/s over a window."""

    def __init__(self, deadlines: Deadlines | None) -> None:
        self.deadlines = deadlines
        self.window_start = time.monotonic()
        self.moved = 0

    def tick(self, count: int) -> None:
        deadlines = self.deadlines
        if deadlines is None or not deadlines.min_rate:
            return
        self.moved += count
        now = time.monotonic()
        elapsed = now - self.window_start
        if elapsed >= deadlines.stall:
            if self.moved < deadlines.min_rate * elapsed:
                raise DeadlineExceeded(
                    f"transfer slower than {deadlines.min_rate} bytes/s for {deadlines.stall:g} s"
                )
            self.window_start, self.moved = now, 0


class Channel:
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
        """Write the replies owed before a read: all, unless the read will not wait."""
        owed = self.owed
        if owed is None:
            return
        self.pay(every=False)
        if owed.unfinished() and not self._readable():
            self.pay()

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
                data = self.sock.recv(max(self._decoder.wanted(), 4096))
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

    def recv_file(
        self, sink: _Sink, size: int, hasher: Hasher, progress: Progress | None = None
    ) -> None:
        """Receive exactly ``size`` bytes of file data into ``sink``, hashing them.

        Into a :class:`~ftpproto.splicing.SpliceSink` (such as
        :class:`ftpfiles.files.GuardedWriter`) on a file that :func:`can_splice`, big
        transfers go through :func:`~ftpproto.splicing.splice_file` (no copy
        through Python).  Otherwise one thread receives, hashes and writes
        each piece of at most 1 MiB while it is still in the CPU cache:
        BLAKE3 costs less than the two copies, and handing pieces to helper
        threads cost more than it saved.  ``progress`` is called with each
        piece's size (a progress bar, or a bandwidth limit that sleeps).
        """
        with self._stall_watch():
            self._recv_data(sink, size, hasher, progress)

    @contextlib.contextmanager
    def _stall_watch(self) -> Iterator[None]:
        """Turn a socket timeout during file data into the stall deadline's error."""
        try:
            yield
        except DeadlineExceeded:
            raise
        except TimeoutError:
            if self.deadlines is None:
                raise
            raise DeadlineExceeded(f"no file data for {self.deadlines.stall:g} s") from None

    def _recv_data(self, sink: _Sink, size: int, hasher: Hasher, progress: Progress | None) -> None:
        watch = _RateWatch(self.deadlines)

        def on_piece(count: int) -> None:
            watch.tick(count)
            if progress:
                progress(count)

        self._data_timeout()
        remaining = size
        if self._decoder.buffered and remaining:
            data = self._decoder.take_raw(remaining)
            hasher.update(data)
            sink.write(data)
            remaining -= len(data)
            on_piece(len(data))
        if remaining > READ_PIECE:  # a while before the next read: nothing owed waits it out
            self.pay()
        elif remaining:
            self._pay_before_read()
        if (
            remaining >= SPLICE_MIN
            and isinstance(sink, SpliceSink)
            and sink.error is None
            and can_splice(self.sock, sink.fd)
        ):
            remaining -= splice_file(self.sock, sink, remaining, hasher, on_piece)
        view = memoryview(bytearray(min(remaining, READ_PIECE)))
        while remaining:
            n = self.sock.recv_into(view[: min(remaining, READ_PIECE)])
            if n == 0:
                raise ConnectionClosed(f"connection closed with {remaining} bytes still to come")
            chunk = view[:n]
            hasher.update(chunk)
            sink.write(chunk)
            remaining -= n
            on_piece(n)

    def send_file(
        self,
        fileobj: BinaryIO,
        offset: int,
        size: int,
        progress: Progress | None = None,
        step: int = 4 * 1024 * 1024,
    ) -> int:
        """Send ``size`` bytes of an open file with ``sendfile``; pad with zeros if it shrank.

        Returns how many bytes came from the file; fewer than ``size`` means the
        file changed under us and the receiver must be told the data is bad.
        The stream itself stays in step either way.  With ``progress`` or
        deadlines the file goes in chunks of ``step`` bytes, each reported or
        checked.
        """
        self.pay()
        self.in_step = False
        with self._stall_watch():
            sent = self._send_data(fileobj, offset, size, progress, step)
        self.in_step = True
        return sent

    def _send_data(
        self, fileobj: BinaryIO, offset: int, size: int, progress: Progress | None, step: int
    ) -> int:
        send_piece = self._send_piece
        if progress is None and self.deadlines is None:
            sent = send_piece(fileobj, offset, size) if size else 0
        else:
            watch = _RateWatch(self.deadlines)
            self._data_timeout()
            sent = 0
            while sent < size:
                n = send_piece(fileobj, offset + sent, min(step, size - sent))
                if n == 0:
                    break
                sent += n
                watch.tick(n)
                if progress:
                    progress(n)
        if sent < size:
            self.send_zeros(size - sent)
        return sent

    def _send_piece(self, fileobj: BinaryIO, offset: int, count: int) -> int:
        """Send up to ``count`` bytes of the file from ``offset``; the bytes sent.

        ``sendfile`` on plain sockets; over TLS (where Python's ``sendfile``
        falls back to 8 KiB writes) the file is read in 256 KiB pieces.
        """
        import ssl  # here, not at the top: a client without TLS starts 10-20 ms sooner

        if not isinstance(self.sock, ssl.SSLSocket):
            return self.sock.sendfile(fileobj, offset, count)
        done = 0
        while done < count:
            data = os.pread(fileobj.fileno(), min(count - done, CHUNK_SIZE), offset + done)
            if not data:
                break
            self.sock.sendall(data)
            done += len(data)
        return done

    def send_stream(
        self, fileobj: BinaryIO, size: int, hasher: Hasher, progress: Progress | None = None
    ) -> int:
        """Read ``size`` bytes from ``fileobj``, hash and send them.

        Returns the bytes actually read; on a short read the rest is padded
        with zeros so the stream stays in step, and the caller must abort.
        """
        self.pay()
        self.in_step = False
        view = memoryview(bytearray(min(size, CHUNK_SIZE)))
        done = 0
        while done < size:
            n = fileobj.readinto(view[: min(size - done, CHUNK_SIZE)])  # type: ignore[attr-defined]
            if not n:
                self.send_zeros(size - done)
                break
            chunk = view[:n]
            hasher.update(chunk)
            self.sock.sendall(chunk)
            done += n
            if progress:
                progress(n)
        self.in_step = True
        return done

    def send_zeros(self, count: int) -> None:
        """Send ``count`` zero bytes (to keep the stream in step after a short file)."""
        in_step, self.in_step = self.in_step, False
        zeros = bytes(min(count, CHUNK_SIZE))
        while count > 0:
            self.sock.sendall(zeros[: min(count, len(zeros))])
            count -= len(zeros)
        self.in_step = in_step

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()
