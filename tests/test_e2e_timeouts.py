"""A server that times a session out says so before it closes, and the client tells the user.

The idle, request and stall timeouts end with ``FileTransfer|error|error|408|<why>``
(docs/PROTOCOL.md, sections 6 and 7), so a client can tell "timed out" from
"network lost": the library raises :class:`~ftpproto.errors.ServerClosed`
and the command line prints one line with the reason.  During a download's
file data the server cannot say it (the words would be taken for data).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from conftest import (
    ALICE,
    ALICE_PASSWORD,
    CLIENT_TIMEOUT,
    HOST,
    Account,
    MakeServer,
    RawSession,
    RunningServer,
    run_command,
)

from ftpclient.client import FileTransferClient
from ftpproto.errors import ServerClosed
from ftpproto.messages import Message

pytestmark = pytest.mark.timeout(60)


def farewell(reason: str) -> Message:
    return Message("error", ("error", "408", reason))


@pytest.fixture
def alice(make_server: MakeServer) -> Account:
    return Account(ALICE, ALICE_PASSWORD)


def test_an_idle_session_is_told(make_server: MakeServer, alice: Account) -> None:
    running = make_server(alice, idle_timeout=1)
    for logged_in in (False, True):
        session = RawSession(running.port)
        try:
            if logged_in:
                session.login()
            assert session.is_closed_by_server(6), "the idle session was not closed"
            assert session.farewell == farewell("idle for 1 s"), f"logged in: {logged_in}"
        finally:
            session.close()


def test_a_message_too_slow_is_told(make_server: MakeServer, alice: Account) -> None:
    running = make_server(alice, idle_timeout=30, request_timeout=1)
    session = RawSession(running.port)
    try:
        session.send_raw(session.frame("pwd")[:6])
        assert session.is_closed_by_server(6)
        assert session.farewell == farewell("message not completed within 1 s")
    finally:
        session.close()


@pytest.mark.parametrize(
    ("settings", "pieces", "reason"),
    [
        ({"stall_timeout": 1}, 1, "no file data for 1 s"),
        (
            {"stall_timeout": 1, "min_transfer_rate": 1024},
            30,
            "transfer slower than 1024 bytes/s for 1 s",
        ),
    ],
    ids=["stalled", "trickling"],
)
def test_a_stalled_upload_is_told(
    make_server: MakeServer,
    alice: Account,
    settings: dict[str, int],
    pieces: int,
    reason: str,
) -> None:
    running = make_server(alice, idle_timeout=30, **settings)
    session = RawSession(running.port)
    try:
        session.login()
        assert session.call("put", "big.bin", "1000000") == Message("put", ("ready", "1000000"))
        closed = False
        for _ in range(pieces):
            session.send_raw(b"x" * 100)
            if session.is_closed_by_server(0.2):
                closed = True
                break
        assert closed or session.is_closed_by_server(6), "the stalled upload was not closed"
        assert session.farewell == farewell(reason)
    finally:
        session.close()


def test_the_client_library_raises_server_closed(make_server: MakeServer, alice: Account) -> None:
    running = make_server(alice, idle_timeout=1)
    with FileTransferClient(HOST, running.port, timeout=CLIENT_TIMEOUT) as conn:
        conn.login(ALICE, ALICE_PASSWORD)
        time.sleep(2)
        with pytest.raises(ServerClosed) as caught:
            conn.pwd()
    assert str(caught.value) == "closed by the server: idle for 1 s"


class Stalling:
    """A progress monitor that stops the upload for ``seconds`` after its first piece."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.stalled = False

    def start(self, total: int, done: int) -> None:
        pass

    def update(self, count: int) -> None:
        if not self.stalled:
            self.stalled = True
            time.sleep(self.seconds)

    def close(self) -> None:
        pass


@pytest.mark.parametrize("size", [3 << 20, 12 << 20], ids=["stream", "sendfile"])
def test_a_stalled_client_upload_says_why(
    make_server: MakeServer, alice: Account, tmp_path: Path, size: int
) -> None:
    running = make_server(alice, idle_timeout=30, stall_timeout=1)
    source = tmp_path / "up.bin"
    source.write_bytes(os.urandom(size))
    with FileTransferClient(HOST, running.port, timeout=CLIENT_TIMEOUT) as conn:
        conn.login(ALICE, ALICE_PASSWORD)
        with pytest.raises(ServerClosed) as caught:
            conn.put(str(source), "up.bin", monitor=Stalling(3))
    assert str(caught.value) == "closed by the server: no file data for 1 s"
    assert not (running.home(ALICE) / "up.bin").exists()


def test_the_command_line_says_it_in_one_line(
    make_server: MakeServer, alice: Account, tmp_path: Path
) -> None:
    running: RunningServer = make_server(alice, idle_timeout=1)
    args = ["-m", "ftpclient", "--host", HOST, "--port", str(running.port), "--user", ALICE]
    result = run_command(
        [*args, "-c", "!sleep 2; pwd"], cwd=tmp_path, password=ALICE_PASSWORD, timeout=20
    )
    lines = result.stderr.splitlines()
    assert result.returncode == 2, result
    assert lines == ["ftpclient: connection lost: closed by the server: idle for 1 s"], lines
