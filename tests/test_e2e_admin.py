"""End to end: the administrator's control socket and the ``ftpserver`` admin commands.

A real ``ftpserver serve`` (with two workers, and with ``workers: 1``) and
real clients; the commands run as ``python -m ftpserver COMMAND``:

* ``status`` and ``sessions`` (text and ``--json``) show each session with
  its user, address, idleness and running transfer (bytes, rate);
* ``kick`` by session id, ``--user`` and ``--ip`` ends those sessions only,
  and an upload cut off by it is kept for ``reput``;
* ``bans`` lists a banned address and ``unban`` lifts the ban;
* ``reload`` says what changed, or why the old configuration stays;
* the control socket is mode 0600, the pid file holds the server's pid, the
  processes are titled ``ftpserver: supervisor`` / ``ftpserver: worker N``,
  and all of it goes away when the server stops;
* a command finds no server, or a socket turned off, and says so.
"""

from __future__ import annotations

import json
import os
import signal
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import (
    ALICE,
    ALICE_PASSWORD,
    BOB,
    BOB_PASSWORD,
    CliResult,
    RunFtpserver,
    ServerProcess,
    file_digest_of,
    wait_until,
    write_users_file,
)
from test_e2e_lifecycle import (
    StartServer,
    check_config,
    configure,
    connect,
    login_result,
    sigterm_and_wait,
    start_slow_upload,
)
from test_e2e_workers import _bit, proc_status, workers_of

from ftpproto.errors import ConnectionClosed
from ftpserver.users import add_user

pytestmark = pytest.mark.timeout(90)

WORKER_MODES = [pytest.param(2, id="workers-2"), pytest.param(1, id="workers-1")]


def admin(cli: RunFtpserver, config: Path, *args: str) -> CliResult:
    """Run ``ftpserver ARGS --config CONFIG``; no traceback ever."""
    result = cli(*args, "--config", str(config))
    assert "Traceback" not in result.stderr, result.stderr
    return result


def admin_ok(cli: RunFtpserver, config: Path, *args: str) -> str:
    result = admin(cli, config, *args)
    assert result.returncode == 0, f"{args}: {result.stdout}{result.stderr}"
    return result.stdout


def sessions_json(cli: RunFtpserver, config: Path) -> list[dict[str, object]]:
    result = admin(cli, config, "sessions", "--json")
    assert result.returncode == 0 and result.stderr == "", result
    rows = json.loads(result.stdout)
    assert isinstance(rows, list)
    return rows


def start(
    server_process: StartServer,
    config: Path,
    users: Path,
    homes: Path,
    workers: int,
    **more: object,
) -> ServerProcess:
    configure(config, workers=workers, control_socket="ctl.sock", **more)
    running = server_process(users, homes)
    assert (config.parent / "ctl.sock").is_socket()
    return running


Launch = Callable[..., ServerProcess]


@pytest.fixture
def launch(
    server_process: StartServer, server_config: Path, users_file: Path, homes: Path
) -> Launch:
    """``launch(workers, **settings)``: :func:`start` with this test's users and homes."""

    def go(workers: int, **more: object) -> ServerProcess:
        return start(server_process, server_config, users_file, homes, workers, **more)

    return go


# -- seeing and ending sessions -------------------------------------------------------------


def rated_users(tmp_path: Path, rate: str) -> tuple[Path, Path]:
    """``(users file, homes)``: alice limited to ``rate`` both ways, so transfers last; bob free."""
    homes = tmp_path / "rated-homes"
    rates = {"upload_rate": rate, "download_rate": rate}
    users = write_users_file(
        tmp_path / "rated.yaml", homes, {ALICE: (ALICE_PASSWORD, rates), BOB: (BOB_PASSWORD, {})}
    )
    return users, homes


@pytest.mark.parametrize("workers", WORKER_MODES)
def test_status_sessions_and_kick_keep_the_upload_for_reput(
    workers: int,
    tmp_path: Path,
    local: Path,
    server_config: Path,
    server_process: StartServer,
    ftpserver_cli: RunFtpserver,
) -> None:
    users, homes = rated_users(tmp_path, "256K")
    running = start(server_process, server_config, users, homes, workers)
    with connect(running.port) as idle:
        idle.login(BOB, BOB_PASSWORD)
        uploader, upload = start_slow_upload(running.port, local, homes / ALICE, 2 * 1024 * 1024)
        with uploader:
            assert wait_until(
                lambda: any(
                    row["transfer"] and row["transfer"]["bytes"] > 0  # type: ignore[index]
                    for row in sessions_json(ftpserver_cli, server_config)
                ),
                timeout=15,
                step=0.2,
            )
            rows = {row["user"]: row for row in sessions_json(ftpserver_cli, server_config)}
            assert set(rows) == {ALICE, BOB}
            moving = rows[ALICE]["transfer"]
            assert isinstance(moving, dict)
            assert moving["direction"] == "upload" and moving["path"] == "/big.bin"
            assert moving["bytes"] > 0 and moving["rate"] > 0
            assert rows[BOB]["transfer"] is None and rows[BOB]["command"] is None
            assert rows[BOB]["address"].startswith("127.0.0.1:")  # type: ignore[union-attr]
            assert isinstance(rows[BOB]["idle"], float) and rows[BOB]["idle"] >= 0
            if workers == 2:
                assert all(str(row["id"]).count(".") == 1 for row in rows.values())

            status = admin_ok(ftpserver_cli, server_config, "status")
            assert f"server pid {running.proc.pid}, up " in status
            assert "sessions: 2\n" in status and "transfers: 1\n" in status
            assert f"{rows[ALICE]['id']} alice put /big.bin " in status
            assert "bans: 0" in status
            assert ("workers: 2 (" in status) == (workers == 2)

            table = admin_ok(ftpserver_cli, server_config, "sessions").splitlines()
            assert table[0].split() == ["ID", "USER", "ADDRESS", "SINCE", "IDLE", "TRANSFER"]
            bob_line = next(line for line in table if f" {BOB} " in line)
            assert bob_line.startswith(str(rows[BOB]["id"])) and bob_line.endswith(" -")
            alice_line = next(line for line in table if f" {ALICE} " in line)
            assert " busy " in alice_line and "put /big.bin" in alice_line

            kicked = admin_ok(ftpserver_cli, server_config, "kick", "--user", ALICE)
            assert kicked.split() == ["ended", "session", str(rows[ALICE]["id"])]
            upload.join(15)
            assert isinstance(upload.error, (ConnectionError, ConnectionClosed, OSError))
        # Bob's session is untouched; Alice's bytes wait for reput.
        assert [entry.name for entry in idle.ls("/")] == []
        assert [row["user"] for row in sessions_json(ftpserver_cli, server_config)] == [BOB]
        with connect(running.port) as again:
            again.login(ALICE, ALICE_PASSWORD)
            kept = again.partial("big.bin")
            assert kept > 0
            result = again.put(str(local / "big.bin"), "big.bin", resume=True)
            assert result.offset == kept
        assert file_digest_of(homes / ALICE / "big.bin") == file_digest_of(local / "big.bin")

        bob_id = str(rows[BOB]["id"])
        assert admin_ok(ftpserver_cli, server_config, "kick", bob_id).split()[-1] == bob_id
        with pytest.raises((ConnectionError, ConnectionClosed, OSError)):
            idle.ls("/")
    missing = admin(ftpserver_cli, server_config, "kick", "9.99")
    assert missing.returncode == 1 and "no such session" in missing.stderr


@pytest.mark.parametrize("workers", WORKER_MODES)
def test_kick_by_address(
    workers: int,
    launch: Launch,
    server_config: Path,
    ftpserver_cli: RunFtpserver,
) -> None:
    running = launch(workers)
    clients = [connect(running.port) for _ in range(3)]
    for client in clients:
        client.login(ALICE, ALICE_PASSWORD)
    assert wait_until(lambda: len(sessions_json(ftpserver_cli, server_config)) == 3, 10, 0.2)
    assert admin(ftpserver_cli, server_config, "kick", "--ip", "10.9.9.9").returncode == 1
    bad = admin(ftpserver_cli, server_config, "kick", "--ip", "not-an-address")
    assert bad.returncode == 1 and "not an IP address: not-an-address" in bad.stderr
    ended = admin_ok(ftpserver_cli, server_config, "kick", "--ip", "127.0.0.1")
    assert len(ended.splitlines()) == 3
    for client in clients:
        with pytest.raises((ConnectionError, ConnectionClosed, OSError)):
            client.ls("/")
        client.close()
    assert wait_until(lambda: sessions_json(ftpserver_cli, server_config) == [], 10, 0.2)
    assert login_result(running.port, ALICE, ALICE_PASSWORD)


# -- bans -----------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", WORKER_MODES)
def test_bans_and_unban(
    workers: int,
    launch: Launch,
    server_config: Path,
    ftpserver_cli: RunFtpserver,
) -> None:
    running = launch(workers, ban_failures=2)
    assert admin_ok(ftpserver_cli, server_config, "bans") == "no bans\n"
    for _ in range(2):
        assert not login_result(running.port, ALICE, "wrong password")
    assert not login_result(running.port, ALICE, ALICE_PASSWORD)  # banned
    listed = admin_ok(ftpserver_cli, server_config, "bans").split()
    assert listed[0] == "127.0.0.1" and listed[-1] == "left"
    rows = json.loads(admin_ok(ftpserver_cli, server_config, "bans", "--json"))
    assert [row["ip"] for row in rows] == ["127.0.0.1"] and 800 < rows[0]["seconds_left"] <= 900
    assert "bans: 1" in admin_ok(ftpserver_cli, server_config, "status")

    assert admin_ok(ftpserver_cli, server_config, "unban", "127.0.0.1") == "unbanned 127.0.0.1\n"
    assert login_result(running.port, ALICE, ALICE_PASSWORD)
    assert admin_ok(ftpserver_cli, server_config, "bans") == "no bans\n"
    again = admin(ftpserver_cli, server_config, "unban", "127.0.0.1")
    assert again.returncode == 1 and "127.0.0.1 is not banned" in again.stderr
    bad = admin(ftpserver_cli, server_config, "unban", "example.org")
    assert bad.returncode == 1 and "not an IP address: example.org" in bad.stderr


# -- reload ---------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", WORKER_MODES)
def test_reload_says_what_changed_or_why_not(
    workers: int,
    users_file: Path,
    homes: Path,
    server_config: Path,
    launch: Launch,
    ftpserver_cli: RunFtpserver,
) -> None:
    running = launch(workers)
    assert admin_ok(ftpserver_cli, server_config, "reload") == "reloaded\n  nothing changed\n"
    add_user(users_file, homes, "carol", "carol pw", rounds=4)
    configure(server_config, idle_timeout=60)
    lines = admin_ok(ftpserver_cli, server_config, "reload").splitlines()
    assert lines == ["reloaded", "  idle_timeout: 300.0 -> 60.0", "  user carol: added"]
    assert login_result(running.port, "carol", "carol pw")

    configure(server_config, listen_backlog=7)
    lines = admin_ok(ftpserver_cli, server_config, "reload").splitlines()
    assert lines[1] == "  listen_backlog: needs a restart to change (256 stays)"

    configure(server_config, idle_timout=5)
    refused = admin(ftpserver_cli, server_config, "reload")
    assert refused.returncode == 1
    assert "reload refused, the old configuration stays in force:" in refused.stderr
    assert (
        f"{server_config}:" in refused.stderr and "unknown setting 'idle_timout'" in refused.stderr
    )
    assert login_result(running.port, "carol", "carol pw")


# -- the files and the processes ------------------------------------------------------------


def catches_sigterm(pid: int) -> bool:
    """Whether the server has its SIGTERM handler in place (it prints its port just before)."""
    return bool(int(proc_status(pid)["SigCgt"], 16) & _bit(signal.SIGTERM))


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()


@pytest.mark.parametrize("workers", WORKER_MODES)
def test_pid_file_titles_and_socket_mode_then_cleanup(
    workers: int,
    launch: Launch,
    server_config: Path,
) -> None:
    running = launch(workers, pid_file="run/server.pid")
    pid_file = server_config.parent / "run" / "server.pid"
    assert pid_file.read_text() == f"{running.proc.pid}\n"
    sock = server_config.parent / "ctl.sock"
    info = sock.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_uid == os.geteuid()
    if workers == 1:
        assert cmdline(running.proc.pid) == "ftpserver: server"
    else:
        assert cmdline(running.proc.pid) == "ftpserver: supervisor"
        expected = ["ftpserver: worker 1", "ftpserver: worker 2"]
        # A worker bears the supervisor's title from its fork until it serves.
        assert wait_until(
            lambda: sorted(cmdline(pid) for pid in workers_of(running)) == expected, 10
        ), [cmdline(pid) for pid in workers_of(running)]
    assert wait_until(lambda: catches_sigterm(running.proc.pid), 10)
    sigterm_and_wait(running, 20)
    assert not pid_file.exists() and not sock.exists()


def test_default_socket_and_what_commands_say_without_a_server(
    tmp_path: Path,
    users_file: Path,
    homes: Path,
    server_config: Path,
    server_process: StartServer,
    ftpserver_cli: RunFtpserver,
) -> None:
    none = admin(ftpserver_cli, server_config, "status")
    default = tmp_path / "config" / "control.sock"  # relative to the working directory
    assert none.returncode == 1
    assert (
        none.stderr
        == f"ftpserver: error: no server is running here (no control socket {default})\n"
    )

    configure(server_config, workers=1)
    running = server_process(users_file, homes)
    assert stat.S_IMODE(default.stat().st_mode) == 0o600
    assert "sessions: 0" in admin_ok(ftpserver_cli, server_config, "status")
    # A second server on the same socket runs without one; the first keeps it.
    second = server_process(users_file, homes)
    assert "no control socket" in (second.log.read_text() if second.log else "")
    assert f"server pid {running.proc.pid}," in admin_ok(ftpserver_cli, server_config, "status")
    assert wait_until(lambda: catches_sigterm(second.proc.pid), 10)
    sigterm_and_wait(second, 20)
    assert default.is_socket()
    sigterm_and_wait(running, 20)

    # A stale socket file left by a killed server is replaced.
    killed = server_process(users_file, homes)
    killed.proc.kill()
    killed.proc.wait(10)
    assert default.is_socket()
    stale = admin(ftpserver_cli, server_config, "status")
    assert stale.returncode == 1 and "is stale" in stale.stderr
    server_process(users_file, homes)
    assert "sessions: 0" in admin_ok(ftpserver_cli, server_config, "status")

    off = tmp_path / "off.yaml"
    off.write_text("control_socket: null\n")
    result = admin(ftpserver_cli, off, "sessions")
    assert result.returncode == 1 and "control_socket is null" in result.stderr


def test_check_config_checks_the_admin_settings(
    tmp_path: Path, users_file: Path, homes: Path, ftpserver_cli: RunFtpserver
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        "metrics_listen: 9102\nmetrics_user_quota: 5000\ncontrol_socket: 12\npid_file: ''\n"
    )
    status, problems, _ = check_config(ftpserver_cli, config, users_file, homes)
    assert status == 1
    text = "\n".join(problems)
    assert f"{config}:1: metrics_listen: expected HOST:PORT" in text
    assert f"{config}:2: metrics_user_quota: 5000 is out of range" in text
    assert f"{config}:3: control_socket: expected a path" in text
    assert f"{config}:4: pid_file: expected a path" in text
    good = tmp_path / "good.yaml"
    good.write_text(
        "metrics_listen: '[::1]:9102'\nmetrics_user_quota: 10\n"
        "control_socket: /run/ftpserver/control.sock\npid_file: null\n"
    )
    assert check_config(ftpserver_cli, good, users_file, homes)[0] == 0


def test_a_stopped_worker_is_named_and_its_late_answer_skipped(
    launch: Launch,
    server_config: Path,
    ftpserver_cli: RunFtpserver,
) -> None:
    running = launch(2)
    status = admin_ok(ftpserver_cli, server_config, "status")
    line = next(line for line in status.splitlines() if line.startswith("workers: 2 ("))
    pids = dict(
        item.split(": ") for item in line.removeprefix("workers: 2 (").rstrip(")").split(", ")
    )
    stopped = int(pids["2"])
    os.kill(stopped, signal.SIGSTOP)
    try:
        status = admin_ok(ftpserver_cli, server_config, "status")
        assert "not answering: workers 2" in status
        listing = admin(ftpserver_cli, server_config, "sessions")
        assert listing.stdout == "no sessions\n"
        assert listing.stderr == (
            "ftpserver: warning: workers 2 did not answer; their sessions are not listed\n"
        )
    finally:
        os.kill(stopped, signal.SIGCONT)
    with connect(running.port) as conn:
        conn.login(ALICE, ALICE_PASSWORD)
        # The late answers to the questions above are skipped, not taken for this one.
        assert wait_until(lambda: len(sessions_json(ftpserver_cli, server_config)) == 1, 15, 0.2)
        assert "not answering" not in admin_ok(ftpserver_cli, server_config, "status")
