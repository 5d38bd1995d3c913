"""The benchmark's userland delay link, ``python -m bench.delayproxy``.

The real command forwards a port to an echo server: every byte comes back
whole and in order, no earlier than the delay allows, and an end of data
passes through as one. Both ways of holding the bytes are driven: spliced
through pipes (the default where the system can) and copied (``--copy``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.delayqueue import splice_works

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent
DELAY = 0.05
MODES = [pytest.param([], id="splice"), pytest.param(["--copy"], id="copy")]


def _echo(listener: socket.socket) -> None:
    """Send back everything one connection sends, then close it after its EOF.

    The listener closes once that connection is in: a second one is refused.
    """
    conn, _ = listener.accept()
    listener.close()
    with conn:
        while data := conn.recv(1 << 20):
            conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)


@pytest.fixture(params=MODES)
def link(request: pytest.FixtureRequest) -> Iterator[tuple[str, int]]:
    """An echo server on 127.0.0.2 and the proxy in front of it on 127.0.0.1, same port."""
    if not request.param and not splice_works():
        pytest.skip("this system cannot splice sockets (the proxy copies there)")
    listener = socket.create_server(("127.0.0.2", 0))
    port = listener.getsockname()[1]
    echo = threading.Thread(target=_echo, args=(listener,), daemon=True)
    echo.start()
    command = [sys.executable, "-m", "bench.delayproxy", "--delay", str(DELAY), *request.param]
    proxy = subprocess.Popen(
        [*command, "--listen", "127.0.0.1", "--target", "127.0.0.2", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proxy.stdout is not None and proxy.stdout.readline().strip() == "ready"
        yield "127.0.0.1", port
    finally:
        proxy.terminate()
        proxy.wait(10)
        listener.close()


def test_bytes_come_back_whole_in_order_and_delayed(link: tuple[str, int]) -> None:
    payload = os.urandom(12 * 1024 * 1024 + 17)
    received = bytearray()
    with socket.create_connection(link, timeout=20) as sock:
        started = time.monotonic()
        sock.sendall(b"x")
        received += sock.recv(1)
        first = time.monotonic() - started
        sender = threading.Thread(target=sock.sendall, args=(payload,))
        sender.start()
        while len(received) < len(payload) + 1:
            chunk = sock.recv(1 << 20)
            assert chunk, "the link closed early"
            received += chunk
        sender.join()
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(1) == b"", "the echo server's EOF did not come through"
    assert bytes(received) == b"x" + payload
    # The connection opens after three one-way delays, the byte then crosses twice.
    assert first >= 5 * DELAY * 0.9, first


def test_a_refused_upstream_closes_the_client_side(link: tuple[str, int]) -> None:
    with socket.create_connection(link, timeout=20) as first:
        first.sendall(b"x")
        assert first.recv(1) == b"x"  # the echo server took this one and stopped listening
        with socket.create_connection(link, timeout=20) as second:
            second.sendall(b"lost")
            # closed with the unread bytes: an EOF or a reset, both as it should be
            with contextlib.suppress(ConnectionResetError):
                assert second.recv(16) == b""
