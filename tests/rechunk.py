"""A TCP proxy that re-chunks both directions at random, for the end-to-end tests.

:class:`RechunkProxy` listens on 127.0.0.1, port 0, and forwards every
connection to a target port.  Each direction is read as it comes and written
on in pieces of a random size from 1 byte to 64 KiB, each piece sent on its
own (``TCP_NODELAY`` on both legs), so the receiver sees the stream split and
merged at arbitrary points: frames cut anywhere, several frames in one
segment, a frame and the start of file data together.  The sizes are
log-uniform, so small pieces are common but big transfers stay fast.

The proxy is transparent to the rest: an end of stream is passed on as a
half-close (``shutdown(SHUT_WR)``) after every byte before it; a reset
received on one leg resets the other, but only once the bytes that arrived
before it were passed on (a peer that answers and then resets, like a server
refusing a session, is still heard); and when the proxy cannot reach its
target the accepted connection is reset.  :meth:`RechunkProxy.close` stops
listening (new connections are refused, as by a stopped server) and resets
the connections still open.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import struct
import threading

__all__ = ["MAX_CHUNK", "RechunkProxy", "chunk_size"]

HOST = "127.0.0.1"
MAX_CHUNK = 64 * 1024
_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset


def chunk_size(rng: random.Random, largest: int = MAX_CHUNK) -> int:
    """A log-uniform size from 1 to ``largest`` bytes."""
    return max(1, min(largest, int(2 ** rng.uniform(0, largest.bit_length() - 1))))


def _reset(sock: socket.socket) -> None:
    """Close ``sock`` with a reset, waking any thread blocked on it first."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


class _Link:
    """The two legs of one proxied connection and how far each direction got."""

    def __init__(self, down: socket.socket, up: socket.socket) -> None:
        self.sockets = (down, up)
        self._lock = threading.Lock()
        self._open_directions = 2
        self.closed = False

    def direction_done(self, dest: socket.socket, clean: bool) -> None:
        """One direction ended; close both legs after the second.

        ``clean``: its source reached the end of the stream, so ``dest`` is
        half-closed (the peer reads everything sent, then the end).  Otherwise
        ``dest`` failed (its peer is gone) and the other direction goes on
        until it has passed on what that peer sent before it went.
        """
        with self._lock:
            if self.closed:
                return
            if clean:
                with contextlib.suppress(OSError):
                    dest.shutdown(socket.SHUT_WR)
            self._open_directions -= 1
            if self._open_directions:
                return
            self.closed = True
        for sock in self.sockets:
            sock.close()  # a leg with unread bytes sends a reset, as a closing peer would

    def abort(self) -> None:
        """A leg was reset by its peer: reset the other one too."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
        for sock in self.sockets:
            _reset(sock)


class RechunkProxy:
    """A re-chunking TCP proxy on 127.0.0.1, port 0, in front of ``target_port``.

    ``seed`` (default: ``$FTP_TEST_PROXY_SEED`` or random) seeds the chunk
    sizes; connection ``n`` uses ``seed + n``.  The counters tell a test that
    traffic did go through: ``connections``, ``chunks``, ``bytes`` and the
    smallest and largest piece sent.
    """

    def __init__(self, target_port: int, seed: int | None = None, max_chunk: int = MAX_CHUNK):
        if seed is None:
            env = os.environ.get("FTP_TEST_PROXY_SEED")
            seed = int(env) if env else random.randrange(2**32)
        self.target_port = target_port
        self.seed = seed
        self.max_chunk = max_chunk
        self.connections = 0
        self.chunks = 0
        self.bytes = 0
        self.smallest = max_chunk + 1
        self.largest = 0
        self._lock = threading.Lock()
        self._links: set[_Link] = set()
        self._closed = False
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((HOST, 0))
        self.listener.listen(1024)
        self.port: int = self.listener.getsockname()[1]
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"rechunk-{self.port}", daemon=True
        )
        self._acceptor.start()

    def __repr__(self) -> str:
        return f"RechunkProxy({self.port} -> {self.target_port}, seed={self.seed})"

    def _accept_loop(self) -> None:
        while True:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                index = self.connections
                self.connections += 1
            threading.Thread(
                target=self._serve, args=(down, index), name=f"rechunk-{index}", daemon=True
            ).start()

    def _serve(self, down: socket.socket, index: int) -> None:
        try:
            up = socket.create_connection((HOST, self.target_port), timeout=10)
        except OSError:
            _reset(down)
            return
        link = _Link(down, up)
        for sock in link.sockets:
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            if self._closed:
                link.abort()
                return
            self._links.add(link)
        try:
            seed = self.seed + index
            upward = threading.Thread(
                target=self._pump, args=(link, down, up, random.Random(seed)), daemon=True
            )
            upward.start()
            self._pump(link, up, down, random.Random(~seed))
            upward.join()
        finally:
            with self._lock:
                self._links.discard(link)

    def _pump(
        self, link: _Link, source: socket.socket, dest: socket.socket, rng: random.Random
    ) -> None:
        buffer = bytearray(self.max_chunk)
        view = memoryview(buffer)
        sizes: list[int] = []
        try:
            while True:
                try:
                    count = source.recv_into(buffer)
                except OSError:
                    link.abort()
                    return
                if count == 0:
                    link.direction_done(dest, clean=True)
                    return
                done = 0
                while done < count:
                    size = min(count - done, chunk_size(rng, self.max_chunk))
                    try:
                        dest.sendall(view[done : done + size])
                    except OSError:
                        link.direction_done(dest, clean=False)
                        return
                    sizes.append(size)
                    done += size
                if len(sizes) >= 256:
                    self._count(sizes)
        finally:
            self._count(sizes)

    def _count(self, sizes: list[int]) -> None:
        if not sizes:
            return
        with self._lock:
            self.chunks += len(sizes)
            self.bytes += sum(sizes)
            self.smallest = min(self.smallest, *sizes)
            self.largest = max(self.largest, *sizes)
        sizes.clear()

    def close(self) -> None:
        """Stop listening (connections are refused from now on) and reset every open link."""
        with self._lock:
            self._closed = True
            links = list(self._links)
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() in progress
        self.listener.close()
        self._acceptor.join(timeout=5)
        for link in links:
            link.abort()
