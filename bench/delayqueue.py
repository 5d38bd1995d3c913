"""The two ways :mod:`bench.delayproxy` holds one direction's bytes for the delay.

Both queue what they read with the time it is due and write it out once due,
so any amount of data can be in flight, in order, up to ``limit`` bytes.

- :class:`SpliceQueue` (Linux) never copies the bytes through the process:
  each read is ``splice``\\ d from the source socket into a pipe, and the pipe
  is spliced into the sink once due.  A read due within ``COALESCE`` seconds
  of the queue's last one joins that one's pipe, so the number of pipes stays
  near the number of milliseconds of delay.  Pipes are reused from a pool.
- :class:`CopyQueue` reads into Python bytes and sends them, for systems
  without ``os.splice``.

The userland link costs CPU, and on a small machine that CPU is taken from the
programs being measured; splicing cuts it to the system calls.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import os
import socket
from typing import Protocol

__all__ = ["COALESCE", "CopyQueue", "DelayQueue", "PipePool", "SpliceQueue", "splice_works"]

CHUNK = 256 * 1024
PIPE_SIZE = 1024 * 1024
COALESCE = 0.001
_FLAGS = getattr(os, "SPLICE_F_NONBLOCK", 0) | getattr(os, "SPLICE_F_MOVE", 0)


class DelayQueue(Protocol):
    """One direction of a proxied connection."""

    source: socket.socket
    sink: socket.socket
    done: bool

    def wants_read(self) -> bool:
        """Whether the source should be read: no EOF yet and below the byte limit."""

    def due(self) -> float | None:
        """When the oldest queued bytes are due, or None when nothing is queued."""

    def read(self, due: float) -> None:
        """Read what the source has, to be written at ``due``."""

    def write(self, now: float) -> None:
        """Write what is due at ``now``, as far as the sink takes it."""

    def close(self) -> None:
        """Release what the queue holds (its pipes)."""


class _Queue:
    """What both kinds share: the sockets, the byte count and the EOF flags."""

    def __init__(self, source: socket.socket, sink: socket.socket, limit: int) -> None:
        self.source, self.sink, self.limit = source, sink, limit
        self.queued = 0
        self.eof_read = False
        self.done = False

    def wants_read(self) -> bool:
        return not self.eof_read and self.queued < self.limit

    def _finish(self) -> None:
        """The EOF is due: pass it on."""
        self.done = True
        with contextlib.suppress(OSError):
            self.sink.shutdown(socket.SHUT_WR)

    def _broken(self) -> None:
        """The sink is gone: drop everything, read nothing more."""
        self.done = self.eof_read = True
        self.queued = 0


class CopyQueue(_Queue):
    """Bytes read into the process and sent from it."""

    def __init__(self, source: socket.socket, sink: socket.socket, limit: int) -> None:
        super().__init__(source, sink, limit)
        self.queue: collections.deque[tuple[float, memoryview]] = collections.deque()

    def due(self) -> float | None:
        return self.queue[0][0] if self.queue else None

    def read(self, due: float) -> None:
        try:
            data = self.source.recv(CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        self.eof_read = not data
        self.queue.append((due, memoryview(data)))
        self.queued += len(data)

    def write(self, now: float) -> None:
        while self.queue and self.queue[0][0] <= now:
            due, data = self.queue[0]
            if not data:
                self.queue.popleft()
                self._finish()
                return
            try:
                sent = self.sink.send(data)
            except BlockingIOError:
                return
            except OSError:
                self.queue.clear()
                self._broken()
                return
            self.queued -= sent
            if sent < len(data):
                self.queue[0] = (due, data[sent:])
                return
            self.queue.popleft()

    def close(self) -> None:
        self.queue.clear()


class PipePool:
    """Pipes for :class:`SpliceQueue`, kept open for reuse and closed together."""

    def __init__(self) -> None:
        self.free: list[tuple[int, int]] = []
        self.opened: list[tuple[int, int]] = []

    def take(self) -> tuple[int, int]:
        if self.free:
            return self.free.pop()
        pipe = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        with contextlib.suppress(OSError):
            fcntl.fcntl(pipe[1], fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        self.opened.append(pipe)
        return pipe

    def give(self, pipe: tuple[int, int]) -> None:
        self.free.append(pipe)

    def close(self) -> None:
        for pipe in self.opened:
            for fd in pipe:
                os.close(fd)
        self.opened.clear()
        self.free.clear()


class _Held:
    """Bytes waiting in one pipe (no pipe: the EOF), and when they are due."""

    __slots__ = ("due", "pipe", "size")

    def __init__(self, due: float, pipe: tuple[int, int] | None, size: int) -> None:
        self.due, self.pipe, self.size = due, pipe, size


class SpliceQueue(_Queue):
    """Bytes moved socket → pipe → socket by the kernel, never copied through Python."""

    def __init__(
        self, source: socket.socket, sink: socket.socket, limit: int, pool: PipePool
    ) -> None:
        super().__init__(source, sink, limit)
        self.pool = pool
        self.queue: collections.deque[_Held] = collections.deque()

    def due(self) -> float | None:
        return self.queue[0].due if self.queue else None

    def _splice_in(self, pipe: tuple[int, int]) -> int | None:
        """Bytes moved from the source into ``pipe``: None when nothing could move, 0 at EOF."""
        try:
            return os.splice(self.source.fileno(), pipe[1], PIPE_SIZE, flags=_FLAGS)
        except BlockingIOError:
            return None
        except OSError:
            return 0

    def read(self, due: float) -> None:
        last = self.queue[-1] if self.queue else None
        if last is not None and last.pipe is not None and last.due >= due - COALESCE:
            moved = self._splice_in(last.pipe)
            if moved:
                last.size += moved
                self.queued += moved
                return
        pipe = self.pool.take()
        moved = self._splice_in(pipe)
        if moved is None:
            self.pool.give(pipe)
            return
        if moved == 0:
            self.pool.give(pipe)
            self.eof_read = True
            self.queue.append(_Held(due, None, 0))
            return
        self.queue.append(_Held(due, pipe, moved))
        self.queued += moved

    def write(self, now: float) -> None:
        while self.queue and self.queue[0].due <= now:
            held = self.queue[0]
            if held.pipe is None:
                self.queue.popleft()
                self._finish()
                return
            try:
                sent = os.splice(held.pipe[0], self.sink.fileno(), held.size, flags=_FLAGS)
            except BlockingIOError:
                return
            except OSError:
                self.close()
                self._broken()
                return
            held.size -= sent
            self.queued -= sent
            if held.size:
                return
            self.queue.popleft()
            self.pool.give(held.pipe)

    def close(self) -> None:
        """Drain what is left out of the pipes before they go back to the pool."""
        while self.queue:
            held = self.queue.popleft()
            if held.pipe is not None:
                _drain(held.pipe[0], held.size)
                self.pool.give(held.pipe)
        self.queued = 0


def _drain(fd: int, size: int) -> None:
    """Throw away ``size`` bytes left in a pipe."""
    while size > 0:
        try:
            chunk = os.read(fd, min(size, CHUNK))
        except OSError:
            return
        if not chunk:
            return
        size -= len(chunk)


def splice_works() -> bool:
    """Whether this system can splice a TCP socket into a pipe and back."""
    if not hasattr(os, "splice"):
        return False
    try:
        listener = socket.create_server(("127.0.0.1", 0))
        with listener, socket.create_connection(listener.getsockname()) as left:
            right, _ = listener.accept()
            with right:
                left.sendall(b"x")
                read, write = os.pipe()
                try:
                    os.splice(right.fileno(), write, 1)
                    os.splice(read, left.fileno(), 1)
                finally:
                    os.close(read)
                    os.close(write)
        return True
    except OSError:
        return False
