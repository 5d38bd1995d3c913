"""End to end: the ``ftpclient`` command line, as a subprocess, against a real server.

Batch modes (``-c``, ``-b FILE``, ``-b -``), shell-style quoting, exit status
0/1/2, errors as one line on stderr without a traceback.  Results are
checked on disk, in alice's home and in the local folder.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from conftest import (
    ALICE_PASSWORD,
    HOST,
    RunCli,
    RunningServer,
    file_digest_of,
    run_command,
)

pytestmark = pytest.mark.timeout(60)


def assert_one_error_line(stderr: str) -> str:
    """stderr holds exactly one non-empty line and no traceback; return it."""
    assert "Traceback" not in stderr, f"a traceback on stderr:\n{stderr}"
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line on stderr, got {lines}"
    return lines[0]


def test_c_put_ls_get(server: RunningServer, run_cli: RunCli, local: Path) -> None:
    data = os.urandom(300_000)
    (local / "a").write_bytes(data)
    result = run_cli("-c", "put a; ls -lh; get a b")
    assert result.returncode == 0, result
    assert result.stderr == "", f"unexpected stderr: {result.stderr!r}"
    assert file_digest_of(server.alice_home / "a") == file_digest_of(local / "a"), "stored bytes"
    assert (local / "b").read_bytes() == data, "downloaded bytes"
    listing = [line for line in result.stdout.splitlines() if line.endswith(" a")]
    assert len(listing) == 1 and "293.0 KiB" in listing[0], f"ls output: {result.stdout!r}"
    assert not list(local.glob("*.part")), "a .part file was left"


def test_failing_command_exits_1_and_stops_the_batch(
    server: RunningServer, run_cli: RunCli, local: Path
) -> None:
    (local / "first").write_bytes(b"1")
    (local / "later").write_bytes(b"2")
    result = run_cli("-c", "put first; get missing.txt; put later")
    assert result.returncode == 1, result
    line = assert_one_error_line(result.stderr)
    assert "missing.txt" in line, f"the error does not name the cause: {line!r}"
    assert (server.alice_home / "first").read_bytes() == b"1", "the command before ran"
    assert not (server.alice_home / "later").exists(), "the batch went on after a failure"
    assert not (local / "missing.txt").exists() and not (local / "missing.txt.part").exists()


@pytest.mark.parametrize(
    "command",
    ["get", "cd nowhere", "put not-here.txt", "frobnicate", 'get "unclosed', "ls a b"],
)
def test_each_kind_of_failure_exits_1(
    server: RunningServer, run_cli: RunCli, local: Path, command: str
) -> None:
    (local / "after").write_bytes(b"after")
    result = run_cli("-c", f"{command}; put after")
    assert result.returncode == 1, f"{command!r}: {result}"
    assert_one_error_line(result.stderr)
    assert not (server.alice_home / "after").exists(), f"the batch went on after {command!r}"


def test_b_file(server: RunningServer, run_cli: RunCli, local: Path, tmp_path: Path) -> None:
    (server.alice_home / "sub").mkdir()
    (local / "one.txt").write_bytes(b"one")
    batch = tmp_path / "batch.txt"
    batch.write_text("# a comment\n\ncd sub\nput one.txt\npwd\nget one.txt two.txt\n")
    result = run_cli("-b", str(batch))
    assert result.returncode == 0, result
    assert (server.alice_home / "sub" / "one.txt").read_bytes() == b"one"
    assert (local / "two.txt").read_bytes() == b"one"
    assert "/sub" in result.stdout.splitlines(), f"pwd output: {result.stdout!r}"


def test_b_file_stops_at_the_first_failure(
    server: RunningServer, run_cli: RunCli, local: Path, tmp_path: Path
) -> None:
    (local / "x.txt").write_bytes(b"x")
    batch = tmp_path / "batch.txt"
    batch.write_text("cd missing-folder\nput x.txt\n")
    result = run_cli("-b", str(batch))
    assert result.returncode == 1, result
    assert os.listdir(server.alice_home) == [], "the batch went on after a failure"


def test_b_stdin(server: RunningServer, run_cli: RunCli, local: Path) -> None:
    (local / "in.txt").write_bytes(b"from stdin batch")
    result = run_cli("-b", "-", stdin="put in.txt stored.txt\nget stored.txt out.txt\n")
    assert result.returncode == 0, result
    assert (server.alice_home / "stored.txt").read_bytes() == b"from stdin batch"
    assert (local / "out.txt").read_bytes() == b"from stdin batch"


def test_b_missing_file_is_a_usage_error(run_cli: RunCli, tmp_path: Path) -> None:
    result = run_cli("-b", str(tmp_path / "no-such-batch"))
    assert result.returncode == 2, result
    assert_one_error_line(result.stderr)


@pytest.mark.parametrize(
    "local_name, remote_name, command",
    [
        ("my file.txt", "my file.txt", 'put "my file.txt"; get "my file.txt" "copy of it"'),
        ("a|b%c.txt", "a|b%c.txt", "put 'a|b%c.txt'; get 'a|b%c.txt' 'copy of it'"),
        (
            "src.txt",
            "résumé 2026|final%.txt",
            'put src.txt "résumé 2026|final%.txt"; get "résumé 2026|final%.txt" "copy of it"',
        ),
        ("日本語.txt", "日本語.txt", "put 日本語.txt; get 日本語.txt 'copy of it'"),
        (
            "semi;colon.txt",
            "semi;colon.txt",
            "put 'semi;colon.txt'; get \"semi;colon.txt\" 'copy of it'",
        ),
    ],
)
def test_quoted_names(
    server: RunningServer,
    run_cli: RunCli,
    local: Path,
    local_name: str,
    remote_name: str,
    command: str,
) -> None:
    data = b"quoted " + remote_name.encode()
    (local / local_name).write_bytes(data)
    result = run_cli("-c", command)
    assert result.returncode == 0, result
    assert os.listdir(server.alice_home) == [remote_name], "the stored name differs"
    assert (server.alice_home / remote_name).read_bytes() == data
    assert (local / "copy of it").read_bytes() == data


def test_cd_and_ls_with_quoted_folder(server: RunningServer, run_cli: RunCli) -> None:
    folder = server.alice_home / "my folder|x"
    folder.mkdir()
    (folder / "inside.txt").write_bytes(b"12345")
    result = run_cli("-c", "cd 'my folder|x'; pwd; ls -lh")
    assert result.returncode == 0, result
    lines = result.stdout.splitlines()
    assert "/my folder|x" in lines, f"pwd output: {lines}"
    assert any(line.endswith("inside.txt") and " 5 B " in line for line in lines), lines


@pytest.mark.parametrize(
    "user, password",
    [("alice", "wrong password"), ("nobody", ALICE_PASSWORD)],
    ids=["wrong-password", "unknown-user"],
)
def test_failed_login_exits_2(run_cli: RunCli, user: str, password: str) -> None:
    result = run_cli("-c", "pwd", user=user, password=password)
    assert result.returncode == 2, result
    line = assert_one_error_line(result.stderr)
    assert "login" in line.lower(), f"the error does not name the cause: {line!r}"
    assert result.stdout == "", result.stdout


def test_failed_logins_look_the_same(run_cli: RunCli) -> None:
    wrong = run_cli("-c", "pwd", user="alice", password="wrong")
    unknown = run_cli("-c", "pwd", user="nobody", password="wrong")
    assert (wrong.returncode, wrong.stderr) == (unknown.returncode, unknown.stderr)


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def test_connection_refused_exits_2(run_cli: RunCli) -> None:
    result = run_cli("-c", "pwd", port=free_port())
    assert result.returncode == 2, result
    line = assert_one_error_line(result.stderr)
    assert "connect" in line.lower(), f"the error does not name the cause: {line!r}"


@pytest.mark.parametrize(
    "args",
    [
        ["--port", "not-a-number"],
        ["--bogus-option"],
        ["-c", "pwd", "-b", "x"],
        ["-c"],
        ["first-target", "second-positional"],
    ],
    ids=str,
)
def test_usage_errors_exit_2(run_cli: RunCli, args: list[str]) -> None:
    result = run_cli(*args)
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr, result.stderr
    assert "error" in result.stderr, result.stderr


def test_no_user_without_a_terminal_exits_2(run_cli: RunCli) -> None:
    result = run_cli("-c", "pwd", user=None)
    assert result.returncode == 2, result
    assert_one_error_line(result.stderr)


def test_help_mentions_exit_codes(tmp_path: Path) -> None:
    result = run_command(["-m", "ftpclient", "--help"], cwd=tmp_path)
    assert result.returncode == 0, result
    text = result.stdout.lower()
    assert "exit" in text, result.stdout
    for code in ("0", "1", "2"):
        assert f"  {code}  " in result.stdout, f"exit code {code} not explained"
    assert "FTPCLIENT_PASSWORD" in result.stdout


def test_quit_in_a_batch_ends_it_with_0(
    server: RunningServer, run_cli: RunCli, local: Path
) -> None:
    (local / "x").write_bytes(b"x")
    result = run_cli("-c", "pwd; quit; put x")
    assert result.returncode == 0, result
    assert not (server.alice_home / "x").exists(), "commands after quit ran"
