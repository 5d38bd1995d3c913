"""File data on a channel: exact byte counts received or sent, hashed, within deadlines.

:class:`FileData` is the half of :class:`~ftpproto.channel.Channel` that
moves file data (the channel mixes it in; the messages, the replies owed and
the timeouts are the channel's).  Data is raw bytes to an exact count, so it
can never be taken for a message.  :class:`Deadlines` are the server's limits
on a peer; during file data at least ``min_rate`` bytes per second over every
``stall`` seconds (:class:`_RateWatch`), and no data for ``stall`` seconds
is :class:`~ftpproto.errors.DeadlineExceeded`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, BinaryIO, NamedTuple, Protocol

from ftpproto.digest import READ_PIECE, Hasher
from ftpproto.errors import ConnectionClosed, DeadlineExceeded
from ftpproto.splicing import SpliceSink, can_splice, splice_file

if TYPE_CHECKING:
    from ftpproto.framing import FrameDecoder

__all__ = ["CHUNK_SIZE", "SENDFILE_MIN", "SPLICE_MIN", "Deadlines", "FileData", "Progress"]

CHUNK_SIZE = 256 * 1024
SPLICE_MIN = 2 * 1024 * 1024  # from this size a receiver splices into the file
SENDFILE_MIN = 8 * 1024 * 1024  # from this size a sender hashes in a helper beside sendfile
Progress = Callable[[int], None]


class _Sink(Protocol):
    def write(self, data: bytes | memoryview, /) -> object: ...


class Deadlines(NamedTuple):
    """How long a peer may take: see :mod:`ftpproto.channel`."""

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


class FileData:
    """Receiving and sending file data; mixed into :class:`~ftpproto.channel.Channel`."""

    sock: socket.socket
    deadlines: Deadlines | None
    in_step: bool  # the outgoing stream ends at a frame boundary
    _decoder: FrameDecoder

    if TYPE_CHECKING:  # the channel's

        def pay(self, every: bool = True) -> None: ...

        def _pay_before_read(self) -> None: ...

        def _pay_while_readable(self) -> None: ...

        def _data_timeout(self) -> None: ...

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

        remaining = size
        if self._decoder.buffered and remaining:
            data = self._decoder.take_raw(remaining)
            hasher.update(data)
            sink.write(data)
            remaining -= len(data)
            on_piece(len(data))
        if remaining > READ_PIECE:  # a while before the next read: nothing owed waits it out
            self.pay()
        if (
            remaining >= SPLICE_MIN
            and isinstance(sink, SpliceSink)
            and sink.error is None
            and can_splice(self.sock, sink.fd)
        ):
            self._data_timeout()
            remaining -= splice_file(self.sock, sink, remaining, hasher, on_piece)
        view = memoryview(bytearray(min(remaining, READ_PIECE)))
        while remaining:
            piece = view[: min(remaining, READ_PIECE)]
            n = self._read_into_now(piece)
            if n >= 0:  # no wait: no deadline to set
                self._pay_while_readable()
            else:
                self._data_timeout()
                self._pay_before_read()
                n = self.sock.recv_into(piece)
            if n == 0:
                raise ConnectionClosed(f"connection closed with {remaining} bytes still to come")
            chunk = view[:n]
            hasher.update(chunk)
            sink.write(chunk)
            remaining -= n
            on_piece(n)

    def _plain_fd(self) -> int:
        """The socket's descriptor if a read on it never waits (-1 if it might, or must not).

        A plain socket with a timeout (or none: non-blocking) has a
        non-blocking descriptor.  A TLS socket's bytes must go through its
        decryption, and a blocking socket's read would wait.
        """
        sock = self.sock
        if type(sock) is not socket.socket or sock.gettimeout() is None:
            return -1
        return sock.fileno()

    def _read_now(self, size: int) -> bytes | None:
        """Up to ``size`` bytes the peer sent already; None if a read would wait (or might).

        One ``read(2)``: ``recv`` on a socket with a timeout polls first, and
        a deadline's timeout is set before it (a system call each, per
        message and per piece of file data).  Only where
        :meth:`_plain_fd` allows; b"" at the end of the stream.
        """
        fd = self._plain_fd()
        if fd < 0:
            return None
        try:
            return os.read(fd, size)
        except BlockingIOError:
            return None

    def _read_into_now(self, view: memoryview) -> int:
        """:meth:`_read_now` into ``view``: how many bytes came (0: the end), or -1."""
        fd = self._plain_fd()
        if fd < 0:
            return -1
        try:
            return os.readv(fd, [view])
        except BlockingIOError:
            return -1

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
