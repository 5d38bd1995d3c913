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
deadline surfaces as :class:`TimeoutError`.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from ftpproto.digest import READ_PIECE, Hasher, hash_fd, new_hasher
from ftpproto.errors import ConnectionClosed
from ftpproto.framing import MAX_FRAME_SIZE, FrameDecoder, encode_frame
from ftpproto.messages import Message
from ftpproto.splicing import can_splice, splice_file

__all__ = [
    "CHUNK_SIZE",
    "BackgroundDigest",
    "Channel",
    "Deadlines",
    "GuardedWriter",
    "Hasher",
    "Progress",
    "file_digest",
]

CHUNK_SIZE = 256 * 1024
SPLICE_MIN = 2 * 1024 * 1024  # from this size a receiver splices into the file
SENDFILE_MIN = 8 * 1024 * 1024  # from this size a sender hashes in a helper beside sendfile
Progress = Callable[[int], None]


class _Sink(Protocol):
    def write(self, data: bytes | memoryview, /) -> object: ...


@dataclass(frozen=True)
class Deadlines:
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
                raise TimeoutError(f"transfer slower than {deadlines.min_rate} bytes/s")
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
        self.sock.sendall(b"".join(encode_frame(m.encode()) for m in messages))

    def recv(self) -> Message:
        """Receive the next message.

        Raises :class:`ConnectionClosed` at end of stream,
        :class:`~ftpproto.errors.FramingError` on a framing violation and
        :class:`~ftpproto.errors.MessageError` on a frame that is no message.
        """
        begun: float | None = None
        while True:
            payload = self._decoder.next_frame()
            if payload is not None:
                return Message.parse(payload)
            if self.deadlines is not None:
                if not self._decoder.buffered:
                    self._set_timeout(self.deadlines.idle)
                else:
                    now = time.monotonic()
                    begun = begun or now
                    left = self.deadlines.request - (now - begun)
                    if left <= 0:
                        raise TimeoutError("message not completed in time")
                    self._set_timeout(min(left, self.deadlines.idle))
            data = self.sock.recv(max(self._decoder.wanted(), 4096))
            if not data:
                raise ConnectionClosed("connection closed by peer")
            self._decoder.feed(data)

    def recv_file(
        self, sink: _Sink, size: int, hasher: Hasher, progress: Progress | None = None
    ) -> None:
        """Receive exactly ``size`` bytes of file data into ``sink``, hashing them.

        Into a :class:`GuardedWriter` on a file that :func:`can_splice`, big
        transfers go through :func:`~ftpproto.splicing.splice_file` (no copy
        through Python).  Otherwise one thread receives, hashes and writes
        each piece of at most 1 MiB while it is still in the CPU cache:
        BLAKE3 costs less than the two copies, and handing pieces to helper
        threads cost more than it saved.  ``progress`` is called with each
        piece's size (a progress bar, or a bandwidth limit that sleeps).
        """
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
        if (
            remaining >= SPLICE_MIN
            and isinstance(sink, GuardedWriter)
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
        return done

    def send_zeros(self, count: int) -> None:
        """Send ``count`` zero bytes (to keep the stream in step after a short file)."""
        zeros = bytes(min(count, CHUNK_SIZE))
        while count > 0:
            self.sock.sendall(zeros[: min(count, len(zeros))])
            count -= len(zeros)

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


class GuardedWriter:
    """Writes to a file descriptor until the first error, then discards the rest.

    A receiver that cannot write (a full disk, say) must still read every
    announced byte to keep the stream in step; the error is kept in
    :attr:`error` for the caller to raise once the transfer is over.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.error: OSError | None = None

    def write(self, data: bytes | memoryview) -> None:
        """Write all of ``data``, unless an earlier write failed."""
        if self.error is not None:
            return
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view) :]
        except OSError as exc:
            self.error = exc

    def splice_from(self, pipe: int, count: int) -> int:
        """Move ``count`` bytes from ``pipe`` into the file with ``splice``; the bytes moved.

        Fewer than ``count`` leaves the rest in the pipe: the file does not
        support splicing (``EINVAL``; the caller writes the rest with
        :meth:`write`), or it failed, and :attr:`error` holds why.
        """
        moved = 0
        if self.error is not None:
            return moved
        try:
            while moved < count:
                step = os.splice(pipe, self.fd, count - moved)
                if not step:
                    break
                moved += step
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                self.error = exc
        return moved


def file_digest(
    fileobj: BinaryIO, offset: int, size: int, hasher: Hasher | None = None
) -> tuple[Hasher, int]:
    """The file digest (or ``hasher`` continued) over ``size`` bytes of a file from ``offset``.

    Returns the hasher and the count read (less than ``size`` if the file is
    shorter); the file position is left alone.
    """
    hasher = hasher if hasher is not None else new_hasher()
    return hasher, hash_fd(hasher, fileobj.fileno(), offset, size)


class BackgroundDigest:
    """:func:`file_digest` in a helper thread, while this thread sends the file.

    The digest and ``os.preadv`` release the GIL, so the digest of a big
    file costs no extra time next to ``sendfile``.  :meth:`result` waits.
    """

    def __init__(self, fileobj: BinaryIO, offset: int, size: int, hasher: Hasher) -> None:
        self._count = 0
        self.hasher = hasher

        def run() -> None:
            try:
                self._count = file_digest(fileobj, offset, size, hasher)[1]
            except (OSError, ValueError):
                self._count = -1  # unreadable: the caller sees fewer bytes than asked

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def result(self) -> tuple[Hasher, int]:
        """The hasher and the bytes it read (fewer than asked if the file shrank)."""
        self._thread.join()
        return self.hasher, self._count
