"""End to end: managing accounts while the server runs (issue 17).

``ftpserver useradd``, ``passwd``, ``usermod`` and ``userdel`` rewrite the users
file, say that the running server applies the change at the next login, and
it does, in every worker process, without SIGHUP:

* ``usermod --lock`` / ``--expires`` refuse the account with the same
  ``login incorrect`` as a wrong password, and the audit line says why;
  ``--unlock`` / ``--expires never`` let it in again;
* ``usermod --max-sessions N`` is enforced over every worker together;
* ``usermod --upload-rate`` slows the user's next upload;
* a users file broken by hand is refused, the last good one stays;
* ``ftpserver users`` lists state, usage measured on disk, quota and rights,
  as a table and as JSON.

The servers are ``python -m ftpserver serve`` with two workers (the workers
tests' ``start_workers``); ``only`` stops all but one worker so that a login
is served by the worker the test chooses.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    ALICE,
    ALICE_PASSWORD,
    BOB,
    BOB_PASSWORD,
    HOST,
    CliResult,
    RunFtpserver,
    RunningServer,
    ServerProcess,
    wait_until,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from test_e2e_lifecycle import log_text, login_result, wait_for_log
from test_e2e_workers import only, start_workers, workers_of

from ftpclient.client import FileTransferClient
from ftpclient.identity import Identity
from ftpproto.errors import ErrorCode, RemoteError
from ftpserver.config import Settings
from ftpserver.state.owner import StateOwner
from ftpserver.state.pipe import remote_shared
from ftpserver.state.shared import LocalState
from ftpserver.state.wire import worker_pipe
from ftpserver.users import AccountChange, change_keys, modify_user

__all__ = ["start_workers"]  # the fixture, imported for this module's tests

pytestmark = pytest.mark.timeout(120)

APPLIED = "the running server applies this at the next login"
StartWorkers = Callable[..., ServerProcess]


@pytest.fixture
def manage(
    ftpserver_cli: RunFtpserver, users_file: Path, homes: Path, server_config: Path
) -> Callable[..., CliResult]:
    """``manage(COMMAND, NAME, ARGS...)``: the ftpserver user command on the test's files."""

    def run(*args: str, stdin: str | None = None, ok: bool = True) -> CliResult:
        files = ["--users", str(users_file), "--home", str(homes), "--config", str(server_config)]
        result = ftpserver_cli(*args, *files, stdin=stdin)
        if ok:
            assert result.returncode == 0, result
        return result

    return run


def on_every_worker(running: ServerProcess, check: Callable[[], None]) -> None:
    """Run ``check`` once with each worker alone accepting connections."""
    for pid in sorted(workers_of(running)):
        with only(running, pid):
            check()


def test_lock_expire_and_unlock_apply_at_the_next_login(
    start_workers: StartWorkers, manage: Callable[..., CliResult], users_file: Path
) -> None:
    running = start_workers()
    with FileTransferClient(HOST, running.port, timeout=10) as kept:
        kept.login(ALICE, ALICE_PASSWORD)

        result = manage("usermod", ALICE, "--lock")
        assert result.stdout.splitlines() == [f"changed user {ALICE}", APPLIED], result

        def refused() -> None:
            with FileTransferClient(HOST, running.port, timeout=10) as conn:
                with pytest.raises(RemoteError) as caught:
                    conn.login(ALICE, ALICE_PASSWORD)
                wrong = caught.value
                with pytest.raises(RemoteError) as caught:
                    conn.login(ALICE, "not the password")
                # The same answer as a wrong password: nothing tells the two apart.
                assert (wrong.code, wrong.text) == (caught.value.code, caught.value.text)
                assert (wrong.code, wrong.text) == (ErrorCode.LOGIN_FAILED, "login incorrect")

        on_every_worker(running, refused)
        assert login_result(running.port, BOB, BOB_PASSWORD), "locking alice refused bob"
        wait_for_log(running, "outcome='failed' reason='account locked'", count=2)
        locked = [line for line in log_text(running).splitlines() if "account locked" in line]
        assert all(f"login user='{ALICE}'" in line for line in locked), locked
        assert kept.pwd() == "/", "a session already logged in was cut"

        manage("usermod", ALICE, "--unlock", "--expires", "2001-02-03")
        on_every_worker(running, refused)
        wait_for_log(running, "outcome='failed' reason='account expired'", count=2)

        manage("usermod", ALICE, "--expires", "2999-12-31")
        on_every_worker(running, lambda: assert_logs_in(running, ALICE, ALICE_PASSWORD))
        manage("usermod", ALICE, "--expires", "never")
        assert users_json(manage)[ALICE]["expires"] is None
        assert "expires" not in users_file.read_text() and "locked" not in users_file.read_text()
        kept.quit()


def assert_logs_in(running: ServerProcess, user: str, password: str) -> None:
    assert login_result(running.port, user, password), f"{user} cannot log in"


def test_user_commands_apply_at_the_next_login_in_every_worker(
    start_workers: StartWorkers, manage: Callable[..., CliResult], homes: Path
) -> None:
    running = start_workers()
    # Each worker loads the users once before any change, so each must notice.
    on_every_worker(running, lambda: assert_logs_in(running, BOB, BOB_PASSWORD))

    added = manage("useradd", "carol", "--password-stdin", stdin="carol pw\n")
    assert added.stdout.splitlines()[-1] == APPLIED, added
    on_every_worker(running, lambda: assert_logs_in(running, "carol", "carol pw"))
    assert (homes / "carol").is_dir()

    manage("passwd", "carol", "--password-stdin", stdin="carol new\n")
    on_every_worker(running, lambda: assert_logs_in(running, "carol", "carol new"))
    assert not login_result(running.port, "carol", "carol pw"), "the old password still works"

    removed = manage("userdel", "carol")
    assert removed.stdout.splitlines()[-1] == APPLIED, removed

    def carol_gone() -> None:
        assert not login_result(running.port, "carol", "carol new"), "a removed user logs in"

    on_every_worker(running, carol_gone)
    assert "SIGHUP" not in log_text(running) and "reloaded:" not in log_text(running)
    assert log_text(running).count("the users file changed: reloaded") >= 2 * 3


def test_a_users_file_broken_by_hand_keeps_the_last_good_one(
    start_workers: StartWorkers, users_file: Path
) -> None:
    running = start_workers()
    good = users_file.read_text()
    users_file.write_text(good.replace("password:", "pasword:", 1))
    on_every_worker(running, lambda: assert_logs_in(running, BOB, BOB_PASSWORD))
    on_every_worker(running, lambda: assert_logs_in(running, ALICE, ALICE_PASSWORD))
    refusals = [line for line in log_text(running).splitlines() if "is refused" in line]
    assert len(refusals) == 2, refusals  # once per worker, not once per login
    assert f"{users_file}:4: user alice: 'password' is missing" in refusals[0], refusals
    assert "(and 1 more: see 'ftpserver check-config')" in refusals[0], refusals
    assert running.proc.poll() is None


def test_max_sessions_counts_every_worker(
    start_workers: StartWorkers, manage: Callable[..., CliResult]
) -> None:
    running = start_workers()
    manage("usermod", BOB, "--max-sessions", "2")
    first, second = sorted(workers_of(running))
    held: list[FileTransferClient] = []
    try:
        for pid in (first, second):  # one session on each worker
            with only(running, pid):
                conn = FileTransferClient(HOST, running.port, timeout=10)
                held.append(conn)
                conn.login(BOB, BOB_PASSWORD)

        def third_refused() -> None:
            with FileTransferClient(HOST, running.port, timeout=10) as conn:
                with pytest.raises(RemoteError) as caught:
                    conn.login(BOB, BOB_PASSWORD)
                assert caught.value.code == ErrorCode.TOO_MANY_SESSIONS, caught.value
                assert caught.value.text == "too many sessions for user bob (at most 2 at once)"
            assert login_result(running.port, ALICE, ALICE_PASSWORD)  # others are not limited

        on_every_worker(running, third_refused)
        wait_for_log(running, 'outcome="refused (user\'s max_sessions)"', count=2)
        held.pop().quit()
        assert wait_until(lambda: login_result(running.port, BOB, BOB_PASSWORD), 10, 0.2)
        manage("usermod", BOB, "--max-sessions", "0")
        extra = [FileTransferClient(HOST, running.port, timeout=10) for _ in range(3)]
        held += extra
        for conn in extra:
            assert conn.login(BOB, BOB_PASSWORD) == BOB
    finally:
        for conn in held:
            conn.close()


def test_usermod_upload_rate_slows_the_next_upload(
    start_workers: StartWorkers, manage: Callable[..., CliResult], tmp_path: Path, homes: Path
) -> None:
    running = start_workers()
    data = os.urandom(384 * 1024)
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    manage("usermod", ALICE, "--upload-rate", "128K")
    with FileTransferClient(HOST, running.port, timeout=30) as conn:
        conn.login(ALICE, ALICE_PASSWORD)
        started = time.monotonic()
        conn.put(str(source), "big.bin")
        took = time.monotonic() - started
    # 384 KiB at 128 KiB/s with one second of burst: at least two seconds.
    assert took >= 1.6, f"the upload took {took:.2f} s: the rate was not applied"
    assert (homes / ALICE / "big.bin").read_bytes() == data
    manage("usermod", ALICE, "--upload-rate", "none")
    with FileTransferClient(HOST, running.port, timeout=30) as conn:
        conn.login(ALICE, ALICE_PASSWORD)
        started = time.monotonic()
        conn.put(str(source), "again.bin")
        assert time.monotonic() - started < took, "removing the rate did not apply"


def users_json(manage: Callable[..., CliResult]) -> dict[str, dict[str, Any]]:
    result = manage("users", "--json")
    rows = json.loads(result.stdout)["users"]
    return {row["name"]: row for row in rows}


def test_users_lists_state_usage_quota_and_rights(
    manage: Callable[..., CliResult], homes: Path, tmp_path: Path
) -> None:
    (homes / ALICE / "docs").mkdir()
    (homes / ALICE / "docs" / "a.bin").write_bytes(b"a" * 3000)
    (homes / ALICE / "b.txt").write_bytes(b"b" * 1000)
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"x" * 50_000)
    (homes / ALICE / "link").symlink_to(outside)  # not followed, not counted
    manage("useradd", "carol", "--password-stdin", "--quota", "2M", "--read-only", stdin="c\n")
    manage("usermod", BOB, "--lock", "--max-sessions", "4", "--download-rate", "1M")
    manage("usermod", "carol", "--expires", "2001-01-01")
    key = Identity(tmp_path / "k", Ed25519PrivateKey.generate())
    manage("usermod", ALICE, "--add-key", key.public_line("alice@test"))

    rows = users_json(manage)
    assert sorted(rows) == [ALICE, BOB, "carol"]
    alice, bob, carol = rows[ALICE], rows[BOB], rows["carol"]
    assert (alice["state"], alice["used"], alice["quota"], alice["rights"]) == (
        "active",
        4000,
        None,
        "all",
    )
    assert (bob["state"], bob["max_sessions"], bob["download_rate"]) == ("locked", 4, 1024**2)
    assert (carol["state"], carol["quota"], carol["rights"]) == (
        "expired",
        2 * 1024**2,
        "read-only",
    )
    assert (carol["used"], carol["expires"]) == (0, "2001-01-01")
    assert (alice["keys"], alice["password"], carol["keys"]) == ([key.fingerprint], True, [])

    table = manage("users").stdout.splitlines()
    assert table[0].split() == [
        "USER", "STATE", "USED", "QUOTA", "RIGHTS", "SESSIONS", "UP", "DOWN", "EXPIRES", "KEYS"
    ]  # fmt: skip
    assert table[1].split() == [ALICE, "active", "3.9", "KiB", "-", "all", "-", "-", "-", "-", "1"]
    assert table[2].split()[:2] == [BOB, "locked"] and "1.0 MiB/s" in table[2]
    assert table[3].split()[:2] == ["carol", "expired"] and table[3].endswith("2001-01-01  0")


def test_users_and_usermod_errors(manage: Callable[..., CliResult], users_file: Path) -> None:
    before = users_file.read_bytes()
    for args, text in [
        (["usermod", ALICE], "nothing to change"),
        (["usermod", ALICE, "--expires", "soon"], "2027-01-31"),
        (["usermod", ALICE, "--max-sessions", "lots"], "number of sessions"),
        (["usermod", ALICE, "--upload-rate", "fast"], "fast"),
        (["usermod", "nobody", "--lock"], "no such user: nobody"),
    ]:
        result = manage(*args, ok=False)
        assert result.returncode == 1, (args, result)
        assert text in result.stderr and "Traceback" not in result.stderr, (args, result)
        assert APPLIED not in result.stdout
    assert manage("usermod", ALICE, "--lock", "--unlock", ok=False).returncode == 2
    assert users_file.read_bytes() == before, "a refused command changed the users file"


def test_a_killed_worker_gives_back_its_users_sessions(
    start_workers: StartWorkers, manage: Callable[..., CliResult]
) -> None:
    running = start_workers()
    manage("usermod", BOB, "--max-sessions", "1")
    victim = min(workers_of(running))
    with only(running, victim):
        held = FileTransferClient(HOST, running.port, timeout=10)
        held.login(BOB, BOB_PASSWORD)
    try:
        with FileTransferClient(HOST, running.port, timeout=10) as conn:
            with pytest.raises(RemoteError) as caught:
                conn.login(BOB, BOB_PASSWORD)
            assert caught.value.code == ErrorCode.TOO_MANY_SESSIONS
        os.kill(victim, signal.SIGKILL)
        wait_for_log(running, "behind; released")
        assert wait_until(lambda: login_result(running.port, BOB, BOB_PASSWORD), 20, 0.2), (
            f"bob's slot was not given back:\n{log_text(running)}"
        )
    finally:
        held.close()


def test_state_owner_gives_back_user_slots() -> None:
    state = LocalState.create(Settings())
    owner = StateOwner(state)
    mine, theirs = worker_pipe()
    thread = owner.attach(mine, 3)
    remote = remote_shared(theirs)
    assert remote.user_sessions.acquire("dora", 2) and remote.user_sessions.acquire("dora", 2)
    assert not remote.user_sessions.acquire("dora", 2)
    assert remote.user_sessions.acquire("eve", 0)
    remote.user_sessions.release("eve")
    with pytest.raises(ValueError, match="no session slot held for user eve"):
        remote.user_sessions.release("eve")  # a worker gives back only what it took
    assert (state.user_sessions.count("dora"), state.user_sessions.count("eve")) == (2, 0)
    theirs.close()
    thread.join(5)
    assert not thread.is_alive()
    assert state.user_sessions.count("dora") == 0, "the dead worker's slots were kept"
    assert state.user_sessions.acquire("dora", 1)


def test_key_logins_obey_lock_expiry_and_max_sessions(
    tmp_path: Path,
    users_file: Path,
    make_configured_server: Callable[..., RunningServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ftpserver.audit")
    identity = Identity(tmp_path / "alice-key", Ed25519PrivateKey.generate())
    change_keys(users_file, ALICE, identity.public_line("alice@test"))
    running = make_configured_server()

    def key_login() -> RemoteError | None:
        with FileTransferClient(HOST, running.port, timeout=10) as conn:
            try:
                conn.login_key(ALICE, identity)
            except RemoteError as exc:
                return exc
            conn.quit()
            return None

    assert key_login() is None
    modify_user(users_file, ALICE, change=AccountChange(locked=True))  # as usermod --lock
    refused = key_login()
    assert refused is not None and (refused.code, refused.text) == (
        ErrorCode.LOGIN_FAILED,
        "login incorrect",
    )
    modify_user(users_file, ALICE, change=AccountChange(locked=False, expires="2001-01-01"))
    refused = key_login()
    assert refused is not None and refused.code == ErrorCode.LOGIN_FAILED
    modify_user(users_file, ALICE, change=AccountChange(expires="never", max_sessions="1"))
    with FileTransferClient(HOST, running.port, timeout=10) as first:
        assert first.login_key(ALICE, identity) == ALICE
        second = key_login()
        assert second is not None and second.code == ErrorCode.TOO_MANY_SESSIONS, second
        first.quit()
    assert wait_until(lambda: key_login() is None, 10, 0.1), "the slot was not given back"
    lines = [r.getMessage() for r in caplog.records if r.name == "ftpserver.audit"]
    fingerprint = f"method='key' key='{identity.fingerprint}'"
    for reason in ("account locked", "account expired"):
        line = f"login user='alice' ip='127.0.0.1' outcome='failed' {fingerprint} reason='{reason}'"
        assert line in lines, lines
    refusal = "login user='alice' ip='127.0.0.1' outcome=\"refused (user's max_sessions)\""
    assert f"{refusal} {fingerprint}" in lines, lines
