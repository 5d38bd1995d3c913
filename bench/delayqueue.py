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
from typing import Generic, Protocol, TypeVar

__all__ = ["COALESCE", "CopyQueue", "DelayQueue", "PipePool", "SpliceQueue", "splice_works"]

CHUNK = 256 * 1024
PIPE_SIZE = 1024 * 1024
COALESCE = 0.001
_FLAGS = getattr(os, "SPLICE_F_NONBLOCK", 0) | getattr(os, "SPLICE_F_MOVE", 0)
Pipe = tuple[int, int]  # read end, write end
Item = TypeVar("Item")


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


class _Held(Generic[Item]):
    """Bytes waiting to be written (no item: the EOF), and when they are due."""

    __slots__ = ("due", "item", "size")

    def __init__(self, due: float, item: Item | None, size: int) -> None:
        self.due, self.item, self.size = due, item, size


class _Queue(Generic[Item]):
    """What both kinds share: the sockets, the queue of what is held, writing it when due.

    A kind says how its items are sent (:meth:`_send`, the count sent) and
    what happens to one once it is all sent (:meth:`_sent`).
    """

    def __init__(self, source: socket.socket, sink: socket.socket, limit: int) -> None:
        self.source, self.sink, self.limit = source, sink, limit
        self.queue: collections.deque[_Held[Item]] = collections.deque()
        self.queued = 0
        self.eof_read = False
        self.done = False

    def wants_read(self) -> bool:
        return not self.eof_read and self.queued < self.limit

    def due(self) -> float | None:
        return self.queue[0].due if self.queue else None

    def write(self, now: float) -> None:
        while self.queue and self.queue[0].due <= now:
            held = self.queue[0]
            if held.item is None:  # the EOF is due: pass it on
                self.queue.popleft()
                self.done = True
                with contextlib.suppress(OSError):
                    self.sink.shutdown(socket.SHUT_WR)
                return
            try:
                sent = self._send(held.item, held.size)
            except BlockingIOError:
                return
            except OSError:  # the sink is gone: drop everything, read nothing more
                self.close()
                self.done = self.eof_read = True
                return
            held.size -= sent
            self.queued -= sent
            if held.size:
                return
            self.queue.popleft()
            self._sent(held.item)

    def close(self) -> None:
        self.queue.clear()
        self.queued = 0

    def _send(self, item: Item, size: int) -> int:
        raise NotImplementedError

    def _sent(self, item: Item) -> None:
        """``item`` is all written."""


class CopyQueue(_Queue[memoryview]):
    """Bytes read into the process and sent from it."""

    def read(self, due: float) -> None:
        try:
            data = self.source.recv(CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        self.eof_read = not data
        self.queue.append(_Held(due, memoryview(data) if data else None, len(data)))
        self.queued += len(data)

    def _send(self, item: memoryview, size: int) -> int:
        return self.sink.send(item[len(item) - size :])


class PipePool:
    """Pipes for :class:`SpliceQueue`, kept open for reuse and closed together."""

    def __init__(self) -> None:
        self.free: list[Pipe] = []
        self.opened: list[Pipe] = []

    def take(self) -> Pipe:
        if self.free:
            return self.free.pop()
        pipe = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        with contextlib.suppress(OSError):
            fcntl.fcntl(pipe[1], fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        self.opened.append(pipe)
        return pipe

    def give(self, pipe: Pipe) -> None:
        self.free.append(pipe)

    def close(self) -> None:
        for pipe in self.opened:
            for fd in pipe:
                os.close(fd)
        self.opened.clear()
        self.free.clear()


class SpliceQueue(_Queue[Pipe]):
    """Bytes moved socket → pipe → socket by the kernel, never copied through Python."""

    def __init__(
        self, source: socket.socket, sink: socket.socket, limit: int, pool: PipePool
    ) -> None:
        super().__init__(source, sink, limit)
        self.pool = pool

    def _splice_in(self, pipe: Pipe) -> int | None:
        """Bytes moved from the source into ``pipe``: None when nothing could move, 0 at EOF."""
        try:
            return os.splice(self.source.fileno(), pipe[1], PIPE_SIZE, flags=_FLAGS)
        except BlockingIOError:
            return None
        except OSError:
            return 0

    def read(self, due: float) -> None:
        last = self.queue[-1] if self.queue else None
        if last is not None and last.item is not None and last.due >= due - COALESCE:
            moved = self._splice_in(last.item)
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

    def _send(self, item: Pipe, size: int) -> int:
        return os.splice(item[0], self.sink.fileno(), size, flags=_FLAGS)

    def _sent(self, item: Pipe) -> None:
        self.pool.give(item)

    def close(self) -> None:
        """Drain what is left out of the pipes before they go back to the pool."""
        while self.queue:
            held = self.queue.popleft()
            if held.item is not None:
                _drain(held.item[0], held.size)
                self.pool.give(held.item)
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
