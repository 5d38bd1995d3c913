"""End to end: the server at its file descriptor limit, and ``login_timeout`` (issue 19).

* ``login_timeout``: a connection that does not log in in time gets the
  error 408 and is closed, even if it keeps sending commands; a logged-in
  session is not touched by it.
* The descriptor limit: ``serve`` raises its soft ``RLIMIT_NOFILE`` to the
  hard one and logs it; ``serve`` and ``check-config`` warn when
  ``max_sessions`` cannot fit under it.
* Out of descriptors (a server started with a small limit, set in the
  child with ``resource``): the server does not spin (its CPU time stays
  flat while logged-in sessions hold every descriptor and more connections
  wait), logs it once, and accepts again as soon as connections end; the
  oldest connection that never logged in gives way to a new one (error 421),
  so a real client gets in without waiting for ``login_timeout``.  Under a flood of silent
  connections a real client still logs in, uploads and downloads within a
  few seconds, and once the flood ends the server serves a batch of
  clients at once.
* Out of threads: a connection no thread can be started for gets the
  error 421 and is closed, logged once, and the server serves again as soon
  as threads can be had.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import resource
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    ALICE,
    ALICE_PASSWORD,
    HOST,
    SUBPROCESS_TIMEOUT,
    RawSession,
    RunningServer,
    digest_of,
    error_of,
    subprocess_env,
    wait_until,
)

from ftpclient.client import FileTransferClient
from ftpproto.channel import Channel
from ftpproto.errors import ErrorCode, ServerClosed
from ftpproto.framing import encode_frame
from ftpproto.messages import request

pytestmark = [pytest.mark.timeout(120), pytest.mark.direct]

LIMIT = 128  # the server's descriptor limit in the flood tests
BASE_CONFIG = """\
bcrypt_rounds: 4
login_failure_delay: 0.05
log_level: INFO
fsync_uploads: false
max_sessions_per_ip: 0
ban_failures: 0
"""


# -- login_timeout (in-process server) -----------------------------------------------


def test_a_connection_that_never_logs_in_is_told_and_closed(
    make_configured_server: Any,
) -> None:
    running: RunningServer = make_configured_server(login_timeout=1)
    session = RawSession(running.port)
    try:
        started = time.monotonic()
        session.sock.settimeout(10)
        command, code, text = error_of(session.recv())
        waited = time.monotonic() - started
        assert (command, code) == ("error", ErrorCode.TIMED_OUT), text
        assert text == "no login within 1 s"
        assert 0.8 <= waited <= 5, f"closed after {waited:.2f} s (login_timeout 1)"
        assert session.is_closed_by_server(5)
    finally:
        session.close()
    running.assert_serving()


def test_the_client_reports_the_login_timeout_as_the_servers_word(
    make_configured_server: Any,
) -> None:
    """The same 408 as every other timeout: the client raises it as ServerClosed."""
    running: RunningServer = make_configured_server(login_timeout=1)
    with FileTransferClient(HOST, running.port) as late:
        time.sleep(1.5)
        with pytest.raises(ServerClosed, match="no login within 1 s"):
            late.login(ALICE, ALICE_PASSWORD)
    running.assert_serving()


def test_commands_before_login_do_not_extend_the_login_timeout(
    make_configured_server: Any,
) -> None:
    running: RunningServer = make_configured_server(login_timeout=1)
    session = RawSession(running.port)
    try:
        started = time.monotonic()
        for _ in range(20):  # up to 6 s of help every 0.3 s
            session.request("help")
            reply = session.recv()
            if reply.command == "error":
                break
            time.sleep(0.3)
        waited = time.monotonic() - started
        assert error_of(reply)[1] == ErrorCode.TIMED_OUT
        assert waited <= 4, f"closed only after {waited:.2f} s (login_timeout 1)"
    finally:
        session.close()


def test_a_logged_in_session_outlives_the_login_timeout(make_configured_server: Any) -> None:
    running: RunningServer = make_configured_server(login_timeout=1)
    with FileTransferClient(HOST, running.port, timeout=10) as conn:
        conn.login(ALICE, ALICE_PASSWORD)
        time.sleep(1.6)
        assert conn.pwd() == "/"


def test_out_of_threads_connections_are_refused_and_logged_once(
    make_configured_server: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    running: RunningServer = make_configured_server()

    def no_thread(*args: Any) -> None:
        raise RuntimeError("can't start new thread")

    caplog.set_level(logging.WARNING, logger="ftpserver")
    monkeypatch.setattr(socketserver.ThreadingMixIn, "process_request", no_thread)
    for _ in range(3):
        session = RawSession(running.port)
        try:
            session.sock.settimeout(10)
            _, code, text = error_of(session.recv())
            assert (code, text) == (ErrorCode.TOO_MANY_SESSIONS, "server busy, try again later")
            assert session.is_closed_by_server(5)
        finally:
            session.close()
    monkeypatch.undo()
    with FileTransferClient(HOST, running.port, timeout=10) as conn:
        conn.login(ALICE, ALICE_PASSWORD)
        assert conn.pwd() == "/"
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert [w for w in warnings if w.startswith("out of threads")] == [
        "out of threads (can't start new thread): serving the sessions there are, "
        "new connections wait until some end"
    ], warnings
    assert not [w for w in warnings if "unhandled error" in w]


# -- the descriptor limit (the ftpserver command in a subprocess) --------------------


@dataclass
class Served:
    """A ``python -m ftpserver serve`` subprocess with a chosen descriptor limit."""

    proc: subprocess.Popen[str]
    port: int
    log: Path

    def log_lines(self, text: str) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if text in line]

    def cpu_seconds(self) -> float:
        """User plus system CPU time of the process (one worker: it is the server)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _limit_to(soft: int, hard: int) -> Any:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return apply


@pytest.fixture
def serve_limited(tmp_path: Path, users_file: Path, homes: Path) -> Iterator[Any]:
    """A factory: ``serve_limited(soft, hard, extra_config)`` starts a server, stops it after."""
    started: list[subprocess.Popen[str]] = []

    def start(soft: int, hard: int, extra: str = "") -> Served:
        config = tmp_path / f"server-{len(started)}.yaml"
        config.write_text(BASE_CONFIG + extra)
        log = tmp_path / f"serve-{len(started)}.log"
        args = [sys.executable, "-m", "ftpserver", "serve", "--port", "0", "--config", str(config)]
        args += ["--users", str(users_file), "--home", str(homes)]
        with log.open("w") as log_handle:
            proc = subprocess.Popen(
                args,
                cwd=tmp_path,
                env=subprocess_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log_handle,
                text=True,
                preexec_fn=_limit_to(soft, hard),
            )
        started.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the line comes once the server listens
        assert line.startswith("listening on "), f"{line!r}; log: {log.read_text()}"
        return Served(proc, int(line.rsplit(":", 1)[1]), log)

    yield start
    for proc in started:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def run_check_config(tmp_path: Path, users_file: Path, hard: int, extra: str) -> str:
    config = tmp_path / "check.yaml"
    config.write_text(BASE_CONFIG + extra)
    args = ["-m", "ftpserver", "check-config", "--config", str(config), "--users", str(users_file)]
    done = subprocess.run(
        [sys.executable, *args],
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        preexec_fn=_limit_to(min(64, hard), hard),
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_check_config_warns_when_max_sessions_cannot_fit(tmp_path: Path, users_file: Path) -> None:
    out = run_check_config(tmp_path, users_file, 256, "max_sessions: 5000\n")
    assert "warning: max_sessions 5000 may need 20064 open files but the limit is 256" in out
    assert "configuration OK" in out
    fits = run_check_config(tmp_path, users_file, 4096, "max_sessions: 500\n")
    assert "warning" not in fits, fits


def test_serve_raises_its_soft_limit_and_warns(serve_limited: Any) -> None:
    served: Served = serve_limited(64, 512, "workers: 1\nmax_sessions: 5000\n")
    assert wait_until(lambda: bool(served.log_lines("open file limit")), 10)
    assert served.log_lines("raised the open file limit from 64 to 512")
    limits = Path(f"/proc/{served.proc.pid}/limits").read_text()
    assert any(line.startswith("Max open files") and " 512 " in line for line in limits.split("\n"))
    warned = served.log_lines("max_sessions 5000 may need 20064 open files but the limit is 512")
    assert warned, served.log.read_text()


def silent_connections(port: int, count: int) -> list[socket.socket]:
    """``count`` connections that never send a byte."""
    return [socket.create_connection((HOST, port), timeout=10) for _ in range(count)]


def transfer_as_alice(port: int, tmp_path: Path, name: str) -> float:
    """Log in, upload 1 MiB, download it back and compare; the seconds it took."""
    data = os.urandom(1 << 20)
    source = tmp_path / f"{name}.up"
    source.write_bytes(data)
    started = time.monotonic()
    with FileTransferClient(HOST, port, timeout=30) as conn:
        conn.login(ALICE, ALICE_PASSWORD)
        conn.put(str(source), name)
        result = conn.get(name, str(tmp_path / f"{name}.down"))
    assert result.blake3 == digest_of(data)
    assert (tmp_path / f"{name}.down").read_bytes() == data
    return time.monotonic() - started


def test_out_of_descriptors_the_server_waits_without_spinning(
    serve_limited: Any, tmp_path: Path
) -> None:
    """Logged-in sessions hold every descriptor (none to evict); more connections wait."""
    served: Served = serve_limited(LIMIT, LIMIT, "workers: 1\nlisten_backlog: 64\n")
    held = silent_connections(served.port, LIMIT + 20)  # more than it can accept
    login = encode_frame(request("login", ALICE, ALICE_PASSWORD).encode())
    try:
        for sock in held:
            sock.sendall(login)  # answered by those accepted; the others wait in the queue
        time.sleep(1.5)
        before = served.cpu_seconds()
        time.sleep(2.0)
        spent = served.cpu_seconds() - before
        assert spent < 0.3, f"the server used {spent:.2f} s of CPU in 2 s while out of files"
        assert wait_until(lambda: bool(served.log_lines("out of file descriptors")), 5)
    finally:
        for sock in held:
            sock.close()
    # Once they are gone the server serves as before, and said so once.
    assert transfer_as_alice(served.port, tmp_path, "after.bin") < 15
    assert len(served.log_lines("out of file descriptors")) == 1
    assert served.log_lines("accepting connections again")


def test_silent_connections_make_room_for_a_real_client(serve_limited: Any, tmp_path: Path) -> None:
    """Out of descriptors, the oldest connection without a login gives way (login_timeout 30)."""
    served: Served = serve_limited(LIMIT, LIMIT, "workers: 1\nlisten_backlog: 64\n")
    held = silent_connections(served.port, LIMIT + 20)
    try:
        time.sleep(1.5)  # older than a real client ever waits to log in
        took = transfer_as_alice(served.port, tmp_path, "evicting.bin")
        assert took < 10, f"the real client needed {took:.1f} s"
        held[0].settimeout(10)
        channel = Channel(held[0])
        _, code, text = error_of(channel.recv())
        assert (code, text) == (ErrorCode.TOO_MANY_SESSIONS, "server full: log in sooner")
    finally:
        for sock in held:
            sock.close()


class Flood:
    """A thread opening silent connections as fast as the server's queue takes them."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        held: collections.deque[tuple[float, socket.socket]] = collections.deque()
        while not self._stop.is_set():
            with contextlib.suppress(OSError):  # the listen queue is full: try again
                held.append((time.monotonic(), socket.create_connection((HOST, self.port), 0.5)))
            while held and held[0][0] < time.monotonic() - 5:  # the server dropped it by now
                held.popleft()[1].close()
        for _, sock in held:
            sock.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def test_a_flood_of_silent_connections_does_not_lock_out_real_clients(
    serve_limited: Any, tmp_path: Path
) -> None:
    extra = "workers: 2\nlisten_backlog: 64\nlogin_timeout: 1\n"
    served: Served = serve_limited(LIMIT, LIMIT, extra)
    flood = Flood(served.port)
    try:
        # The server's own line is the proof that the flood outran its descriptors
        # (how many the flood opened by then depends on the machine's load).
        assert wait_until(lambda: bool(served.log_lines("out of file descriptors")), 15)
        took = transfer_as_alice(served.port, tmp_path, "during.bin")
        assert took < 10, f"the real client needed {took:.1f} s under the flood"
    finally:
        flood.stop()
    time.sleep(1.5)  # login_timeout: the flood's last connections are closed by now
    results: list[float] = []
    clients = [
        threading.Thread(
            target=lambda i=i: results.append(transfer_as_alice(served.port, tmp_path, f"b{i}"))
        )
        for i in range(20)
    ]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(60)
    assert len(results) == 20, "not every client of the batch after the flood succeeded"
    assert served.proc.poll() is None
