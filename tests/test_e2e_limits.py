"""End to end: limits and abuse protection on real servers (127.0.0.1, port 0).

* Session limits, total and per IP (every test client is 127.0.0.1): the one
  over the limit gets an error 421 frame and is closed; the command-line
  client exits 2 with one line; closing a session frees its slot.
* Timeouts: an idle session, a slowloris client and a stalled or trickling
  upload are closed, their threads end and no temporary file is left.
* Bans: failed logins across connections ban the IP; banned logins get the
  same "login incorrect" even with the right password; the ban expires on
  time however often the client tries; the per-connection limit still closes.
* Bandwidth: a user's rate is kept, and shared by all of the user's sessions.
* Password checks: a repeated login is answered from the in-memory cache,
  concurrent bcrypt checks are bounded.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import bcrypt
import pytest
from conftest import (
    ALICE,
    ALICE_PASSWORD,
    BOB,
    BOB_PASSWORD,
    HOST,
    RawSession,
    RunningServer,
    digest_of,
    error_of,
    file_digest_of,
    run_command,
    temp_files,
    wait_until,
    write_users_file,
)

from ftpclient.client import FileTransferClient
from ftpproto.errors import ErrorCode, RemoteError
from ftpproto.messages import Message

pytestmark = pytest.mark.timeout(60)

MakeServer = Callable[..., RunningServer]
KIB = 1024
MIB = 1024 * 1024


def sessions_ended(running: RunningServer, timeout: float = 5.0) -> bool:
    """Whether every session thread of ``running`` ended (no session, no slot) in time."""
    srv = running.server
    return wait_until(lambda: not srv.sessions.snapshot() and srv.limiter.count == 0, timeout)


def connect(running: RunningServer) -> FileTransferClient:
    return FileTransferClient(HOST, running.port, timeout=10)


def wait_for_slots(running: RunningServer, count: int) -> None:
    assert wait_until(lambda: running.server.limiter.count == count), (
        f"expected {count} sessions, the server counts {running.server.limiter.count}"
    )


# -- session limits -----------------------------------------------------------------


def refused_raw(running: RunningServer) -> tuple[int, str]:
    """Connect raw, expect an error 421 frame and then the close; return (code, text)."""
    session = RawSession(running.port)
    try:
        started = time.monotonic()
        reply = session.recv()
        _, code, text = error_of(reply)
        assert session.is_closed_by_server(5), "the refused connection was left open"
        assert time.monotonic() - started < 3, "the refusal took too long"
        return code, text
    finally:
        session.close()


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ({"max_sessions": 2, "max_sessions_per_ip": 0}, "too many sessions on the server"),
        ({"max_sessions": 0, "max_sessions_per_ip": 2}, "too many sessions from your address"),
    ],
    ids=["total", "per-ip"],
)
def test_session_over_the_limit_gets_421(
    make_configured_server: MakeServer, settings: dict[str, int], reason: str
) -> None:
    running = make_configured_server(**settings)
    first, second = connect(running), connect(running)
    try:
        first.login(ALICE, ALICE_PASSWORD)
        second.login(BOB, BOB_PASSWORD)
        wait_for_slots(running, 2)
        code, text = refused_raw(running)
        assert code == ErrorCode.TOO_MANY_SESSIONS
        assert text == reason
        # The library: the refusal surfaces as error 421, not a hang.
        with connect(running) as third:
            with pytest.raises(RemoteError) as refused:
                third.login(ALICE, ALICE_PASSWORD)
            assert refused.value.code == ErrorCode.TOO_MANY_SESSIONS
        assert first.pwd() == "/" and second.pwd() == "/", "a refusal disturbed the others"
        assert running.server.limiter.count == 2, "a refused session kept a slot"
        # Closing one frees its slot for a new session.
        first.quit()
        wait_for_slots(running, 1)
        with connect(running) as fourth:
            assert fourth.login(ALICE, ALICE_PASSWORD) == ALICE
            assert fourth.pwd() == "/"
    finally:
        first.close()
        second.close()
    assert sessions_ended(running)


def test_an_unlogged_connection_holds_a_slot_too(make_configured_server: MakeServer) -> None:
    running = make_configured_server(max_sessions_per_ip=1)
    holder = RawSession(running.port)
    try:
        wait_for_slots(running, 1)
        code, _ = refused_raw(running)
        assert code == ErrorCode.TOO_MANY_SESSIONS
    finally:
        holder.close()
    wait_for_slots(running, 0)
    with connect(running) as fresh:
        assert fresh.login(ALICE, ALICE_PASSWORD) == ALICE


def test_cli_over_the_limit_exits_2_with_one_line(
    make_configured_server: MakeServer, local: Path
) -> None:
    running = make_configured_server(max_sessions_per_ip=1)
    with connect(running) as holder:
        holder.login(ALICE, ALICE_PASSWORD)
        wait_for_slots(running, 1)
        started = time.monotonic()
        result = run_command(
            ["-m", "ftpclient", "--host", HOST, "--port", str(running.port), "--user", ALICE,
             "-c", "pwd"],
            cwd=local, password=ALICE_PASSWORD, timeout=20,
        )  # fmt: skip
        assert time.monotonic() - started < 10, "the refused client hung"
        assert result.returncode == 2, result
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, f"expected one error line, got {lines}"
        assert "too many sessions" in lines[0], f"the refusal is not named: {lines[0]!r}"
        assert "Traceback" not in result.stderr
        assert result.stdout == "", result.stdout
        assert holder.pwd() == "/"
    wait_for_slots(running, 0)


# -- timeouts ------------------------------------------------------------------------


def send_until_closed(
    session: RawSession, pieces: Iterable[bytes], pause: float, limit: float
) -> tuple[bool, float]:
    """Send ``pieces`` one by one, after each waiting up to ``pause`` s for the server to close.

    Returns (closed, seconds since the first piece); gives up after ``limit`` s.
    The server may close in any way, but must not send anything but the
    timeout's error (kept in ``session.farewell``).
    """
    started = time.monotonic()
    for piece in pieces:
        if time.monotonic() - started > limit:
            break
        try:
            session.send_raw(piece)
        except (BrokenPipeError, ConnectionResetError):
            return True, time.monotonic() - started
        if session.is_closed_by_server(pause):
            return True, time.monotonic() - started
    return False, time.monotonic() - started


def closed_after(session: RawSession, limit: float) -> float:
    """Seconds until the server closed ``session`` (fails if not within ``limit``)."""
    started = time.monotonic()
    assert session.is_closed_by_server(limit), f"the session was not closed within {limit} s"
    return time.monotonic() - started


def test_idle_session_is_closed(make_configured_server: MakeServer) -> None:
    running = make_configured_server(idle_timeout=1)
    fresh = RawSession(running.port)
    logged_in = RawSession(running.port)
    try:
        logged_in.login()
        wait_for_slots(running, 2)
        waited = closed_after(logged_in, 5)
        assert waited >= 0.8, f"closed after {waited:.2f} s, before the idle timeout"
        assert fresh.is_closed_by_server(2), "a session that never logged in stayed open"
    finally:
        fresh.close()
        logged_in.close()
    assert sessions_ended(running), "the idle sessions' threads did not end"


def test_a_busy_session_is_not_idle(make_configured_server: MakeServer) -> None:
    """Commands every 0.4 s keep a session with idle_timeout 1 open for 1.8 s."""
    running = make_configured_server(idle_timeout=1)
    with connect(running) as conn:
        conn.login(ALICE, ALICE_PASSWORD)
        deadline = time.monotonic() + 1.8
        while time.monotonic() < deadline:
            assert conn.pwd() == "/"
            time.sleep(0.4)
    assert sessions_ended(running)


def test_slowloris_is_closed(make_configured_server: MakeServer) -> None:
    running = make_configured_server(idle_timeout=30, request_timeout=1)
    session = RawSession(running.port)
    try:
        frame = session.frame("login", ALICE, "p" * 200)  # would take ~80 s at this pace
        closed, waited = send_until_closed(session, (bytes([b]) for b in frame), 0.4, 10)
        assert closed, "the slowloris client was never closed"
        assert 0.8 <= waited <= 4, f"closed after {waited:.2f} s (request_timeout 1)"
    finally:
        session.close()
    assert sessions_ended(running), "the slowloris session's thread did not end"
    running.assert_serving()


def start_upload(running: RunningServer, name: str, size: int) -> RawSession:
    session = RawSession(running.port)
    session.login()
    reply = session.call("put", name, str(size))
    assert reply == Message("put", ("ready", str(size))), reply
    return session


def test_stalled_upload_is_closed_and_cleaned_up(make_configured_server: MakeServer) -> None:
    running = make_configured_server(stall_timeout=1, idle_timeout=30)
    session = start_upload(running, "big.bin", MIB)
    try:
        session.send_raw(b"\x5a" * (100 * KIB))
        assert wait_until(lambda: bool(temp_files(running.alice_home))), "no upload started"
        waited = closed_after(session, 5)
        assert waited <= 3, f"the stalled upload was closed only after {waited:.2f} s"
    finally:
        session.close()
    assert sessions_ended(running), "the stalled session's thread did not end"
    assert temp_files(running.alice_home) == [], "the temporary file was left behind"
    assert not (running.alice_home / "big.bin").exists(), "a partial file became visible"
    with connect(running) as conn:
        conn.login(ALICE, ALICE_PASSWORD)
        assert [e.name for e in conn.ls()] == [], "the listing shows a leftover"


def test_trickling_upload_is_closed(make_configured_server: MakeServer) -> None:
    """100 bytes every 0.2 s never stops, but stays under min_transfer_rate 1024."""
    running = make_configured_server(stall_timeout=1, min_transfer_rate=1024, idle_timeout=30)
    session = start_upload(running, "slow.bin", MIB)
    try:
        closed, waited = send_until_closed(session, itertools.repeat(b"x" * 100), 0.2, 8)
    finally:
        session.close()
    assert closed, "a trickling upload was never closed"
    assert waited <= 4
    assert sessions_ended(running)
    assert temp_files(running.alice_home) == []
    assert not (running.alice_home / "slow.bin").exists()


# -- failed logins and bans -----------------------------------------------------------


def login_reply(running: RunningServer, user: str, password: str) -> Message:
    """The reply to one login on a fresh raw connection."""
    session = RawSession(running.port)
    try:
        return session.call("login", user, password)
    finally:
        session.close()


def test_failed_login_is_delayed(make_configured_server: MakeServer) -> None:
    running = make_configured_server(login_failure_delay=0.5)
    with connect(running) as conn:
        started = time.monotonic()
        with pytest.raises(RemoteError) as failed:
            conn.login(ALICE, "wrong")
        assert failed.value.code == ErrorCode.LOGIN_FAILED
        assert time.monotonic() - started >= 0.45, "no delay after a failed login"
        started = time.monotonic()
        conn.login(ALICE, ALICE_PASSWORD)
        assert time.monotonic() - started < 0.45, "a good login was delayed"


def test_per_connection_limit_closes_the_connection(make_configured_server: MakeServer) -> None:
    running = make_configured_server(max_login_attempts=3, ban_failures=10)
    session = RawSession(running.port)
    try:
        for _ in range(2):
            assert error_of(session.call("login", ALICE, "wrong")) == (
                "login", ErrorCode.LOGIN_FAILED, "login incorrect",
            )  # fmt: skip
        command, code, _ = error_of(session.call("login", ALICE, "wrong"))
        assert (command, code) == ("login", ErrorCode.TOO_MANY_FAILURES)
        assert session.is_closed_by_server(3), "three failures did not close the connection"
    finally:
        session.close()
    assert sessions_ended(running)
    with connect(running) as conn:  # 3 of ban_failures 10: no ban
        assert conn.login(ALICE, ALICE_PASSWORD) == ALICE


def test_ban_after_failures_across_connections_then_expiry(
    make_configured_server: MakeServer,
) -> None:
    ban_time = 1.5
    running = make_configured_server(
        ban_failures=3, ban_window=60, ban_time=ban_time, max_login_attempts=3
    )
    wrong = ("login", ErrorCode.LOGIN_FAILED, "login incorrect")
    first = RawSession(running.port)
    try:
        assert error_of(first.call("login", ALICE, "wrong 1")) == wrong
        assert error_of(first.call("login", BOB, "wrong 2")) == wrong
    finally:
        first.close()
    assert error_of(login_reply(running, "nobody", "wrong 3")) == wrong
    banned_at = time.monotonic()  # the ban began a little before this
    # Banned: the right password gets exactly the reply of a wrong one, for any user.
    tries = 0
    while time.monotonic() - banned_at < ban_time - 0.4:
        for user, password in ((ALICE, ALICE_PASSWORD), (BOB, BOB_PASSWORD), (ALICE, "wrong")):
            reply = login_reply(running, user, password)
            assert error_of(reply) == wrong, f"banned login of {user} answered {reply}"
            tries += 1
        time.sleep(0.1)
    assert tries >= 6
    # The attempts during the ban did not extend it: it ends ban_time after it began.
    assert wait_until(
        lambda: login_reply(running, ALICE, ALICE_PASSWORD) == Message("login", ("ok", ALICE)),
        timeout=3.0,
        step=0.1,
    ), "the ban did not expire after ban_time (extended by the attempts while banned?)"
    expired = time.monotonic() - banned_at
    assert expired >= ban_time - 0.4, f"the ban ended after {expired:.2f} s"
    # Had the attempts extended it, it would end ban_time after the last one (>= 2.6 s).
    assert expired <= ban_time + 0.6, f"the ban lasted {expired:.2f} s: extended by attempts?"
    running.assert_serving()


def test_ban_refusal_needs_no_bcrypt(
    make_configured_server: MakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A banned IP cannot make the server check passwords at all."""
    running = make_configured_server(ban_failures=2, ban_window=60, ban_time=30)
    for _ in range(2):
        error_of(login_reply(running, ALICE, "wrong"))
    calls = count_checkpw(monkeypatch)
    for _ in range(3):
        _, code, text = error_of(login_reply(running, ALICE, ALICE_PASSWORD))
        assert (code, text) == (ErrorCode.LOGIN_FAILED, "login incorrect")
    assert calls["count"] == 0, "banned logins still ran bcrypt"


# -- bandwidth --------------------------------------------------------------------------

RATE = MIB  # bytes per second
SIZE = 5 * MIB // 4  # a token bucket starts with one second of burst: 0.25 s for one file


@pytest.fixture
def rated_servers(
    tmp_path: Path, make_configured_server: MakeServer
) -> Callable[[], RunningServer]:
    """A factory of servers (each with fresh buckets) where alice has 1 MiB/s each way."""
    homes = tmp_path / "rated-homes"
    homes.mkdir()
    users = write_users_file(
        tmp_path / "rated-users.yaml",
        homes,
        {
            ALICE: (ALICE_PASSWORD, {"download_rate": "1M", "upload_rate": "1M"}),
            BOB: (BOB_PASSWORD, {}),
        },
    )
    return lambda: make_configured_server(users=users, home=homes)


def timed_parallel(jobs: list[Callable[[], object]]) -> list[float]:
    """Run ``jobs`` at once in threads; the seconds each took (fails on any error)."""
    times: list[float] = [0.0] * len(jobs)
    errors: list[BaseException] = []
    start = threading.Barrier(len(jobs))

    def run(index: int) -> None:
        try:
            start.wait()
            began = time.monotonic()
            jobs[index]()
            times[index] = time.monotonic() - began
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    return times


def logged_in(
    running: RunningServer, user: str = ALICE, password: str = ALICE_PASSWORD
) -> FileTransferClient:
    conn = connect(running)
    conn.login(user, password)
    return conn


# Expected seconds under a 1 MiB/s bucket holding one second of burst.
ONE_ALONE = (SIZE - RATE) / RATE  # 0.25 s
TWO_SHARED = (2 * SIZE - RATE) / RATE  # 1.5 s; two separate buckets would take 0.25 s


def check_single(seconds: float, what: str) -> None:
    assert ONE_ALONE * 0.8 <= seconds <= SIZE / RATE + 1.5, (
        f"one 1.25 MiB {what} at 1 MiB/s took {seconds:.2f} s (expected ~{ONE_ALONE} s)"
    )


def check_shared(times: list[float], single: float, what: str) -> None:
    slowest = max(times)
    assert slowest >= TWO_SHARED * 0.85, (
        f"two parallel {what}s of one user took {times} s: the rate is not shared "
        f"(expected ~{TWO_SHARED} s)"
    )
    assert slowest >= 2.5 * single, f"parallel {times} s vs one alone {single:.2f} s"
    assert slowest <= 2 * SIZE / RATE + 2, f"two parallel {what}s took {times} s"


def test_download_rate_is_kept_and_shared(
    rated_servers: Callable[[], RunningServer], local: Path
) -> None:
    data = os.urandom(SIZE)
    running = rated_servers()
    (running.alice_home / "f.bin").write_bytes(data)
    (running.bob_home / "f.bin").write_bytes(data)
    with logged_in(running) as one:
        (single,) = timed_parallel([lambda: one.get("f.bin", str(local / "single.bin"))])
    assert file_digest_of(local / "single.bin") == digest_of(data)
    check_single(single, "download")
    running = rated_servers()  # fresh buckets
    two, three = logged_in(running), logged_in(running)
    bob = logged_in(running, BOB, BOB_PASSWORD)
    try:
        times = timed_parallel(
            [
                lambda: two.get("f.bin", str(local / "a.bin")),
                lambda: three.get("f.bin", str(local / "b.bin")),
                lambda: bob.get("f.bin", str(local / "bob.bin")),
            ]
        )
    finally:
        for conn in (two, three, bob):
            conn.close()
    for name in ("a.bin", "b.bin", "bob.bin"):
        assert file_digest_of(local / name) == digest_of(data), f"{name} differs"
    check_shared(times[:2], single, "download")
    assert times[2] < 0.5, f"bob (no rate) took {times[2]:.2f} s: alice's limit slowed him"


def test_upload_rate_is_kept_and_shared(
    rated_servers: Callable[[], RunningServer], local: Path
) -> None:
    data = os.urandom(SIZE)
    source = local / "up.bin"
    source.write_bytes(data)
    running = rated_servers()
    with logged_in(running) as one:
        (single,) = timed_parallel([lambda: one.put(str(source), "single.bin")])
    assert file_digest_of(running.alice_home / "single.bin") == digest_of(data)
    check_single(single, "upload")
    running = rated_servers()
    two, three = logged_in(running), logged_in(running)
    bob = logged_in(running, BOB, BOB_PASSWORD)
    try:
        times = timed_parallel(
            [
                lambda: two.put(str(source), "a.bin"),
                lambda: three.put(str(source), "b.bin"),
                lambda: bob.put(str(source), "bob.bin"),
            ]
        )
    finally:
        for conn in (two, three, bob):
            conn.close()
    for name in ("a.bin", "b.bin"):
        assert file_digest_of(running.alice_home / name) == digest_of(data), f"{name} differs"
    assert file_digest_of(running.bob_home / "bob.bin") == digest_of(data)
    check_shared(times[:2], single, "upload")
    assert times[2] < 0.5, f"bob (no rate) took {times[2]:.2f} s: alice's limit slowed him"


# -- password checks --------------------------------------------------------------------


def count_checkpw(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count bcrypt checks (and the most at once) while still running the real one."""
    real = bcrypt.checkpw
    state = {"count": 0, "running": 0, "peak": 0}
    lock = threading.Lock()

    def counting(password: bytes, hashed: bytes) -> bool:
        with lock:
            state["count"] += 1
            state["running"] += 1
            state["peak"] = max(state["peak"], state["running"])
        try:
            return real(password, hashed)
        finally:
            with lock:
                state["running"] -= 1

    monkeypatch.setattr(bcrypt, "checkpw", counting)
    return state


@pytest.fixture
def slow_hash_users(tmp_path: Path) -> tuple[Path, Path]:
    """Users with bcrypt rounds 10 (~50 ms a check): the users file and the home root."""
    homes = tmp_path / "slow-homes"
    homes.mkdir()
    users = write_users_file(
        tmp_path / "slow-users.yaml",
        homes,
        {ALICE: (ALICE_PASSWORD, {}), BOB: (BOB_PASSWORD, {})},
        rounds=10,
    )
    return users, homes


def timed_login(running: RunningServer, user: str, password: str) -> float:
    with connect(running) as conn:
        started = time.perf_counter()
        assert conn.login(user, password) == user
        elapsed = time.perf_counter() - started
        conn.quit()
    return elapsed


def test_repeated_login_is_served_from_the_cache(
    make_configured_server: MakeServer,
    slow_hash_users: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    users, homes = slow_hash_users
    running = make_configured_server(users=users, home=homes, password_cache_ttl=300)
    calls = count_checkpw(monkeypatch)
    first = timed_login(running, ALICE, ALICE_PASSWORD)
    assert calls["count"] == 1
    repeats = [timed_login(running, ALICE, ALICE_PASSWORD) for _ in range(10)]
    assert calls["count"] == 1, f"repeated logins ran bcrypt {calls['count'] - 1} more times"
    average = sum(repeats) / len(repeats)
    assert average < 0.005 or average < first / 5, (
        f"cached logins take {average * 1000:.1f} ms, the first took {first * 1000:.1f} ms"
    )
    assert first > 0.02, f"the first login ({first * 1000:.1f} ms) did not run bcrypt 10"
    # A wrong password is never answered from the cache.
    with connect(running) as conn, pytest.raises(RemoteError):
        conn.login(ALICE, ALICE_PASSWORD + "x")
    assert calls["count"] == 2
    # Another user is not served from alice's entry.
    timed_login(running, BOB, BOB_PASSWORD)
    assert calls["count"] == 3


def test_cache_misses_after_a_password_change(
    make_configured_server: MakeServer,
    slow_hash_users: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    users, homes = slow_hash_users
    running = make_configured_server(users=users, home=homes, password_cache_ttl=300)
    timed_login(running, ALICE, ALICE_PASSWORD)
    write_users_file(users, homes, {ALICE: ("new password", {}), BOB: (BOB_PASSWORD, {})})
    assert running.server.reload()
    calls = count_checkpw(monkeypatch)
    with connect(running) as conn:
        with pytest.raises(RemoteError) as failed:
            conn.login(ALICE, ALICE_PASSWORD)
        assert failed.value.code == ErrorCode.LOGIN_FAILED, "the old password still works"
    assert calls["count"] == 1, "the old password was answered from the cache"
    timed_login(running, ALICE, "new password")


def test_cache_ttl_zero_checks_every_time(
    make_configured_server: MakeServer,
    slow_hash_users: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    users, homes = slow_hash_users
    running = make_configured_server(users=users, home=homes, password_cache_ttl=0)
    calls = count_checkpw(monkeypatch)
    for _ in range(3):
        timed_login(running, ALICE, ALICE_PASSWORD)
    assert calls["count"] == 3


@pytest.mark.parametrize("limit", [1, 2])
def test_concurrent_password_checks_are_bounded(
    make_configured_server: MakeServer,
    slow_hash_users: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    limit: int,
) -> None:
    users, homes = slow_hash_users
    running = make_configured_server(
        users=users, home=homes, password_checks=limit, password_cache_ttl=0, ban_failures=0
    )
    calls = count_checkpw(monkeypatch)
    jobs = [
        (lambda: timed_login(running, ALICE, ALICE_PASSWORD)),
        (lambda: timed_login(running, BOB, BOB_PASSWORD)),
    ] * 3
    timed_parallel(jobs)
    assert calls["count"] == 6
    assert 1 <= calls["peak"] <= limit, f"{calls['peak']} bcrypt checks ran at once"
