"""End to end (issue 16): the shell in a terminal, as an sftp or lftp user tries it (pexpect).

A wrong password asked for again, familiar ``ls`` flags and columns, ``cd``
alone, ``!`` alone and ``help !``, the progress bar erased cleanly on Ctrl-C,
and lost connections reported in words with the command that continues.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from pathlib import Path

import pexpect
import pytest
import test_e2e_shell
from conftest import (
    ALICE,
    ALICE_PASSWORD,
    HOST,
    Account,
    ClientEnv,
    MakeServer,
    ProxyFactory,
    RunningServer,
    file_digest_of,
)
from test_e2e_shell import DOWNLOAD_SIZE, PROMPT, RED, Shell, SpawnShell, plain, put_on_server

from ftpclient.identity import generate

pytestmark = pytest.mark.timeout(90)

spawn_shell = test_e2e_shell.spawn_shell  # the fixture, shared
ERASE = "\r\x1b[K"  # what the progress bar writes to leave its line empty


def spawn_raw(
    client_env: ClientEnv, local: Path, port: int, password: str | None, *args: str
) -> pexpect.spawn:
    """The client in a terminal, with FTPCLIENT_PASSWORD set to ``password`` (None: unset)."""
    env = dict(client_env.env)
    env.pop("FTPCLIENT_PASSWORD", None)
    if password is not None:
        env["FTPCLIENT_PASSWORD"] = password
    return pexpect.spawn(
        sys.executable,
        ["-m", "ftpclient", f"{ALICE}@{HOST}:{port}", *args],
        env=env,
        cwd=str(local),
        encoding="utf-8",
        timeout=15,
        dimensions=(40, 200),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


# -- logging in --------------------------------------------------------------------


def wrong_then_right(child: pexpect.spawn) -> None:
    """A wrong password is asked for again; the right one then logs in and ``pwd`` works."""
    child.expect_exact(f"Password for {ALICE}@{HOST}: ")
    child.sendline("not the password")
    child.expect_exact("login failed: login incorrect; try again")
    child.expect_exact(f"Password for {ALICE}@{HOST}: ")
    child.sendline(ALICE_PASSWORD)
    child.expect(PROMPT)
    child.sendline("pwd")
    child.expect(PROMPT)
    assert "/" in plain(str(child.before)).splitlines()[1:]


def give_up_after(child: pexpect.spawn, tries: int) -> None:
    """``tries`` wrong passwords end the client with status 2 (too many failed logins)."""
    for _ in range(tries):
        child.expect_exact(f"Password for {ALICE}@{HOST}: ")
        child.sendline("still wrong")
    child.expect_exact("ftpclient: login failed: too many failed logins")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 2


def test_wrong_password_is_asked_for_again(
    server: RunningServer, client_env: ClientEnv, local: Path
) -> None:
    child = spawn_raw(client_env, local, server.port, None)
    try:
        wrong_then_right(child)
    finally:
        child.close(force=True)


def test_three_wrong_passwords_end_with_status_2(
    server: RunningServer, client_env: ClientEnv, local: Path
) -> None:
    child = spawn_raw(client_env, local, server.port, None)
    give_up_after(child, 3)


def test_refused_key_then_a_wrong_password_is_asked_for_again(
    server: RunningServer, client_env: ClientEnv, local: Path
) -> None:
    """Key login (issue 18) first, then the password, asked again within the server's tries."""
    key = local / "not-registered"
    generate(key)  # the server does not know it: refused, one failed login
    child = spawn_raw(client_env, local, server.port, None, "--identity", str(key))
    try:
        wrong_then_right(child)  # the right one is the third try: the server still allows it
    finally:
        child.close(force=True)


def test_refused_key_leaves_two_password_tries(
    server: RunningServer, client_env: ClientEnv, local: Path
) -> None:
    key = local / "not-registered"
    generate(key)
    child = spawn_raw(client_env, local, server.port, None, "--identity", str(key))
    give_up_after(child, 2)
    assert "Password for" not in plain(str(child.before))


def test_batch_in_a_terminal_fails_at_once_on_a_wrong_password(
    server: RunningServer, client_env: ClientEnv, local: Path
) -> None:
    child = spawn_raw(client_env, local, server.port, "wrong", "-c", "pwd")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 2
    out = plain(str(child.before))
    assert out.strip() == "ftpclient: login failed: login incorrect", out


# -- familiar commands -----------------------------------------------------------------


def test_ls_flags_as_in_sftp(server: RunningServer, spawn_shell: SpawnShell) -> None:
    home = server.alice_home
    for name, size, age in (("small", 10, 300), ("large", 5000, 200), ("newest", 100, 0)):
        (home / name).write_bytes(b"x" * size)
        when = time.time() - age
        os.utime(home / name, (when, when))
    (home / ".hidden").write_bytes(b"h")
    shell = spawn_shell()

    def names(command: str) -> list[str]:
        return [line.split()[-1] for line in plain(shell.run(command)).splitlines()[1:]]

    assert names("ls -l") == ["large", "newest", "small"], "-l: by name, dot files hidden"
    assert names("ls -la") == [".hidden", "large", "newest", "small"]
    assert names("ls -lt") == ["newest", "large", "small"]
    assert names("ls -lS") == ["large", "newest", "small"]
    assert names("ls -lSr") == ["small", "newest", "large"]
    long_bytes = plain(shell.run("ls -l large")).splitlines()[1]
    assert re.match(r"file +5000 \d{4}-\d\d-\d\d \d\d:\d\d large$", long_bytes), long_bytes
    long_human = plain(shell.run("ls -lh large")).splitlines()[1]
    assert re.match(r"file +4\.9 KiB \d{4}-", long_human), long_human
    columns = plain(shell.run("ls -a")).splitlines()[1:]
    assert columns == [".hidden  large    newest   small"], f"not in columns: {columns}"


def test_cd_alone_goes_home_and_help_bang(spawn_shell: SpawnShell, server: RunningServer) -> None:
    (server.alice_home / "deep" / "er").mkdir(parents=True)
    shell = spawn_shell()
    shell.run("cd deep/er")
    assert shell.folder == "/deep/er"
    shell.run("cd")
    assert shell.folder == "/", "cd alone did not go to the remote home"
    out = plain(shell.run("help !")).splitlines()[1:]
    assert out[0] == "usage: ![COMMAND]", out


def test_bang_alone_opens_a_shell(spawn_shell: SpawnShell, client_env: ClientEnv) -> None:
    client_env.env["SHELL"] = "/bin/sh"
    client_env.env["PS1"] = "inner$ "
    shell = spawn_shell()
    shell.child.sendline("!")
    shell.child.expect_exact("inner$ ")
    shell.child.sendline("echo from-the-inner-shell-$((20 + 22))")
    shell.child.expect_exact("from-the-inner-shell-42")
    shell.child.sendline("exit")
    shell.prompt()
    assert shell.quit() == 0


def test_mkdir_and_get_suggest_the_flag(spawn_shell: SpawnShell, server: RunningServer) -> None:
    (server.alice_home / "docs").mkdir()
    shell = spawn_shell()
    out = shell.run("mkdir a/b/c")
    assert f"{RED}remote: no such folder: a/b (mkdir -p a/b/c creates it too)" in out, repr(out)
    out = plain(shell.run("get docs"))
    assert "remote: is a folder: docs (get -r copies a folder)" in out, out
    shell.run("mkdir -p a/b/c")
    assert (server.alice_home / "a" / "b" / "c").is_dir()


# -- progress and lost connections -------------------------------------------------------


def test_ctrl_c_erases_the_bar_before_the_message(
    server: RunningServer, spawn_shell: SpawnShell, proxy: ProxyFactory, local: Path
) -> None:
    put_on_server(server, "big.bin", os.urandom(DOWNLOAD_SIZE))
    shell = spawn_shell(port=proxy().port)
    shell.child.sendline("get big.bin")
    shell.child.expect(r"big\.bin: +\d+%\|", timeout=15)  # the bar is on screen
    shell.child.sendintr()
    out = str(shell.child.before) + str(shell.child.after) + shell.prompt()
    last_bar = out.rfind("%|")
    erase = out.rfind(ERASE)
    message = out.find("interrupted: big.bin (")
    assert 0 <= last_bar < erase < message, f"the bar was not erased first: {out!r}"
    assert re.search(r"interrupted: big\.bin \([\d.]+ [KM]iB of 3\.0 MiB received; "
                     r"reget big\.bin continues it\)", plain(out)), out  # fmt: skip


def test_lost_connection_says_what_moved_and_how_to_continue(
    server: RunningServer, spawn_shell: SpawnShell, proxy: ProxyFactory, local: Path
) -> None:
    remote = put_on_server(server, "big.bin", os.urandom(DOWNLOAD_SIZE))
    cut = proxy(rate=None, drop_after=1024 * 1024)
    shell = spawn_shell(port=cut.port)
    out = plain(shell.run("get big.bin", timeout=30))
    assert "Errno" not in out and "bytes to come" not in out, out
    pattern = (
        r"connection lost: the server (closed|reset) the connection during the transfer of "
        r"big\.bin \([\d.]+ [KM]iB of 3\.0 MiB received; reget big\.bin continues it\); "
        r"type 'reconnect' first"
    )
    assert re.search(pattern, out), out
    shell.run("reconnect")
    shell.run("reget big.bin", timeout=30)
    assert file_digest_of(local / "big.bin") == file_digest_of(remote)


def test_server_shutdown_is_said_in_words(
    make_server: MakeServer, client_env: ClientEnv, local: Path
) -> None:
    running = make_server(Account(ALICE, ALICE_PASSWORD), proxied=False)
    child = spawn_raw(client_env, local, running.port, ALICE_PASSWORD)
    shell = Shell(child)
    try:
        shell.prompt()
        for session in running.server.sessions.snapshot():
            session.interrupt()  # what a server's shutdown does to an idle session
        out = plain(shell.run("ls"))
        assert "Errno" not in out, out
        words = "the server closed the connection|the server reset the connection"
        assert re.search(rf"connection lost: ({words}); type 'reconnect'", out), out
        running.server.shutdown()
        running.server.server_close()  # the server is gone: reconnect is refused
        out = plain(shell.run("reconnect"))
        refused = f"cannot connect to {HOST}:{running.port}: connection refused"
        assert refused in out and "Errno" not in out, out
        assert "(disconnected)" in str(child.after)
    finally:
        child.close(force=True)
