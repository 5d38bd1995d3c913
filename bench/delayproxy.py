"""A userland link with a fixed one-way delay, for when netem is missing.

``python -m bench.delayproxy --delay 0.025 --listen 127.0.0.1 --target 127.0.0.2 PORT...``
listens on ``LISTEN:PORT`` for every port given and forwards each connection
to ``TARGET:PORT``, holding every byte ``--delay`` seconds in each direction.
It prints ``ready`` once every port listens, and runs until SIGTERM.

The delay is not a sleep per chunk (that would cap throughput at one chunk
per delay): every chunk read is stamped with the time it is due, queued, and
written when due, so any amount of data can be in flight, in order.  A
connection is set up as TCP would be over such a link: the upstream side is
opened three delays after the client connected (SYN, SYN-ACK, ACK), and
nothing the client sends arrives before that.  What the proxy does not model
is TCP's own window over the link: each side's TCP only sees loopback, so
the proxy holds at most ``--buffer`` bytes per direction (then stops reading,
which pushes back on the sender).

On Linux the bytes are spliced through pipes and never copied into the
process (:mod:`bench.delayqueue`), so the link takes little CPU from the
programs measured; ``--copy`` forces the older copying queue.
"""

from __future__ import annotations

import argparse
import heapq
import selectors
import signal
import socket
import sys
import time
from types import FrameType

from bench.delayqueue import CopyQueue, DelayQueue, PipePool, SpliceQueue, splice_works

__all__ = ["Proxy", "main"]


class Pair:
    """One proxied connection: client side, upstream side, both directions."""

    def __init__(self, client: socket.socket, target: tuple[str, int], opens: float) -> None:
        self.client, self.target, self.opens = client, target, opens
        self.upstream: socket.socket | None = None
        self.directions: list[DelayQueue] = []

    def open(self, limit: int, pool: PipePool | None) -> None:
        upstream = socket.create_connection(self.target, timeout=10)
        upstream.setblocking(False)
        self.client.setblocking(False)
        for sock in (upstream, self.client):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.upstream = upstream
        ends = [(self.client, upstream), (upstream, self.client)]
        if pool is None:
            self.directions = [CopyQueue(source, sink, limit) for source, sink in ends]
        else:
            self.directions = [SpliceQueue(source, sink, limit, pool) for source, sink in ends]

    def close(self) -> None:
        for direction in self.directions:
            direction.close()
        for sock in (self.client, self.upstream):
            if sock is not None:
                sock.close()


class Proxy:
    """The event loop: listeners, pending connections and the open pairs."""

    def __init__(self, delay: float, limit: int, splice: bool) -> None:
        self.delay, self.limit = delay, limit
        self.pool = PipePool() if splice else None
        self.listeners: dict[socket.socket, tuple[str, int]] = {}
        self.pending: list[tuple[float, int, Pair]] = []
        self.pairs: list[Pair] = []
        self.counter = 0

    def listen(self, host: str, port: int, target: tuple[str, int]) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(256)
        sock.setblocking(False)
        self.listeners[sock] = target

    def _accept(self, listener: socket.socket, now: float) -> None:
        try:
            client, _ = listener.accept()
        except BlockingIOError:
            return
        pair = Pair(client, self.listeners[listener], now + 3 * self.delay)
        self.counter += 1
        heapq.heappush(self.pending, (pair.opens, self.counter, pair))

    def step(self, selector: selectors.DefaultSelector) -> None:
        """One round: open due upstreams, wait for sockets or the next due chunk, move bytes."""
        now = time.monotonic()
        while self.pending and self.pending[0][0] <= now:
            pair = heapq.heappop(self.pending)[2]
            try:
                pair.open(self.limit, self.pool)
                self.pairs.append(pair)
            except OSError:
                pair.close()
        wanted: dict[socket.socket, int] = {sock: selectors.EVENT_READ for sock in self.listeners}
        deadlines = [self.pending[0][0]] if self.pending else []
        for pair in self.pairs:
            for direction in pair.directions:
                if direction.wants_read():
                    wanted[direction.source] = wanted.get(direction.source, 0) | 1
                due = direction.due()
                if due is not None:
                    if due <= now:
                        wanted[direction.sink] = wanted.get(direction.sink, 0) | 2
                    else:
                        deadlines.append(due)
        for sock, events in wanted.items():
            selector.register(sock, events)
        try:
            timeout = max(0.0, min(deadlines) - now) if deadlines else 1.0
            ready = selector.select(timeout)
        finally:
            for sock in wanted:
                selector.unregister(sock)
        now = time.monotonic()
        readable = {key.fileobj for key, events in ready if events & selectors.EVENT_READ}
        for listener in self.listeners:
            if listener in readable:
                self._accept(listener, now)
        for pair in self.pairs:
            for direction in pair.directions:
                if direction.source in readable and direction.wants_read():
                    direction.read(now + self.delay)
                direction.write(now)
        finished = [p for p in self.pairs if all(d.done for d in p.directions)]
        for pair in finished:
            pair.close()
            self.pairs.remove(pair)

    def close(self) -> None:
        for pair in self.pairs:
            pair.close()
        for listener in self.listeners:
            listener.close()
        if self.pool is not None:
            self.pool.close()


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    """Forward the given ports with the delay until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m bench.delayproxy")
    parser.add_argument("--delay", type=float, required=True, help="one-way delay, seconds")
    parser.add_argument("--listen", default="127.0.0.1")
    parser.add_argument("--target", default="127.0.0.2")
    parser.add_argument("--buffer", type=int, default=64 * 1024 * 1024, help="bytes per direction")
    parser.add_argument(
        "--copy", action="store_true", help="copy bytes through the process, not splice"
    )
    parser.add_argument("ports", type=int, nargs="+")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    proxy = Proxy(args.delay, args.buffer, splice=not args.copy and splice_works())
    for port in args.ports:
        proxy.listen(args.listen, port, (args.target, port))
    print("ready", flush=True)
    selector = selectors.DefaultSelector()
    try:
        while True:
            proxy.step(selector)
    finally:
        proxy.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
