"""``proxy_protocol: true`` on a real server: the client address comes from the PROXY header.

Raw connections to the server's own port send v1 and v2 headers as a
balancer would, then log in with the real protocol; the address a header
carries is the one per-IP limits, bans and audit lines use.  No header, an
untrusted sender, garbage and truncated headers are refused; a v2 LOCAL
header (a health check) is closed quietly; the server serves on.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import (
    ALICE,
    ALICE_PASSWORD,
    HOST,
    RawSession,
    RunningServer,
    error_of,
    subprocess_env,
)

from ftpproto.messages import Message
from ftpproto.proxyproto import encode_v1, encode_v2

pytestmark = pytest.mark.timeout(60)


class Proxied(RawSession):
    """A raw session to the server's own port that first sends ``header``."""

    def __init__(self, port: int, header: bytes, bind: str = HOST) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.bind((bind, 0))
        self.sock.connect((HOST, port))
        self.sock.sendall(header)
        from ftpproto.channel import Channel

        self.channel = Channel(self.sock)


@pytest.fixture
def proxied_server(make_configured_server: Callable[..., RunningServer]) -> RunningServer:
    return make_configured_server(
        proxy_protocol=True, max_sessions_per_ip=1, ban_failures=2, max_login_attempts=5
    )


@pytest.fixture
def sessions() -> Iterator[list[Proxied]]:
    made: list[Proxied] = []
    yield made
    for session in made:
        session.close()


def test_v1_and_v2_addresses_are_the_session_addresses(
    proxied_server: RunningServer, sessions: list[Proxied], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    port = proxied_server.direct_port
    first = Proxied(port, encode_v2(("10.9.0.1", 40000), (HOST, port)))
    sessions.append(first)
    first.login()
    assert "ip='10.9.0.1'" in caplog.text  # the audit line names the header's address
    # max_sessions_per_ip: 1 counts 10.9.0.1, whichever header version carries it
    second = Proxied(port, encode_v1(("10.9.0.1", 40001), (HOST, port)))
    sessions.append(second)
    assert error_of(second.recv())[1] == 421
    assert second.is_closed_by_server()
    # another client address behind the same balancer is its own
    for header in (encode_v1(("10.9.0.2", 1), (HOST, port)), encode_v2(("2001:db8::5", 2))):
        other = Proxied(port, header)
        sessions.append(other)
        other.login()
        assert other.call("pwd") == Message("pwd", ("ok", "/"))


def test_bans_follow_the_header_address(
    make_configured_server: Callable[..., RunningServer], sessions: list[Proxied]
) -> None:
    running = make_configured_server(proxy_protocol=True, ban_failures=2, max_login_attempts=5)
    port = running.direct_port
    bad = Proxied(port, encode_v2(("10.9.1.1", 1), (HOST, port)))
    sessions.append(bad)
    for _ in range(2):
        assert error_of(bad.call("login", ALICE, "wrong"))[1] == 430
    bad.close()
    again = Proxied(port, encode_v2(("10.9.1.1", 2), (HOST, port)))
    sessions.append(again)
    assert error_of(again.call("login", ALICE, ALICE_PASSWORD))[1] == 430  # banned
    again.close()
    fine = Proxied(port, encode_v2(("10.9.1.2", 3), (HOST, port)))
    sessions.append(fine)
    fine.login()


@pytest.mark.parametrize(
    "opening",
    [
        b"",  # no header: the client speaks the protocol at once
        b"PROXY TCP4 10.1.1.1 10.1.1.2 1\r\n",
        b"PROXY TCP4 10.1.1.1 10.1.1.2 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        encode_v2(("10.1.1.1", 1))[:10],  # truncated, then the client's frames
        encode_v2(("10.1.1.1", 1))[:13] + b"\x77" + encode_v2(("10.1.1.1", 1))[14:],
    ],
)
def test_missing_garbage_and_truncated_headers_are_refused(
    proxied_server: RunningServer,
    sessions: list[Proxied],
    opening: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    port = proxied_server.direct_port
    busy = Proxied(port, encode_v2(("10.9.2.1", 1), (HOST, port)))
    sessions.append(busy)
    busy.login()
    session = Proxied(port, opening)
    sessions.append(session)
    session.send_raw(session.frame("login", ALICE, ALICE_PASSWORD))
    assert session.is_closed_by_server(timeout=10)
    assert "refused 127.0.0.1:" in caplog.text
    assert busy.call("pwd") == Message("pwd", ("ok", "/"))  # the other session goes on


@pytest.mark.parametrize(
    "header", [encode_v2(("10.1.1.1", 1))[:-3], b"PROXY TCP4 10.1.1.1 10.1.1.2 1 2\r"]
)
def test_a_truncated_header_is_refused(
    proxied_server: RunningServer, sessions: list[Proxied], header: bytes
) -> None:
    session = Proxied(proxied_server.direct_port, header)
    sessions.append(session)
    session.sock.shutdown(socket.SHUT_WR)
    assert session.is_closed_by_server(timeout=10)


def test_a_header_that_never_ends_times_out_alone(
    proxied_server: RunningServer, sessions: list[Proxied]
) -> None:
    port = proxied_server.direct_port
    stalled = Proxied(port, b"PROXY TCP4 10.1")
    sessions.append(stalled)
    fresh = Proxied(port, encode_v1(("10.9.3.1", 1), (HOST, port)))
    sessions.append(fresh)
    fresh.login()  # served meanwhile
    assert stalled.is_closed_by_server(timeout=15)


def test_a_local_header_is_closed_quietly(
    proxied_server: RunningServer, sessions: list[Proxied], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    port = proxied_server.direct_port
    check = Proxied(port, encode_v2(None))
    sessions.append(check)
    assert check.is_closed_by_server()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_an_untrusted_sender_is_refused_and_logged(
    make_configured_server: Callable[..., RunningServer],
    sessions: list[Proxied],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    running = make_configured_server(proxy_protocol=True, proxy_trusted=("127.0.0.1/32",))
    port = running.direct_port
    outsider = Proxied(port, encode_v2(("10.9.4.1", 1), (HOST, port)), bind="127.0.0.2")
    sessions.append(outsider)
    assert outsider.is_closed_by_server()
    assert "refused 127.0.0.2:" in caplog.text and "not a trusted proxy" in caplog.text
    trusted = Proxied(port, encode_v2(("10.9.4.1", 1), (HOST, port)))
    sessions.append(trusted)
    trusted.login()


def test_without_proxy_protocol_a_header_is_just_bad_input(
    make_configured_server: Callable[..., RunningServer], sessions: list[Proxied]
) -> None:
    running = make_configured_server()
    plain = Proxied(running.direct_port, b"")
    sessions.append(plain)
    plain.login()


def test_the_single_server_does_not_import_the_database_driver(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from ftpserver.__main__ import main\n"
        "from ftpserver.server import FileTransferServer\n"
        "from ftpserver.config import Settings\n"
        "from ftpserver.users import UserStore\n"
        "server = FileTransferServer(Settings(port=0), UserStore({}, dummy_rounds=4))\n"
        "server.server_close()\n"
        "print(sorted(m for m in sys.modules if m.startswith('psycopg')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        cwd=tmp_path,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
