"""End to end: the ``ftpserver`` command line, as a subprocess.

``serve --port 0`` announces its real port and serves the real client; a
missing users file becomes a ``demo`` user with a printed password only with
``--init`` or in the quick start (the checkout's own ``config/users.yaml``),
otherwise it is an error naming the file, as is a home folder whose parent
does not exist; ``useradd``/``passwd``/``userdel`` change who can log in; a
broken users file stops ``serve`` with one line naming the file.
"""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import (
    HOST,
    REPO_ROOT,
    SUBPROCESS_TIMEOUT,
    CliResult,
    RunFtpserver,
    ServerProcess,
    subprocess_env,
)

from ftpclient.client import FileTransferClient
from ftpproto.errors import ErrorCode, RemoteError

pytestmark = pytest.mark.timeout(60)

StartServer = Callable[..., ServerProcess]


def can_log_in(port: int, user: str, password: str) -> bool:
    """Whether ``user`` can log in with ``password``; any other failure fails the test."""
    with FileTransferClient(HOST, port, timeout=10) as conn:
        try:
            conn.login(user, password)
        except RemoteError as exc:
            assert exc.code == ErrorCode.LOGIN_FAILED, f"login answered {exc.code} {exc.text}"
            return False
        assert conn.pwd() == "/"
        conn.quit()
        return True


def useradd(cli: RunFtpserver, users: Path, home: Path, config: Path, name: str, pw: str) -> None:
    """``ftpserver useradd NAME --password-stdin``, which must succeed."""
    result = cli(
        "useradd", name, "--users", str(users), "--home", str(home), "--config", str(config),
        "--password-stdin", stdin=pw + "\n",
    )  # fmt: skip
    assert result.returncode == 0, result
    assert (home / name).is_dir(), f"useradd did not create the home of {name}"


def test_serve_port_0_with_the_real_client(
    tmp_path: Path, server_process: StartServer, server_config: Path, ftpserver_cli: RunFtpserver
) -> None:
    users, home = tmp_path / "users.yaml", tmp_path / "homes"
    useradd(ftpserver_cli, users, home, server_config, "carol", "carol pw|%")
    running = server_process(users, home)
    assert running.lines == [], f"unexpected output before listening: {running.lines}"
    data = b"served by the command line"
    source = tmp_path / "up.txt"
    source.write_bytes(data)
    with FileTransferClient(HOST, running.port, timeout=10) as conn:
        assert conn.login("carol", "carol pw|%") == "carol"
        conn.put(str(source), "up.txt")
        conn.get("up.txt", str(tmp_path / "down.txt"))
        assert [e.name for e in conn.ls()] == ["up.txt"]
    assert (home / "carol" / "up.txt").read_bytes() == data
    assert (tmp_path / "down.txt").read_bytes() == data
    running.proc.terminate()
    assert running.proc.wait(timeout=10) == 0, "serve did not exit cleanly on SIGTERM"


def test_serve_creates_a_demo_user(
    tmp_path: Path, server_process: StartServer, server_config: Path
) -> None:
    users, home = tmp_path / "new" / "users.yaml", tmp_path / "homes"
    running = server_process(users, home, "--init")
    text = "\n".join(running.lines)
    match = re.search(r"'demo', password: (\S+)$", text, re.MULTILINE)
    assert match, f"no demo password printed: {running.lines}"
    password = match.group(1)
    assert users.is_file(), "the users file was not created"
    assert password not in users.read_text(), "the plain password is in the users file"
    assert (home / "demo").is_dir(), "the demo home was not created"
    assert can_log_in(running.port, "demo", password), "the printed password does not work"
    assert not can_log_in(running.port, "demo", password + "x")


def test_useradd_then_login(
    tmp_path: Path, server_process: StartServer, server_config: Path, ftpserver_cli: RunFtpserver
) -> None:
    users, home = tmp_path / "users.yaml", tmp_path / "homes"
    useradd(ftpserver_cli, users, home, server_config, "dave", "dave's password")
    assert "dave's password" not in users.read_text(), "the plain password was stored"
    running = server_process(users, home)
    assert can_log_in(running.port, "dave", "dave's password")
    assert not can_log_in(running.port, "dave", "wrong")


def test_useradd_twice_fails(
    tmp_path: Path, server_config: Path, ftpserver_cli: RunFtpserver
) -> None:
    users, home = tmp_path / "users.yaml", tmp_path / "homes"
    useradd(ftpserver_cli, users, home, server_config, "erin", "pw1")
    before = users.read_text()
    result = ftpserver_cli(
        "useradd", "erin", "--users", str(users), "--home", str(home), "--config",
        str(server_config), "--password-stdin", stdin="pw2\n",
    )  # fmt: skip
    assert result.returncode == 1, result
    assert "erin" in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert users.read_text() == before, "a failed useradd changed the users file"


def test_passwd_changes_the_password(
    tmp_path: Path, server_process: StartServer, server_config: Path, ftpserver_cli: RunFtpserver
) -> None:
    users, home = tmp_path / "users.yaml", tmp_path / "homes"
    useradd(ftpserver_cli, users, home, server_config, "frank", "old password")
    result = ftpserver_cli(
        "passwd", "frank", "--users", str(users), "--config", str(server_config),
        "--password-stdin", stdin="new password\n",
    )  # fmt: skip
    assert result.returncode == 0, result
    running = server_process(users, home)
    assert can_log_in(running.port, "frank", "new password"), "the new password fails"
    assert not can_log_in(running.port, "frank", "old password"), "the old password still works"


def test_userdel_removes_the_user(
    tmp_path: Path, server_process: StartServer, server_config: Path, ftpserver_cli: RunFtpserver
) -> None:
    users, home = tmp_path / "users.yaml", tmp_path / "homes"
    useradd(ftpserver_cli, users, home, server_config, "gina", "gina pw")
    useradd(ftpserver_cli, users, home, server_config, "hank", "hank pw")
    (home / "gina" / "keep.txt").write_bytes(b"kept")
    result = ftpserver_cli("userdel", "gina", "--users", str(users), "--config", str(server_config))
    assert result.returncode == 0, result
    assert (home / "gina" / "keep.txt").read_bytes() == b"kept", "userdel removed the files"
    running = server_process(users, home)
    assert not can_log_in(running.port, "gina", "gina pw"), "a removed user can log in"
    assert can_log_in(running.port, "hank", "hank pw"), "userdel removed the wrong user"


@pytest.mark.parametrize("command", ["passwd", "userdel"])
def test_unknown_user_fails(
    tmp_path: Path, server_config: Path, ftpserver_cli: RunFtpserver, command: str
) -> None:
    users, home = tmp_path / "users.yaml", tmp_path / "homes"
    useradd(ftpserver_cli, users, home, server_config, "ivan", "pw")
    extra = ["--password-stdin"] if command == "passwd" else []
    result: CliResult = ftpserver_cli(
        command, "nobody", "--users", str(users), "--config", str(server_config), *extra,
        stdin="pw\n",
    )  # fmt: skip
    assert result.returncode == 1, result
    assert "nobody" in result.stderr and "Traceback" not in result.stderr, result.stderr


BROKEN_USERS = {
    "not-yaml": "users: [unclosed\n",
    "plain-password": "users:\n  alice:\n    password: secret\n",
    "no-users-key": "people:\n  alice: {}\n",
    "unknown-key": "users:\n  alice:\n    password: x\n    admin: true\n",
    "bad-name": "users:\n  '../x':\n    password: x\n",
    "home-escape": (
        "users:\n  alice:\n    password: '$2b$04$" + "a" * 53 + "'\n    home: ../../etc\n"
    ),
    "duplicate": "users:\n  a:\n    password: x\n  a:\n    password: y\n",
    "a-list": "- alice\n- bob\n",
}


@pytest.mark.parametrize("content", list(BROKEN_USERS.values()), ids=list(BROKEN_USERS))
def test_serve_refuses_a_broken_users_file(
    tmp_path: Path, server_config: Path, ftpserver_cli: RunFtpserver, content: str
) -> None:
    users = tmp_path / "users.yaml"
    users.write_text(content)
    result = ftpserver_cli(
        "serve", "--port", "0", "--users", str(users), "--home", str(tmp_path / "homes"),
        "--config", str(server_config),
    )  # fmt: skip
    assert result.returncode != 0, f"serve started with a broken users file: {result}"
    assert "listening on" not in result.stdout, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line, got {lines}"
    assert str(users) in lines[0], f"the error does not name the file: {lines[0]!r}"
    assert users.read_text() == content, "serve rewrote the broken users file"


def test_serve_refuses_a_broken_config(tmp_path: Path, ftpserver_cli: RunFtpserver) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("port: 9002\nno_such_setting: 1\n")
    result = ftpserver_cli("serve", "--port", "0", "--config", str(config))
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    assert f"{config}:2" in result.stderr, f"no file:line in {result.stderr!r}"


def test_flags_override_the_config_file(
    tmp_path: Path, server_process: StartServer, server_config: Path
) -> None:
    with server_config.open("a") as handle:
        handle.write("port: 1\nhost: 127.0.0.2\n")
    running = server_process(tmp_path / "users.yaml", tmp_path / "homes", "--host", HOST, "--init")
    assert running.port != 1, "--port 0 did not override the config file's port"


def test_relative_paths_in_the_config_are_taken_from_its_folder(
    tmp_path: Path, server_process: StartServer
) -> None:
    """``serve --config C`` alone: users and homes land next to the config file."""
    folder = tmp_path / "etc"
    folder.mkdir()
    config = folder / "server.yaml"
    config.write_text(
        "port: 0\nusers: users.yaml\nhome: homes\nbcrypt_rounds: 4\nlogin_failure_delay: 0.05\n"
    )
    args = [sys.executable, "-m", "ftpserver", "serve", "--config", str(config), "--init"]
    proc = subprocess.Popen(
        args,
        cwd=tmp_path,
        env=subprocess_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        created = proc.stdout.readline()
        listening = proc.stdout.readline()
        assert listening.startswith(f"listening on {HOST}:"), (created, listening)
        match = re.search(r"password: (\S+)$", created.strip())
        assert match, f"no demo password in {created!r}"
        assert (folder / "users.yaml").is_file(), "the users file is not next to the config"
        assert (folder / "homes" / "demo").is_dir(), "the homes are not next to the config"
        assert not (tmp_path / "users.yaml").exists() and not (tmp_path / "homes").exists()
        port = int(listening.strip().rpartition(":")[2])
        assert can_log_in(port, "demo", match.group(1))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# -- no surprises (issue 17) ------------------------------------------------------------


def serve_once(cli: RunFtpserver, *args: str) -> CliResult:
    """``serve --port 0 ARGS``, which must fail at once with one error line."""
    result = cli("serve", "--port", "0", *args)
    assert result.returncode == 1, result
    assert "listening on" not in result.stdout and "Traceback" not in result.stderr, result
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result


def test_serve_invents_no_users_file(
    tmp_path: Path, server_config: Path, ftpserver_cli: RunFtpserver
) -> None:
    users, home = tmp_path / "etc" / "users.yaml", tmp_path / "homes"
    result = serve_once(
        ftpserver_cli, "--users", str(users), "--home", str(home), "--config", str(server_config)
    )
    assert f"{users}: no such users file" in result.stderr, result.stderr
    assert "--init" in result.stderr and "useradd" in result.stderr, result.stderr
    assert not users.exists() and not users.parent.exists() and not home.exists()


def test_serve_refuses_a_home_whose_parent_is_missing(
    tmp_path: Path, server_config: Path, ftpserver_cli: RunFtpserver
) -> None:
    users, home = tmp_path / "users.yaml", tmp_path / "srv" / "ftp" / "homes"
    useradd(ftpserver_cli, users, tmp_path / "elsewhere", server_config, "ivy", "ivy pw")
    result = serve_once(
        ftpserver_cli, "--users", str(users), "--home", str(home), "--config", str(server_config)
    )
    assert f"home {home}: the folder {home.parent} does not exist" in result.stderr, result
    assert not (tmp_path / "srv").exists(), "serve created the home's parents"
    checked = ftpserver_cli(
        "check-config", "--users", str(users), "--home", str(home), "--config", str(server_config)
    )
    assert checked.returncode == 1, checked
    assert checked.stdout == f"home {home}: the folder {home.parent} does not exist\n", checked


def test_the_quick_start_still_creates_the_demo_user(tmp_path: Path) -> None:
    """``ftpserver serve`` in a checkout: config/users.yaml appears with a demo user."""
    checkout = tmp_path / "checkout"
    config = configparser.ConfigParser()
    config.read(REPO_ROOT / "setup.cfg")
    for package in config["options"]["packages"].replace(",", " ").split():
        if "." not in package:
            shutil.copytree(REPO_ROOT / package, checkout / package)
    (checkout / "config").mkdir()
    for name in ("server.yaml", "users.example.yaml"):
        shutil.copy(REPO_ROOT / "config" / name, checkout / "config" / name)
    settings = checkout / "config" / "server.yaml"
    text = settings.read_text()
    text = text.replace("\nport: 9002\n", "\nport: 0\n").replace(
        "bcrypt_rounds: 12", "bcrypt_rounds: 4"
    )
    settings.write_text(text)
    env = subprocess_env()
    env["PYTHONPATH"] = str(checkout)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ftpserver", "serve"],
        cwd=checkout,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        created, listening = proc.stdout.readline(), proc.stdout.readline()
        assert created.startswith("created config/users.yaml with user 'demo'"), created
        assert listening.startswith(f"listening on {HOST}:"), listening
        match = re.search(r"password: (\S+)$", created.strip())
        assert match, created
        assert (checkout / "home" / "demo").is_dir()
        port = int(listening.strip().rpartition(":")[2])
        assert can_log_in(port, "demo", match.group(1))
    finally:
        proc.terminate()
        proc.wait(timeout=SUBPROCESS_TIMEOUT)


def test_useradd_without_a_terminal_says_to_use_password_stdin(
    tmp_path: Path, server_config: Path, ftpserver_cli: RunFtpserver
) -> None:
    users = tmp_path / "users.yaml"
    result = ftpserver_cli(
        "useradd", "jill", "--users", str(users), "--home", str(tmp_path / "h"),
        "--config", str(server_config), stdin="typed password\n",
    )  # fmt: skip
    assert result.returncode == 1, result
    assert "--password-stdin" in result.stderr, result.stderr
    assert "GetPassWarning" not in result.stderr and "Traceback" not in result.stderr
    assert not users.exists(), "useradd wrote a user without a password"


def test_passwd_names_an_unknown_user_before_asking(
    tmp_path: Path, server_config: Path, ftpserver_cli: RunFtpserver
) -> None:
    users, home = tmp_path / "users.yaml", tmp_path / "homes"
    useradd(ftpserver_cli, users, home, server_config, "kim", "kim pw")
    # No --password-stdin and no terminal: the unknown user is what is reported.
    result = ftpserver_cli(
        "passwd", "nobody", "--users", str(users), "--config", str(server_config)
    )
    assert result.returncode == 1, result
    assert result.stderr.strip() == "ftpserver: error: no such user: nobody", result.stderr


def test_check_config_suggests_keys_and_reports_in_line_order(
    tmp_path: Path, ftpserver_cli: RunFtpserver
) -> None:
    config = tmp_path / "server.yaml"
    config.write_text("port: 0\nidle_timout: 30\nbcrypt_rounds: 4\n")
    users = tmp_path / "users.yaml"
    users.write_text(
        "users:\n"
        "  alice:\n"
        "    home: alice\n"
        "    quot: 1G\n"
        "  bob:\n"
        "    password: '$2b$04$" + "a" * 53 + "'\n"
        "    max_sesions: 2\n"
    )
    result = ftpserver_cli(
        "check-config", "--config", str(config), "--users", str(users), "--home", str(tmp_path)
    )
    assert result.returncode == 1, result
    assert result.stdout.splitlines() == [
        f"{config}:2: unknown setting 'idle_timout' (did you mean 'idle_timeout'?)",
        f"{users}:2: user alice: 'password' is missing (set it with 'ftpserver passwd alice')",
        f"{users}:4: user alice: unknown key 'quot' (did you mean 'quota'?)",
        f"{users}:7: user bob: unknown key 'max_sesions' (did you mean 'max_sessions'?)",
    ], result.stdout
    assert result.stderr.strip() == "4 problem(s) found"
