"""End to end: logs and the audit trail of ``python -m ftpserver serve``.

With ``log_file`` and ``audit_json: true`` every line of the file is one
complete JSON object with its time (ISO 8601, UTC) and process inside; every
login (success or failure, user, IP), every transfer (user, path, bytes,
seconds, BLAKE3 digest, outcome) and every change (mkdir, rmdir, rm, mv) is an
event line, nothing goes to stderr, and no password used in the test appears
anywhere in the log, wrong ones included, even at log level DEBUG.  Without
``audit_json`` the same events are ``key=value`` text on stderr, each line
naming the worker process that wrote it.
"""

from __future__ import annotations

import datetime
import json
import re
import signal
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
    RawSession,
    ServerProcess,
    digest_of,
    wait_until,
)

from ftpclient.client import FileTransferClient
from ftpproto.errors import RemoteError
from ftpproto.messages import Message

pytestmark = pytest.mark.timeout(60)

StartServer = Callable[..., ServerProcess]
WRONG_PASSWORD = "Wr0ng-Guess-7781|%x"
MALLORY_PASSWORD = "mallory-tries-4242"
AUDIT_MARK = " ftpserver.audit: "


def json_log(text: str) -> list[dict[str, Any]]:
    """Every line of a JSON log, each a complete object with its UTC time."""
    records = []
    for line in text.splitlines():
        record = json.loads(line)
        assert isinstance(record, dict), line
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["time"]), line
        when = datetime.datetime.fromisoformat(record["time"].replace("Z", "+00:00"))
        assert abs(datetime.datetime.now(datetime.timezone.utc) - when).total_seconds() < 300
        records.append(record)
    return records


def audit_events(text: str) -> list[dict[str, Any]]:
    """The audit events of a JSON log (every line must be a JSON object)."""
    return [record for record in json_log(text) if "event" in record]


def find(events: list[dict[str, Any]], count: int = 1, **match: Any) -> dict[str, Any]:
    """The event with the given fields, which must occur ``count`` times."""
    hits = [e for e in events if all(e.get(k) == v for k, v in match.items())]
    assert len(hits) == count, f"expected {count} events like {match}, found {hits} in {events}"
    return hits[0]


def password_forms(password: str) -> list[str]:
    """The password as typed and as escaped on the wire."""
    return [password, password.replace("%", "%25").replace("|", "%7C")]


def exercise(port: int, local: Path) -> dict[str, bytes]:
    """Log in (well and badly), transfer, change files; return the data moved."""
    data = {"a.txt": b"audited upload\n" * 500}
    (local / "a.txt").write_bytes(data["a.txt"])
    with FileTransferClient(HOST, port, timeout=10) as conn:
        with pytest.raises(RemoteError):
            conn.login(ALICE, WRONG_PASSWORD)
        with pytest.raises(RemoteError):
            conn.login("mallory", MALLORY_PASSWORD)
        conn.login(ALICE, ALICE_PASSWORD)
        conn.put(str(local / "a.txt"), "a.txt")
        conn.get("a.txt", str(local / "back.txt"))
        conn.mkdir("d")
        conn.mv("a.txt", "d/b.txt")
        conn.rm("d/b.txt")
        conn.rmdir("d")
        conn.quit()
    with FileTransferClient(HOST, port, timeout=10) as conn:
        conn.login(BOB, BOB_PASSWORD)
        conn.quit()
    # An upload that never completes: its audit line must not say ok.
    session = RawSession(port)
    try:
        session.login()
        assert session.call("put", "cut.bin", "100000") == Message("put", ("ready", "100000"))
        session.send_raw(b"x" * 1000)
    finally:
        session.close()
    return data


def test_json_audit_in_the_log_file_without_passwords(
    tmp_path: Path,
    users_file: Path,
    homes: Path,
    server_config: Path,
    server_process: StartServer,
    local: Path,
) -> None:
    log_file = tmp_path / "logs" / "ftpserver.log"
    log_file.parent.mkdir()
    with server_config.open("a") as handle:  # log_level DEBUG is already set
        handle.write(f"log_file: {log_file}\naudit_json: true\n")
    running = server_process(users_file, homes)
    data = exercise(running.port, local)
    assert wait_until(lambda: "cut.bin" in log_file.read_text()), (
        f"no audit line for the cut-off upload:\n{log_file.read_text()}"
    )
    running.proc.send_signal(signal.SIGTERM)
    assert running.proc.wait(timeout=10) == 0
    text = log_file.read_text()
    events = audit_events(text)
    others = [record for record in json_log(text) if "event" not in record]
    assert any(r["message"].startswith("serving 2 users") for r in others), others
    processes = {record.get("process") for record in json_log(text)}
    assert "supervisor" in processes and "worker 0" in processes, processes
    ip = "127.0.0.1"

    find(events, 2, event="login", user=ALICE, ip=ip, outcome="ok")  # the client, the raw one
    failed = [e for e in events if e["event"] == "login" and e.get("outcome") != "ok"]
    assert {(e["user"], e["ip"]) for e in failed} == {(ALICE, ip), ("mallory", ip)}, failed
    find(events, event="login", user=BOB, ip=ip, outcome="ok")

    digest = digest_of(data["a.txt"])
    for kind in ("put", "get"):
        event = find(events, event=kind, path="/a.txt")
        assert event["user"] == ALICE and event["ip"] == ip, event
        assert event["bytes"] == len(data["a.txt"]), event
        assert event["blake3"] == digest, event
        assert event["outcome"] == "ok", event
        assert isinstance(event["seconds"], int | float) and 0 <= event["seconds"] < 10, event
    cut = find(events, event="put", path="/cut.bin")
    assert cut["outcome"] != "ok", cut
    assert cut["user"] == ALICE, cut

    assert find(events, event="mkdir", path="/d")["user"] == ALICE
    assert find(events, event="mv", path="/a.txt")["to"] == "/d/b.txt"
    removed = find(events, event="rm", path="/d/b.txt")
    assert (removed["files"], removed["bytes"]) == (1, len(data["a.txt"])), removed
    assert find(events, event="rmdir", path="/d")["user"] == ALICE

    for password in (ALICE_PASSWORD, BOB_PASSWORD, WRONG_PASSWORD, MALLORY_PASSWORD):
        for form in password_forms(password):
            assert form not in text, f"a password ({form!r}) is in the log file"
    stderr = running.log.read_text() if running.log else ""
    assert AUDIT_MARK not in stderr, "audit lines went to stderr despite log_file"
    for password in (ALICE_PASSWORD, BOB_PASSWORD, WRONG_PASSWORD, MALLORY_PASSWORD):
        for form in password_forms(password):
            assert form not in stderr, f"a password ({form!r}) is on stderr"


def test_text_audit_on_stderr(
    tmp_path: Path,
    users_file: Path,
    homes: Path,
    server_process: StartServer,
    local: Path,
) -> None:
    running = server_process(users_file, homes)
    exercise(running.port, local)
    assert running.log is not None
    assert wait_until(lambda: "cut.bin" in running.log.read_text())  # type: ignore[union-attr]
    running.proc.send_signal(signal.SIGTERM)
    assert running.proc.wait(timeout=10) == 0
    text = running.log.read_text()
    audit = [line.split(AUDIT_MARK, 1)[1] for line in text.splitlines() if AUDIT_MARK in line]
    assert all(re.match(r"worker \d+: ", line) for line in audit), audit
    audit = [line.split(": ", 1)[1] for line in audit]
    assert "login user='alice' ip='127.0.0.1' outcome='ok'" in audit, audit
    assert "login user='alice' ip='127.0.0.1' outcome='failed'" in audit, audit
    puts = [line for line in audit if line.startswith("put user='alice'") and "/a.txt" in line]
    assert len(puts) == 1 and "outcome='ok'" in puts[0] and "blake3='" in puts[0], puts
    for password in (ALICE_PASSWORD, BOB_PASSWORD, WRONG_PASSWORD, MALLORY_PASSWORD):
        for form in password_forms(password):
            assert form not in text, f"a password ({form!r}) is in the log"


def test_one_process_after_a_log_rotation_writes_to_the_new_file(
    tmp_path: Path, users_file: Path, homes: Path, server_config: Path, server_process: StartServer
) -> None:
    """``workers: 1``: the file moved away (logrotate), then a refused reload and a login.

    Both lines land in a new file of the same name, none in the rotated one.
    (Several workers: ``test_e2e_workers``.)
    """
    log_file = tmp_path / "ftpserver.log"
    with server_config.open("a") as handle:
        handle.write(f"workers: 1\nlog_file: {log_file}\n")
    running = server_process(users_file, homes)
    rotated = log_file.rename(tmp_path / "ftpserver.log.1")
    with server_config.open("a") as handle:
        handle.write("max_sessions: lots\n")
    running.proc.send_signal(signal.SIGHUP)
    assert wait_until(lambda: log_file.exists() and "reload refused" in log_file.read_text()), (
        rotated.read_text()
    )
    with FileTransferClient(HOST, running.port, timeout=10) as conn:
        conn.login(ALICE, ALICE_PASSWORD)
    assert wait_until(lambda: "login user='alice'" in log_file.read_text()), log_file.read_text()
    assert "serving 2 users" in rotated.read_text()
    assert "reload refused" not in rotated.read_text()
    assert "login user=" not in rotated.read_text()
