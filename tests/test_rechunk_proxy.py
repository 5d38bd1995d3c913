"""The re-chunking proxy every end-to-end test goes through (``tests/rechunk.py``).

It must be exact (every byte, in order, both ways), really re-chunk (pieces
from 1 byte up), and pass on the ends of a connection as a peer would see
them: a half-close, a reset, an answer followed by a reset, a refused
connection once it is closed.  And the fixtures must hand out its port.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import (
    ALICE,
    ALICE_PASSWORD,
    HOST,
    PROXY_ALL,
    RunningServer,
    ServerProcess,
    digest_of,
    recv_exactly,
    wait_until,
)
from rechunk import MAX_CHUNK, RechunkProxy, chunk_size

from ftpclient.client import FileTransferClient

pytestmark = pytest.mark.timeout(30)

MIB = 1024 * 1024
Handler = Callable[[socket.socket], None]


class Target:
    """A one-connection-at-a-time TCP server running ``handler`` on each connection."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.errors: list[BaseException] = []
        self.done = threading.Event()
        self.listener = socket.create_server((HOST, 0))
        self.port: int = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            try:
                self.handler(conn)
            except BaseException as exc:  # reported by the test
                self.errors.append(exc)
            finally:
                self.done.set()

    def close(self) -> None:
        self.listener.close()


Through = Callable[[Handler], tuple["Target", RechunkProxy]]


@pytest.fixture
def through() -> Iterator[Through]:
    """A factory: a Target running ``handler`` behind a new RechunkProxy."""
    made: list[tuple[Target, RechunkProxy]] = []

    def make(handler: Handler) -> tuple[Target, RechunkProxy]:
        target = Target(handler)
        made.append((target, RechunkProxy(target.port)))
        return made[-1]

    yield make
    for target, proxy in made:
        proxy.close()
        target.close()


def dial(port: int) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_to_end(sock: socket.socket) -> tuple[bytes, list[int]]:
    """Everything until the end of the stream, and the size of each recv."""
    parts: list[bytes] = []
    while True:
        data = sock.recv(1 << 20)
        if not data:
            return b"".join(parts), [len(p) for p in parts]
        parts.append(data)


def test_chunk_sizes_are_log_uniform_from_1_byte_to_64_kib() -> None:
    rng = random.Random(7)
    sizes = [chunk_size(rng) for _ in range(20_000)]
    assert min(sizes) == 1 and max(sizes) > MAX_CHUNK // 2 and max(sizes) <= MAX_CHUNK
    small = sum(1 for s in sizes if s <= 16) / len(sizes)  # log2(16)/16 of them
    assert 0.2 < small < 0.3, f"{small:.2%} of the pieces are 16 bytes or less"


def test_every_byte_arrives_in_order_both_ways_and_re_chunked(through: Through) -> None:
    upward = os.urandom(3 * MIB + 17)
    downward = os.urandom(2 * MIB + 5)
    got: dict[str, object] = {}

    def handler(conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        got["data"], _ = read_to_end(conn)
        conn.sendall(downward)

    target, proxy = through(handler)
    with dial(proxy.port) as sock:
        sock.sendall(upward)
        sock.shutdown(socket.SHUT_WR)  # the target reads to the end, then answers
        answer, _ = read_to_end(sock)
    assert target.done.wait(10) and target.errors == []
    data = got["data"]
    assert isinstance(data, bytes)
    assert digest_of(data) == digest_of(upward)
    assert answer == downward, "the answer was changed on the way"
    total = len(upward) + len(downward)
    assert wait_until(lambda: proxy.bytes == total), f"{proxy.bytes} of {total} bytes counted"
    assert proxy.connections == 1
    assert proxy.smallest <= 64, f"no small pieces (smallest {proxy.smallest})"
    assert proxy.largest > 16 * 1024, f"no big pieces (largest {proxy.largest})"
    assert proxy.chunks > 100, f"{proxy.chunks} pieces for 5 MiB"


def test_a_half_close_is_passed_on_and_the_other_way_stays_open(through: Through) -> None:
    def handler(conn: socket.socket) -> None:
        data, _ = read_to_end(conn)  # ends only if the client's half-close came through
        conn.sendall(b"got " + data)

    target, proxy = through(handler)
    with dial(proxy.port) as sock:
        sock.sendall(b"question")
        sock.shutdown(socket.SHUT_WR)
        answer, _ = read_to_end(sock)
    assert answer == b"got question"
    assert target.done.wait(10) and target.errors == []


def test_an_answer_followed_by_a_reset_is_still_heard(through: Through) -> None:
    """Like a server refusing a session: it answers, then closes with the request unread."""
    request_seen = threading.Event()

    def handler(conn: socket.socket) -> None:
        assert conn.recv(1) == b"r"  # the rest of the request stays unread
        request_seen.set()
        conn.sendall(b"go away")
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    for _ in range(50):  # a race: the proxy must not drop the answer when its send fails
        _, proxy = through(handler)
        with dial(proxy.port) as sock:
            sock.sendall(b"request" * 100)
            assert request_seen.wait(10)
            received = bytearray()
            with contextlib.suppress(ConnectionResetError):
                while len(received) < 7 and (data := sock.recv(7 - len(received))):
                    received += data
        assert bytes(received) == b"go away", f"the answer before the reset was lost: {received!r}"


def test_a_reset_is_passed_on(through: Through) -> None:
    seen: list[bytes | str] = []

    def handler(conn: socket.socket) -> None:
        assert recv_exactly(conn, 5) == b"hello"
        try:
            while data := conn.recv(100):
                seen.append(data)
            seen.append("end")
        except ConnectionResetError:
            seen.append("reset")

    target, proxy = through(handler)
    sock = dial(proxy.port)
    sock.sendall(b"hello")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    assert target.done.wait(10), "the target never learnt that the client went"
    assert target.errors == [] and seen and seen[-1] in ("end", "reset"), seen


def test_an_unreachable_target_resets_the_client() -> None:
    with socket.socket() as unused:
        unused.bind((HOST, 0))
        dead = unused.getsockname()[1]
    proxy = RechunkProxy(dead)
    try:
        try:  # the reset may come before connect() returns (EPIPE) or on the first read
            with dial(proxy.port) as sock:
                data = sock.recv(1)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        assert data == b""
    finally:
        proxy.close()


def test_a_closed_proxy_refuses_connections_and_resets_open_ones(through: Through) -> None:
    def handler(conn: socket.socket) -> None:
        read_to_end(conn)

    _, proxy = through(handler)
    sock = dial(proxy.port)
    sock.sendall(b"x")
    proxy.close()
    try:
        assert sock.recv(1) == b""
    except ConnectionResetError:
        pass
    finally:
        sock.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((HOST, proxy.port), timeout=5)


def test_the_server_fixture_is_reached_through_the_proxy(server: RunningServer) -> None:
    """With the switch on (the default), ``server.port`` is a proxy's; else the server's."""
    if not PROXY_ALL:
        assert server.proxy is None and server.port == server.direct_port
        return
    assert server.proxy is not None and server.port == server.proxy.port
    assert server.port != server.direct_port
    before = server.proxy.connections
    server.assert_serving()
    assert server.proxy.connections == before + 1
    assert wait_until(lambda: server.proxy is not None and server.proxy.chunks > 0)


@pytest.mark.direct
def test_a_direct_mark_bypasses_the_proxy(server: RunningServer) -> None:
    assert server.proxy is None and server.port == server.direct_port
    server.assert_serving()


def test_a_server_process_is_reached_through_the_proxy_until_it_exits(
    users_file: Path, homes: Path, server_process: Callable[..., ServerProcess]
) -> None:
    """The proxy of a subprocess server stops listening once the exit is seen (wait/poll)."""
    running = server_process(users_file, homes)
    assert (running.proxy is not None) == PROXY_ALL
    assert (running.port != running.direct_port) == PROXY_ALL
    with FileTransferClient(HOST, running.port, timeout=10) as conn:
        assert conn.login(ALICE, ALICE_PASSWORD) == ALICE
        conn.quit()
    running.proc.terminate()
    assert running.proc.wait(timeout=10) == 0
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((HOST, running.port), timeout=5)
