"""End to end: the server's life cycle, with ``python -m ftpserver`` as a subprocess.

* ``SIGHUP`` reloads users.yaml (and the run-time settings): a new user can
  log in, a session already logged in keeps working; a broken users.yaml or
  server.yaml is refused with a log line and the old configuration stays.
* ``SIGTERM``: no new sessions, idle sessions closed at once, a running
  transfer gets ``shutdown_grace`` seconds (and finishes if it can), then is
  cut off leaving nothing partial visible; exit status 0.  A second signal
  cuts off at once.
* ``check-config`` prints every problem with FILE:LINE and exits 1, or 0 for
  a good configuration; ``serve`` refuses an invalid one with one line.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import (
    ALICE,
    ALICE_PASSWORD,
    BOB,
    BOB_PASSWORD,
    HOST,
    RunFtpserver,
    ServerProcess,
    digest_of,
    file_digest_of,
    temp_files,
    wait_until,
    write_users_file,
)

from ftpclient.client import PART_SUFFIX, FileTransferClient
from ftpproto.errors import ErrorCode, RemoteError
from ftpserver.jail import PARTIAL_DIR
from ftpserver.users import add_user, hash_password

pytestmark = pytest.mark.timeout(60)

StartServer = Callable[..., ServerProcess]
MIB = 1024 * 1024
GOOD_HASH = hash_password("x", 4)


def connect(port: int) -> FileTransferClient:
    return FileTransferClient(HOST, port, timeout=10)


def login_result(port: int, user: str, password: str) -> bool:
    """True if ``user`` logs in; False for "login incorrect"; anything else fails the test."""
    with connect(port) as conn:
        try:
            conn.login(user, password)
        except RemoteError as exc:
            assert exc.code == ErrorCode.LOGIN_FAILED, f"login answered {exc.code} {exc.text}"
            return False
        conn.quit()
        return True


def log_text(running: ServerProcess) -> str:
    assert running.log is not None
    return running.log.read_text()


def wait_for_log(running: ServerProcess, text: str, count: int = 1, timeout: float = 10) -> None:
    assert wait_until(lambda: log_text(running).count(text) >= count, timeout, 0.05), (
        f"{text!r} (x{count}) not in the server log:\n{log_text(running)}"
    )


def configure(config: Path, **settings: object) -> None:
    """Append settings to the server.yaml used by ``server_process``."""
    with config.open("a") as handle:
        for key, value in settings.items():
            handle.write(f"{key}: {value}\n")


def visible(home: Path) -> list[str]:
    """What a user sees in a home folder (the hidden partial-upload store left out)."""
    return sorted(set(os.listdir(home)) - {PARTIAL_DIR})


def sigterm_and_wait(running: ServerProcess, timeout: float) -> float:
    """Send SIGTERM, check the server exits cleanly in time; how long it took."""
    running.proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    status = running.proc.wait(timeout=timeout)
    took = time.monotonic() - started
    assert status == 0, f"exit status {status}\n{log_text(running)}"
    return took


# -- reload -------------------------------------------------------------------------------


def test_sighup_adds_a_user_and_refuses_broken_files(
    tmp_path: Path,
    users_file: Path,
    homes: Path,
    server_config: Path,
    server_process: StartServer,
) -> None:
    running = server_process(users_file, homes)
    with connect(running.port) as kept:
        assert kept.login(ALICE, ALICE_PASSWORD) == ALICE
        assert not login_result(running.port, "carol", "carol pw")
        add_user(users_file, homes, "carol", "carol pw", rounds=4)
        running.proc.send_signal(signal.SIGHUP)
        wait_for_log(running, "reloaded: 3 users")
        assert login_result(running.port, "carol", "carol pw"), "the new user cannot log in"
        assert login_result(running.port, BOB, BOB_PASSWORD)
        # The session logged in before the reload keeps working.
        (tmp_path / "k.txt").write_bytes(b"kept session")
        kept.put(str(tmp_path / "k.txt"), "k.txt")
        assert (homes / ALICE / "k.txt").read_bytes() == b"kept session"

        good_users = users_file.read_text()
        users_file.write_text("users:\n  alice:\n    password: not-a-hash\n")
        running.proc.send_signal(signal.SIGHUP)
        wait_for_log(running, "reload refused")
        refused = [line for line in log_text(running).splitlines() if "reload refused" in line]
        assert str(users_file) in refused[0], f"the refusal does not name the file: {refused}"
        assert login_result(running.port, ALICE, ALICE_PASSWORD), "the old users are gone"
        assert login_result(running.port, "carol", "carol pw")
        assert kept.pwd() == "/"

        users_file.write_text(good_users)
        configure(server_config, idle_timeout="soon")
        running.proc.send_signal(signal.SIGHUP)
        wait_for_log(running, "reload refused", count=2)
        assert login_result(running.port, BOB, BOB_PASSWORD)
        assert kept.get("k.txt", str(tmp_path / "k2.txt")).size == len(b"kept session")
        kept.quit()
    assert running.proc.poll() is None, "a bad reload stopped the server"
    running.proc.terminate()
    assert running.proc.wait(timeout=10) == 0


def test_sighup_applies_run_time_settings(
    users_file: Path, homes: Path, server_config: Path, server_process: StartServer
) -> None:
    running = server_process(users_file, homes)
    with connect(running.port) as kept:
        kept.login(ALICE, ALICE_PASSWORD)
        with connect(running.port) as second:  # no per-IP limit yet beyond 50
            assert second.login(BOB, BOB_PASSWORD) == BOB
        configure(server_config, max_sessions_per_ip=1, listen_backlog=5)
        running.proc.send_signal(signal.SIGHUP)
        wait_for_log(running, "reloaded: 2 users")
        assert "listen_backlog" in log_text(running), "no warning that a restart is needed"
        with connect(running.port) as third, pytest.raises(RemoteError) as refused:
            third.login(BOB, BOB_PASSWORD)
        assert refused.value.code == ErrorCode.TOO_MANY_SESSIONS
        assert kept.pwd() == "/"
    running.proc.terminate()
    assert running.proc.wait(timeout=10) == 0


# -- stopping -----------------------------------------------------------------------------------


RatedUsers = Callable[[str], tuple[Path, Path]]


@pytest.fixture
def rated_users(tmp_path: Path) -> RatedUsers:
    """``rated_users("256K")``: alice at that rate each way (one second of burst), bob
    unlimited; returns (users file, home root)."""

    def make(rate: str) -> tuple[Path, Path]:
        homes = tmp_path / "rated-homes"
        homes.mkdir()
        users = write_users_file(
            tmp_path / "rated-users.yaml",
            homes,
            {
                ALICE: (ALICE_PASSWORD, {"upload_rate": rate, "download_rate": rate}),
                BOB: (BOB_PASSWORD, {}),
            },
        )
        return users, homes

    return make


class Background:
    """Runs one client call in a thread and keeps its result or exception."""

    def __init__(self, call: Callable[[], object]) -> None:
        self.result: object = None
        self.error: BaseException | None = None

        def run() -> None:
            try:
                self.result = call()
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self, timeout: float = 10) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the client call did not end"


def start_slow_upload(
    port: int, local: Path, home: Path, size: int
) -> tuple[FileTransferClient, Background]:
    """Start a rate-limited upload of ``size`` bytes to big.bin; return once bytes arrive."""
    source = local / "big.bin"
    source.write_bytes(os.urandom(size))
    conn = connect(port)
    conn.login(ALICE, ALICE_PASSWORD)
    upload = Background(lambda: conn.put(str(source), "big.bin"))
    assert wait_until(lambda: any(p.stat().st_size > 0 for p in temp_files(home)), timeout=10), (
        "the upload did not start"
    )
    return conn, upload


def assert_nothing_partial_visible(home: Path) -> None:
    assert temp_files(home) == [], f"temporary files left: {temp_files(home)}"
    assert not (home / "big.bin").exists(), "a partial target file is visible"
    assert visible(home) == [], f"left in the home: {visible(home)}"


def test_sigterm_during_upload_cuts_off_after_the_grace(
    rated_users: RatedUsers, local: Path, server_config: Path, server_process: StartServer
) -> None:
    users, homes = rated_users("64K")
    configure(server_config, shutdown_grace=1)
    running = server_process(users, homes)
    home = homes / ALICE
    conn, upload = start_slow_upload(running.port, local, home, 4 * MIB)  # 64 s at 64K/s
    try:
        took = sigterm_and_wait(running, 15)
        upload.join()
        assert upload.error is not None, "the cut-off upload reported success"
    finally:
        conn.close()
    assert_nothing_partial_visible(home)
    assert took >= 0.8, f"exited after {took:.2f} s: the upload got no grace period"
    assert took <= 4, (
        f"exited {took:.2f} s after SIGTERM with shutdown_grace 1\n{log_text(running)}"
    )


def test_upload_finishing_within_the_grace_is_kept(
    rated_users: RatedUsers, local: Path, server_config: Path, server_process: StartServer
) -> None:
    users, homes = rated_users("256K")
    configure(server_config, shutdown_grace=20)
    running = server_process(users, homes)
    home = homes / ALICE
    size = 384 * 1024  # 256 KiB of burst, then 0.5 s at 256 KiB/s
    conn, upload = start_slow_upload(running.port, local, home, size)
    try:
        took = sigterm_and_wait(running, 15)
        assert took < 5, f"exited after {took:.2f} s: waited for the grace, not the transfer"
        upload.join()
        assert upload.error is None, f"the upload failed: {upload.error!r}"
    finally:
        conn.close()
    assert file_digest_of(home / "big.bin") == file_digest_of(local / "big.bin")
    assert temp_files(home) == []


def test_sigterm_during_download(
    rated_users: RatedUsers, local: Path, server_config: Path, server_process: StartServer
) -> None:
    users, homes = rated_users("256K")
    configure(server_config, shutdown_grace=1)
    data = os.urandom(4 * MIB)
    (homes / ALICE / "d.bin").write_bytes(data)
    running = server_process(users, homes)
    conn = connect(running.port)
    conn.login(ALICE, ALICE_PASSWORD)
    target = local / "d.bin"
    part = Path(str(target) + PART_SUFFIX)
    download = Background(lambda: conn.get("d.bin", str(target)))
    try:
        assert wait_until(lambda: part.exists() and part.stat().st_size > 0, timeout=10)
        took = sigterm_and_wait(running, 10)
        assert 0.8 <= took <= 6, f"exited after {took:.2f} s with shutdown_grace 1"
        download.join()
        assert download.error is not None, "the cut-off download reported success"
    finally:
        conn.close()
    assert not target.exists(), "a truncated download appeared under the real name"
    assert digest_of((homes / ALICE / "d.bin").read_bytes()) == digest_of(data)
    assert visible(homes / ALICE) == ["d.bin"]


def test_second_sigterm_cuts_off_at_once(
    rated_users: RatedUsers, local: Path, server_config: Path, server_process: StartServer
) -> None:
    users, homes = rated_users("32K")
    configure(server_config, shutdown_grace=30)
    running = server_process(users, homes)
    home = homes / ALICE
    conn, upload = start_slow_upload(running.port, local, home, 4 * MIB)
    try:
        running.proc.send_signal(signal.SIGTERM)
        wait_for_log(running, "stopping")
        time.sleep(0.5)
        assert running.proc.poll() is None, "the first SIGTERM did not wait for the transfer"
        took = sigterm_and_wait(running, 15)
        upload.join()
        assert upload.error is not None
    finally:
        conn.close()
    assert_nothing_partial_visible(home)
    assert took <= 2, f"exited {took:.2f} s after the second signal\n{log_text(running)}"


def test_sigterm_closes_idle_sessions_at_once(
    users_file: Path, homes: Path, server_config: Path, server_process: StartServer
) -> None:
    configure(server_config, shutdown_grace=30)
    running = server_process(users_file, homes)
    idle = [connect(running.port) for _ in range(3)]
    try:
        idle[0].login(ALICE, ALICE_PASSWORD)
        idle[1].login(BOB, BOB_PASSWORD)  # idle[2] never logs in
        took = sigterm_and_wait(running, 10)
        assert took <= 3, f"exited after {took:.2f} s: it waited for idle sessions"
        for conn in idle:
            with pytest.raises((ConnectionError, OSError)):
                conn.pwd()
    finally:
        for conn in idle:
            conn.close()
    with pytest.raises(ConnectionRefusedError):
        connect(running.port)


# -- check-config ---------------------------------------------------------------------------------

BAD_SERVER_YAML = """\
port: 0
idle_timeout: soon
no_such_setting: 1
"""
SERVER_PROBLEMS = {2: "idle_timeout", 3: "no_such_setting"}

BAD_USERS_YAML = f"""\
users:
  alice:
    password: "{GOOD_HASH}"
    quota: 10Q
  bob:
    password: "$2b$12$tooshort"
  carol:
    password: "{GOOD_HASH}"
    colour: blue
  eve:
    password: "{GOOD_HASH}"
    home: ../x
"""
USERS_PROBLEMS = {4: "quota", 6: "bcrypt", 9: "colour", 12: "../x"}


def check_config(
    cli: RunFtpserver, config: Path, users: Path, home: Path
) -> tuple[int, list[str], list[str]]:
    """Run check-config; its status, the lines naming a problem, and all output lines."""
    result = cli(
        "check-config", "--config", str(config), "--users", str(users), "--home", str(home)
    )
    assert "Traceback" not in result.stderr, result.stderr
    output = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    problems = [line for line in output if ".yaml:" in line]
    return result.returncode, problems, output


def assert_problems(lines: list[str], path: Path, expected: dict[int, str]) -> None:
    for line_number, word in expected.items():
        hits = [line for line in lines if f"{path}:{line_number}: " in line]
        assert hits, f"no problem reported for {path}:{line_number} ({word}); output: {lines}"
        assert word in hits[0], f"{path}:{line_number} should be about {word}: {hits[0]!r}"


@pytest.fixture
def config_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A good server.yaml and users.yaml and the home root."""
    folder, home = tmp_path / "c", tmp_path / "h"
    folder.mkdir()
    home.mkdir()
    config, users = folder / "server.yaml", folder / "users.yaml"
    config.write_text("port: 0\nbcrypt_rounds: 4\n")
    users.write_text(f'users:\n  alice:\n    password: "{GOOD_HASH}"\n    quota: 10G\n')
    return config, users, home


def test_check_config_good(
    ftpserver_cli: RunFtpserver, config_files: tuple[Path, Path, Path]
) -> None:
    config, users, home = config_files
    status, problems, output = check_config(ftpserver_cli, config, users, home)
    assert status == 0, output
    assert problems == []
    assert any("OK" in line for line in output), output


def test_check_config_reports_every_users_problem(
    ftpserver_cli: RunFtpserver, config_files: tuple[Path, Path, Path]
) -> None:
    config, users, home = config_files
    users.write_text(BAD_USERS_YAML)
    status, problems, output = check_config(ftpserver_cli, config, users, home)
    assert status == 1, output
    assert_problems(problems, users, USERS_PROBLEMS)
    assert len(problems) == len(USERS_PROBLEMS), f"unexpected lines: {problems}"


def test_check_config_reports_every_problem_of_one_user(
    ftpserver_cli: RunFtpserver, config_files: tuple[Path, Path, Path]
) -> None:
    """One entry with an unknown key and a bad quota: both are reported."""
    config, users, home = config_files
    users.write_text(
        f'users:\n  alice:\n    password: "{GOOD_HASH}"\n    colour: blue\n    quota: 10Q\n'
    )
    status, problems, output = check_config(ftpserver_cli, config, users, home)
    assert status == 1, output
    assert_problems(problems, users, {4: "colour", 5: "quota"})


def test_check_config_reports_every_settings_problem(
    ftpserver_cli: RunFtpserver, config_files: tuple[Path, Path, Path]
) -> None:
    config, users, home = config_files
    config.write_text(BAD_SERVER_YAML)
    status, problems, output = check_config(ftpserver_cli, config, users, home)
    assert status == 1, output
    assert_problems(problems, config, SERVER_PROBLEMS)
    assert len(problems) == len(SERVER_PROBLEMS), f"unexpected lines: {problems}"


def test_check_config_reports_both_files(
    ftpserver_cli: RunFtpserver, config_files: tuple[Path, Path, Path]
) -> None:
    """Problems in server.yaml must not hide those of the users file named with --users."""
    config, users, home = config_files
    config.write_text(BAD_SERVER_YAML)
    users.write_text(BAD_USERS_YAML)
    status, problems, output = check_config(ftpserver_cli, config, users, home)
    assert status == 1, output
    assert_problems(problems, config, SERVER_PROBLEMS)
    assert_problems(problems, users, USERS_PROBLEMS)


@pytest.mark.parametrize("which", ["server.yaml", "users.yaml"])
def test_check_config_reports_a_duplicate_key(
    ftpserver_cli: RunFtpserver, config_files: tuple[Path, Path, Path], which: str
) -> None:
    config, users, home = config_files
    if which == "server.yaml":
        path = config
        path.write_text("port: 0\nbcrypt_rounds: 4\nport: 1\n")
    else:
        path = users
        path.write_text(
            f'users:\n  alice:\n    password: "{GOOD_HASH}"\n'
            f'  bob:\n    password: "{GOOD_HASH}"\n  alice:\n    password: "{GOOD_HASH}"\n'
        )
    status, problems, output = check_config(ftpserver_cli, config, users, home)
    assert status == 1, output
    line_number = 3 if which == "server.yaml" else 6
    assert_problems(problems, path, {line_number: "duplicate"})


def serve_refusal(cli: RunFtpserver, config: Path, users: Path, home: Path) -> str:
    """Run serve on a bad configuration; it must fail with one line, which is returned."""
    result = cli(
        "serve", "--config", str(config), "--users", str(users), "--home", str(home),
        "--port", "0",
    )  # fmt: skip
    assert result.returncode != 0, result
    assert "listening on" not in result.stdout, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line, got {lines}"
    return lines[0]


def test_serve_refuses_an_invalid_config_with_one_line(
    ftpserver_cli: RunFtpserver, config_files: tuple[Path, Path, Path]
) -> None:
    config, users, home = config_files
    config.write_text(BAD_SERVER_YAML)
    line = serve_refusal(ftpserver_cli, config, users, home)
    assert f"{config}:2" in line, line
    assert "check-config" in line, "no hint that there are more problems"


def test_serve_refuses_invalid_users_with_one_line(
    ftpserver_cli: RunFtpserver, config_files: tuple[Path, Path, Path]
) -> None:
    config, users, home = config_files
    users.write_text(BAD_USERS_YAML)
    line = serve_refusal(ftpserver_cli, config, users, home)
    assert f"{users}:4" in line, line
    assert "check-config" in line, "no hint that there are more problems"
    assert not (home / "alice").exists(), "serve created homes from an invalid users file"
