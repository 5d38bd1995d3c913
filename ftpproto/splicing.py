"""Receiving file data without copying it through Python: ``splice(2)`` and a memory map.

``recv_into`` then ``write`` copies every byte twice, socket to buffer and
buffer to the file's pages, and the digest reads the buffer between them.
Here the kernel moves the socket's bytes into a pipe and from the pipe into
the file (one copy), and the digest reads the file's pages through a
read-only memory map of what was just written, 32 MiB at a time.  Measured on
a 1 GiB loopback download with the real client: about 1800 MiB/s and 0.56
CPU-seconds, against 1550 MiB/s and 0.68 for the copying loop (see
docs/PERFORMANCE.md).

:func:`can_splice` says when this applies: Linux (``os.splice``), a plain
socket (TLS must decrypt in user space), and a regular file opened for
reading and writing (to map it).  :func:`splice_file` also needs a 1 MiB pipe;
the kernel refuses that once the user's pipes hold their limit
(``/proc/sys/fs/pipe-user-pages-soft``), and the caller then receives the
usual way.

When this thread may run on more than one CPU, the windows of a transfer
of two windows or more are hashed in a helper thread while this one goes
on splicing (BLAKE3 releases the GIL), 8 MiB at a time: the receiving
thread then costs about 0.53 CPU-seconds per GiB instead of 0.7, and the
digest (0.27) runs on the other core; a 1 GiB download went from about
1200-1400 to 1650 MiB/s (see docs/PERFORMANCE.md, issue 19).  Pinned to one CPU (a server worker)
the windows are hashed inline, 32 MiB at a time: a helper there could only
take turns with this thread, and one that unpinned itself made uploads no
faster.

The map is only read over bytes this process has just written.  A process
that truncated the file at that moment would make the read fault (SIGBUS),
so the receiver must own the file: the server's upload files have random
names created with ``O_EXCL``, and the client locks its ``.part`` file.

The file the data goes into is a :class:`SpliceSink` (the channel checks).
:func:`hash_fd` reads a file into a digest without moving its position; the
fallback here when mapping fails, and ``ftpfiles`` for whole-file digests.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import queue
import select
import socket
import stat
import threading
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from ftpproto.digest import READ_PIECE, Hasher
from ftpproto.errors import ConnectionClosed

__all__ = [
    "HASH_WINDOW",
    "HELPER_WINDOW",
    "PIPE_SIZE",
    "SpliceSink",
    "can_splice",
    "hash_fd",
    "splice_file",
]

PIPE_SIZE = 1024 * 1024  # measured: a 256 KiB pipe was 30% slower
HASH_WINDOW = 32 * 1024 * 1024  # inline; measured: 2-8 MiB windows cost more in mapping
HELPER_WINDOW = 8 * 1024 * 1024  # in a helper: the same CPU as 32 MiB; the digest keeps closer
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


@runtime_checkable
class SpliceSink(Protocol):
    """A file that received data may be spliced into (``ftpfiles.files.GuardedWriter``).

    ``write`` takes what cannot be spliced; after a failed write or splice
    ``error`` holds the error and later data is dropped.
    """

    fd: int
    error: OSError | None

    def write(self, data: bytes | memoryview, /) -> object: ...

    def splice_from(self, pipe: int, count: int, /) -> int:
        """Move up to ``count`` bytes from ``pipe`` into the file; the count moved."""
        ...


def hash_fd(
    hasher: Hasher, fd: int, offset: int, size: int, buffer: memoryview | None = None
) -> int:
    """Feed ``size`` bytes of the file ``fd`` from ``offset`` to ``hasher``; the count read.

    Fewer than ``size`` means the file is shorter.  Reads with ``os.preadv``
    into one reused buffer (``buffer``, pieces of its length, or a new one
    of up to :data:`READ_PIECE`), so the file position is left alone and no
    memory is allocated per piece.
    """
    if buffer is None:
        buffer = memoryview(bytearray(min(size, READ_PIECE)))
    piece = len(buffer)
    done = 0
    while done < size:
        n = os.preadv(fd, [buffer[: min(size - done, piece)]], offset + done)
        if not n:
            break
        hasher.update(buffer[:n])
        done += n
    return done


def can_splice(sock: socket.socket, fd: int) -> bool:
    """Whether :func:`splice_file` can receive from ``sock`` into ``fd``."""
    import ssl  # here, not at the top: a client without TLS starts 10-20 ms sooner

    if not hasattr(os, "splice") or isinstance(sock, ssl.SSLSocket):
        return False
    try:
        readable = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDWR
        return readable and stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        return False


def _open_pipe() -> tuple[int, int] | None:
    """A pipe that holds :data:`PIPE_SIZE` bytes, or None if the kernel refuses the size."""
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        fcntl.fcntl(write_end, _F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:
        os.close(read_end)
        os.close(write_end)
        return None
    return read_end, write_end


def _hash_written(hasher: Hasher, fd: int, start: int, end: int) -> None:
    """Feed bytes ``start`` to ``end`` of the file to ``hasher`` through a memory map.

    Falls back to reading them where the file cannot be mapped, or is
    suddenly shorter (the digest then fails to match, a clean error).
    """
    if end <= start:
        return
    base = start - start % mmap.ALLOCATIONGRANULARITY
    try:
        mapped = mmap.mmap(fd, end - base, prot=mmap.PROT_READ, offset=base)
        with mapped, memoryview(mapped) as view:
            hasher.update(view[start - base :])
    except (OSError, ValueError):
        hash_fd(hasher, fd, start, end - start)


def _spare_cpu() -> bool:
    """Whether this thread may run on more than one CPU (a server worker is pinned to one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) > 1
    return (os.cpu_count() or 1) > 1


class _Windows:
    """Hashes the file's windows in order, in a helper thread when there is a spare CPU.

    :meth:`add` hands a finished window over and returns at once; the
    helper maps and hashes it while the caller goes on receiving.
    :meth:`finish` waits until every window is hashed, :meth:`close` (after
    an error) lets the helper drop what is left and waits for it, so the
    file is never read after the caller is done with it.
    """

    def __init__(self, hasher: Hasher, fd: int, count: int) -> None:
        self.hasher = hasher
        self.fd = fd
        self.helper = count >= 2 * HELPER_WINDOW and _spare_cpu()
        self.size = HELPER_WINDOW if self.helper else HASH_WINDOW
        self._queue: queue.SimpleQueue[tuple[int, int] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._dropped = False

    def add(self, start: int, end: int) -> None:
        """Hash bytes ``start`` to ``end`` after the windows before them."""
        if not self.helper:
            _hash_written(self.hasher, self.fd, start, end)
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="hash-windows", daemon=True)
            self._thread.start()
        self._queue.put((start, end))

    def finish(self) -> None:
        """Wait until every window is hashed; raise what the helper failed with."""
        self._join()
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Stop hashing (the transfer failed) and wait for the helper to be done."""
        self._dropped = True
        self._join()

    def _join(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while (window := self._queue.get()) is not None:
            if self._error is None and not self._dropped:
                try:
                    _hash_written(self.hasher, self.fd, *window)
                except BaseException as exc:  # raised in the receiving thread by finish()
                    self._error = exc


class _Reader:
    """Splices from a socket into a pipe, waiting as the socket's timeout allows."""

    def __init__(self, sock: socket.socket, pipe: int) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.pipe = pipe
        self.poller = select.poll()
        self.poller.register(self.fd, select.POLLIN)

    def splice(self, count: int) -> int:
        """Move up to ``count`` bytes that arrived into the pipe; the count moved (never 0)."""
        while True:
            try:
                moved = os.splice(self.fd, self.pipe, count, flags=os.SPLICE_F_MOVE)
            except BlockingIOError:  # a socket with a timeout is non-blocking underneath
                timeout = self.sock.gettimeout()
                if not self.poller.poll(None if timeout is None else timeout * 1000):
                    raise TimeoutError("timed out") from None
                continue
            if moved == 0:
                raise ConnectionClosed(f"connection closed with {count} or more bytes to come")
            return moved


def splice_file(
    sock: socket.socket,
    writer: SpliceSink,
    count: int,
    hasher: Hasher,
    on_piece: Callable[[int], None],
) -> int:
    """Receive up to ``count`` bytes into the writer's file at its position, hashing them.

    ``on_piece`` is called with the size of each piece received.  Returns how
    many bytes were received; the caller receives the rest the usual way.
    That is fewer than ``count`` when no pipe could be had (0), or when the
    file refused a piece: then what had arrived is hashed and handed to
    ``writer.write``, which writes it where splicing was merely not supported
    and drops it after a write error (kept in ``writer.error``).
    """
    pipe = _open_pipe()
    if pipe is None:
        return 0
    read_end, write_end = pipe
    fd = writer.fd
    start = os.lseek(fd, 0, os.SEEK_CUR)
    reader = _Reader(sock, write_end)
    windows = _Windows(hasher, fd, count)
    received = hashed = 0
    try:
        while received < count:
            arrived = reader.splice(min(count - received, PIPE_SIZE))
            moved = writer.splice_from(read_end, arrived)
            if moved < arrived:
                windows.add(start + hashed, start + received + moved)
                windows.finish()
                _drain(read_end, arrived - moved, hasher, writer)
                on_piece(arrived)
                return received + arrived
            received += arrived
            if received - hashed >= windows.size:
                windows.add(start + hashed, start + received)
                hashed = received
            on_piece(arrived)
        windows.add(start + hashed, start + received)
        windows.finish()
        return received
    finally:
        windows.close()  # after an error: the helper is done before the file is closed
        os.close(read_end)
        os.close(write_end)


def _drain(pipe: int, count: int, hasher: Hasher, writer: SpliceSink) -> None:
    """Read the ``count`` bytes left in ``pipe``, hash them and pass them to ``writer.write``."""
    buffer = memoryview(bytearray(min(count, PIPE_SIZE)))
    while count:
        n = os.readv(pipe, [buffer[: min(count, len(buffer))]])
        if not n:
            raise ConnectionClosed("the pipe lost received bytes")  # cannot happen
        chunk = buffer[:n]
        hasher.update(chunk)
        writer.write(chunk)
        count -= n
