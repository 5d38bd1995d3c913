"""End to end: the interactive ``ftpclient`` shell in a pseudo-terminal (pexpect).

A real client process against a real server on 127.0.0.1: type commands,
press Tab, Ctrl-C and Ctrl-D, read the screen.  Slow transfers go through a
throttling proxy (conftest ``proxy``) so that they last over a second.
Files are checked on disk, in alice's home and in the local folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pexpect
import pytest
from conftest import (
    ALICE,
    HOST,
    ClientEnv,
    ProxyFactory,
    RunningServer,
    file_digest_of,
    temp_files,
    wait_until,
)

from ftpserver.jail import PARTIAL_DIR

pytestmark = pytest.mark.timeout(60)

MIB = 1024 * 1024
# A download through proxy() (2 MiB/s) of DOWNLOAD_SIZE lasts about 1.5 s.
DOWNLOAD_SIZE = 3 * MIB
# An upload needs more: the kernel takes the first ~4 MiB into the client's
# socket send buffer at once, so the client only waits on the proxy after that.
# UPLOAD_SIZE at UPLOAD_RATE keeps the client sending for about 1.4 s.
UPLOAD_SIZE = 12 * MIB
UPLOAD_RATE = 6 * MIB
RED = "\x1b[31m"
RESET = "\x1b[0m"
# user@host:/folder> ; the folder is group 1.  "(disconnected)" may follow the folder.
PROMPT = re.compile(r"alice@127\.0\.0\.1:(/[^\r\n>]*?)( \(disconnected\))?> ")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x08")


def plain(text: str) -> str:
    """Screen text without colours, cursor moves, backspaces and carriage returns."""
    return ANSI.sub("", text).replace("\r", "")


class Shell:
    """One ``python -m ftpclient`` process in a pty, with helpers to type and read."""

    def __init__(self, child: pexpect.spawn) -> None:
        self.child = child

    def prompt(self, timeout: float = 15) -> str:
        """Wait for the next prompt; return the raw output before it."""
        self.child.expect(PROMPT, timeout=timeout)
        return str(self.child.before)

    @property
    def folder(self) -> str:
        """The remote folder shown by the last prompt."""
        match = self.child.match
        assert match is not None
        return str(match.group(1))

    def run(self, line: str, timeout: float = 15) -> str:
        """Type ``line`` and Enter; return the raw output up to the next prompt."""
        self.child.sendline(line)
        return self.prompt(timeout)

    def quit(self) -> int:
        """Ctrl-D at the prompt; return the exit status."""
        self.child.sendeof()
        self.child.expect(pexpect.EOF, timeout=10)
        self.child.close()
        assert self.child.exitstatus is not None, f"no exit status: {self.child.signalstatus}"
        return int(self.child.exitstatus)


SpawnShell = Callable[..., Shell]


@pytest.fixture
def spawn_shell(server: RunningServer, client_env: ClientEnv, local: Path) -> Iterator[SpawnShell]:
    """A factory: ``spawn_shell(port=, target=, args=)`` starts the shell, waits for a prompt."""
    started: list[pexpect.spawn] = []

    def spawn(
        port: int | None = None, target: str | None = None, args: tuple[str, ...] = ()
    ) -> Shell:
        target = target or f"{ALICE}@{HOST}:{port or server.port}"
        child = pexpect.spawn(
            sys.executable,
            ["-m", "ftpclient", *args, target],
            env=client_env.env,
            cwd=str(local),
            encoding="utf-8",
            timeout=15,
            dimensions=(40, 200),
            # A shell that runs pytest in the background (cmd &) passes SIGINT on as
            # ignored; the client in a terminal must get Ctrl-C as a person's would.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        started.append(child)
        shell = Shell(child)
        shell.prompt()
        return shell

    yield spawn
    for child in started:
        if child.isalive():
            child.terminate(force=True)
        child.close()


def put_on_server(server: RunningServer, name: str, data: bytes) -> Path:
    """Create a file in alice's home; return its path."""
    path = server.alice_home / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def summary_seconds(text: str, name: str) -> float:
    """The seconds in the summary line of ``name``; fails if there is none."""
    match = re.search(
        rf"{re.escape(name)} (?:->|<-) \S+: [\d.]+ [KMG]?i?B in ([\d.]+) s \(.*\), blake3 verified",
        plain(text),
    )
    assert match, f"no summary line for {name} in {plain(text)!r}"
    return float(match.group(1))


# -- the prompt ----------------------------------------------------------------


def test_prompt_shows_user_host_and_folder_and_follows_cd(
    server: RunningServer, spawn_shell: SpawnShell
) -> None:
    (server.alice_home / "sub" / "deeper").mkdir(parents=True)
    shell = spawn_shell()
    assert shell.folder == "/", f"first prompt: {shell.child.after!r}"
    assert shell.child.after == "alice@127.0.0.1:/> "
    shell.run("cd sub/deeper")
    assert shell.child.after == "alice@127.0.0.1:/sub/deeper> "
    assert "/sub/deeper" in plain(shell.run("pwd")).splitlines()[1:], "pwd after cd"
    shell.run("cd ..")
    assert shell.folder == "/sub"
    out = shell.run("cd nope")
    assert "no such file or folder" in plain(out), f"cd to a missing folder: {out!r}"
    assert shell.folder == "/sub", "a failed cd changed the prompt"
    assert shell.quit() == 0


# -- Tab completion --------------------------------------------------------------


def test_tab_completes_a_unique_command_prefix(spawn_shell: SpawnShell, local: Path) -> None:
    shell = spawn_shell()
    shell.child.send("reg\t")
    shell.child.send("nope.bin\r")
    out = plain(shell.prompt())
    first = out.splitlines()[0]
    assert first == "reget nope.bin", (
        f"'reg<Tab>' then 'nope.bin' should give the line 'reget nope.bin', got {first!r}"
    )
    assert "remote: no such file or folder: nope.bin" in out, out
    assert not list(local.iterdir()), "a failed reget left files behind"


def test_tab_completes_a_remote_file_then_downloads_it(
    server: RunningServer, spawn_shell: SpawnShell, local: Path
) -> None:
    data = os.urandom(70_000)
    put_on_server(server, "report-2026.bin", data)
    put_on_server(server, "other.txt", b"other")
    shell = spawn_shell()
    shell.child.send("get rep\t")
    shell.child.send("\r")
    out = shell.prompt()
    # a unique file name is completed with a space after it, ready for the next word
    assert plain(out).splitlines()[0] == "get report-2026.bin ", f"completed line: {out!r}"
    summary_seconds(out, "report-2026.bin")
    assert (local / "report-2026.bin").read_bytes() == data, "downloaded bytes"
    assert not (local / "other.txt").exists()


def test_tab_completes_a_remote_path_in_a_folder(
    server: RunningServer, spawn_shell: SpawnShell, local: Path
) -> None:
    data = b"inner file\n" * 100
    put_on_server(server, "projects/inner-notes.txt", data)
    shell = spawn_shell()
    shell.child.send("get proj\t")
    shell.child.send("inn\t")
    shell.child.send("\r")
    out = plain(shell.prompt())
    assert out.splitlines()[0] == "get projects/inner-notes.txt ", f"completed line: {out!r}"
    summary_seconds(out, "projects/inner-notes.txt")
    assert (local / "inner-notes.txt").read_bytes() == data


def test_tab_completes_a_remote_name_with_a_space_usably(
    server: RunningServer, spawn_shell: SpawnShell, local: Path
) -> None:
    data = b"quarterly\n" * 50
    put_on_server(server, "my report.txt", data)
    shell = spawn_shell()
    shell.child.send("get my\t")
    shell.child.send("\r")
    out = plain(shell.prompt())
    assert (local / "my report.txt").exists(), f"the completed name is no usable argument: {out!r}"
    assert (local / "my report.txt").read_bytes() == data


def test_tab_completes_a_local_name_with_a_space_usably(
    server: RunningServer, spawn_shell: SpawnShell, local: Path
) -> None:
    (local / "local notes.txt").write_bytes(b"local notes\n")
    shell = spawn_shell()
    shell.child.send("put local\t")
    shell.child.send("\r")
    out = plain(shell.prompt())
    uploaded = server.alice_home / "local notes.txt"
    assert uploaded.exists(), f"the completed name is no usable argument: {out!r}"
    assert uploaded.read_bytes() == b"local notes\n"


def test_tab_gives_a_remote_folder_a_trailing_slash(
    server: RunningServer, spawn_shell: SpawnShell
) -> None:
    (server.alice_home / "archive-2026").mkdir()
    shell = spawn_shell()
    shell.child.send("cd arch\t")
    shell.child.expect_exact("cd archive-2026/", timeout=5)
    shell.run("")
    assert shell.folder == "/archive-2026", f"prompt after cd: {shell.child.after!r}"


def test_tab_completes_local_paths_for_put(
    server: RunningServer, spawn_shell: SpawnShell, local: Path
) -> None:
    # The same prefix locally and remotely: only local completion gives the local name.
    data = os.urandom(40_000)
    (local / "upzz-local.dat").write_bytes(data)
    put_on_server(server, "upzz-remote.dat", b"remote")
    shell = spawn_shell()
    shell.child.send("put upzz\t")
    shell.child.send("\r")
    out = plain(shell.prompt())
    assert out.splitlines()[0] == "put upzz-local.dat ", f"completed line: {out!r}"
    summary_seconds(out, "upzz-local.dat")
    assert (server.alice_home / "upzz-local.dat").read_bytes() == data, "uploaded bytes"
    assert (server.alice_home / "upzz-remote.dat").read_bytes() == b"remote"


def test_tab_completes_local_folders_for_lcd(spawn_shell: SpawnShell, local: Path) -> None:
    (local / "downloads-here").mkdir()
    shell = spawn_shell()
    shell.child.send("lcd downl\t")
    shell.child.expect_exact("lcd downloads-here/", timeout=5)
    shell.run("")
    out = plain(shell.run("lpwd"))
    assert str(local / "downloads-here") in out.splitlines()[1:], out


# -- help, unknown commands, errors ----------------------------------------------


def test_help_lists_commands_with_one_line_descriptions(spawn_shell: SpawnShell) -> None:
    shell = spawn_shell()
    out = plain(shell.run("help"))
    lines = out.splitlines()[1:]
    described = {}
    for line in lines:
        match = re.match(r"^\s+(\S+)\s+(\S.*)$", line)
        if match:
            described[match.group(1)] = match.group(2)
    expected = [
        "get", "reget", "put", "reput", "ls", "cd", "pwd", "stat", "mkdir", "rm", "mv",
        "lcd", "lls", "lpwd", "lmkdir", "!", "reconnect", "help", "quit",
    ]  # fmt: skip
    missing = [name for name in expected if name not in described]
    assert not missing, f"help does not describe {missing}: {lines}"
    assert "EOF" not in described, "help lists the Ctrl-D handler"
    for name, text in described.items():
        assert len(text) > 8 and "\n" not in text, f"{name}: {text!r}"
    assert "download" in described["get"].lower()
    assert "upload" in described["put"].lower()


def test_help_command_shows_usage_and_an_example(spawn_shell: SpawnShell) -> None:
    shell = spawn_shell()
    out = plain(shell.run("help get")).splitlines()[1:]
    assert out[0].startswith("usage: get "), out
    assert "REMOTE" in out[0], out
    assert any("Example: get " in line for line in out), f"no example: {out}"
    out = plain(shell.run("help reput")).splitlines()[1:]
    assert out[0].startswith("usage: reput "), out
    assert any("Example: reput " in line for line in out), f"no example: {out}"


def test_unknown_command_suggests_the_closest(spawn_shell: SpawnShell) -> None:
    shell = spawn_shell()
    out = shell.run("lsl")
    assert f"{RED}unknown command: lsl (did you mean 'ls'?){RESET}" in out, repr(out)
    out = plain(shell.run("rmdri x"))
    assert "did you mean 'rmdir'?" in out, out


def test_error_is_one_red_line_naming_the_file(spawn_shell: SpawnShell, local: Path) -> None:
    shell = spawn_shell()
    out = shell.run("get nope.txt")
    lines = out.replace("\r", "").splitlines()
    assert lines[1:] == [f"{RED}remote: no such file or folder: nope.txt{RESET}"], repr(out)
    assert not list(local.iterdir()), "a failed get left a file"
    out = shell.run("put missing-local.txt")
    lines = out.replace("\r", "").splitlines()
    assert len(lines) == 2 and lines[1].startswith(RED), repr(out)
    assert "missing-local.txt" in lines[1] and lines[1].startswith(f"{RED}local: "), repr(out)


# -- progress ------------------------------------------------------------------------


def test_progress_bar_and_summary_for_a_slow_download(
    server: RunningServer, spawn_shell: SpawnShell, proxy: ProxyFactory, local: Path
) -> None:
    data = os.urandom(DOWNLOAD_SIZE)
    put_on_server(server, "big.bin", data)
    shell = spawn_shell(port=proxy().port)
    out = shell.run("get big.bin", timeout=30)
    screen = out.replace("\r", "\n")
    assert re.search(r"big\.bin: +\d+%\|", screen), f"no progress bar: {out!r}"
    assert "100%|" in screen, f"the bar never reached 100%: {out!r}"
    assert "3.0 MiB/3.0 MiB" in screen, f"bytes done/total, in the summary's units: {out!r}"
    rate_and_eta = r"\| [\d.]+ [KM]iB/3\.0 MiB, [\d.]+ [KM]iB/s, \d+:\d\d left"
    assert re.search(rate_and_eta, screen), f"rate, time left: {out!r}"
    # The finished bar is erased and the summary takes its line: one line per transfer.
    assert re.search(r"\r\x1b\[Kbig\.bin -> big\.bin: ", out), f"bar left on screen: {out!r}"
    assert summary_seconds(out, "big.bin") > 1.0, "the transfer was too quick to test"
    assert (local / "big.bin").read_bytes() == data
    assert not (local / "big.bin.part").exists()


def test_progress_bar_and_summary_for_a_slow_upload(
    server: RunningServer, spawn_shell: SpawnShell, proxy: ProxyFactory, local: Path
) -> None:
    data = os.urandom(UPLOAD_SIZE)
    (local / "up.bin").write_bytes(data)
    shell = spawn_shell(port=proxy(rate=UPLOAD_RATE).port)
    out = shell.run("put up.bin", timeout=30)
    screen = out.replace("\r", "\n")
    assert re.search(r"up\.bin: +\d+%\|", screen), f"no progress bar: {out!r}"
    assert "MiB/s" in screen, f"no rate: {out!r}"
    assert summary_seconds(out, "up.bin") > 1.0, "the transfer was too quick to test"
    assert file_digest_of(server.alice_home / "up.bin") == file_digest_of(local / "up.bin")


@pytest.mark.parametrize("option", ["--quiet", "--json"])
def test_no_progress_bar_with_quiet_or_json_even_on_a_terminal(
    server: RunningServer, spawn_shell: SpawnShell, proxy: ProxyFactory, local: Path, option: str
) -> None:
    data = os.urandom(DOWNLOAD_SIZE)
    put_on_server(server, "big.bin", data)
    shell = spawn_shell(port=proxy().port, args=(option,))
    started = time.monotonic()
    out = shell.run("get big.bin", timeout=30)
    assert time.monotonic() - started > 1.0, "the transfer was too quick to test"
    assert "%|" not in out and "B/s" not in out, f"progress with {option}: {out!r}"
    lines = plain(out).splitlines()[1:]
    if option == "--quiet":
        assert lines == [], f"--quiet printed {lines}"
    else:
        assert len(lines) == 1 and json.loads(lines[0])["event"] == "get", lines
    assert (local / "big.bin").read_bytes() == data


def test_no_progress_bar_for_a_quick_transfer(
    server: RunningServer, spawn_shell: SpawnShell, local: Path
) -> None:
    put_on_server(server, "small.bin", b"s" * 10_000)
    shell = spawn_shell()
    out = shell.run("get small.bin")
    assert "%|" not in out, f"a bar for a quick transfer: {out!r}"
    summary_seconds(out, "small.bin")
    assert (local / "small.bin").read_bytes() == b"s" * 10_000


# -- Ctrl-C, reget, reput, reconnect ---------------------------------------------------


def test_ctrl_c_during_download_keeps_part_then_reget_resumes(
    server: RunningServer, spawn_shell: SpawnShell, proxy: ProxyFactory, local: Path
) -> None:
    data = os.urandom(DOWNLOAD_SIZE)
    remote = put_on_server(server, "data/big.bin", data)
    shell = spawn_shell(port=proxy().port)
    shell.run("cd data")
    shell.child.sendline("get big.bin")
    part = local / "big.bin.part"
    assert wait_until(lambda: part.exists() and part.stat().st_size > 512 * 1024, timeout=10), (
        "the download did not start"
    )
    shell.child.sendintr()
    out = shell.prompt(timeout=15)
    assert "interrupted" in plain(out), f"no 'interrupted' line: {out!r}"
    assert shell.folder == "/data", "the remote folder was lost after Ctrl-C"
    assert "(disconnected)" not in str(shell.child.after), "not reconnected after Ctrl-C"
    assert part.exists(), "the .part file was removed"
    kept = part.stat().st_size
    assert 0 < kept < len(data), f".part holds {kept} bytes"
    assert not (local / "big.bin").exists(), "the real name exists after an interrupted get"
    out = shell.run("reget big.bin", timeout=30)
    assert "resumed" in plain(out), f"the summary does not say it resumed: {out!r}"
    assert file_digest_of(local / "big.bin") == file_digest_of(remote), "reget gave other bytes"
    assert not part.exists()
    assert shell.quit() == 0


def test_ctrl_c_during_upload_then_reput_resumes(
    server: RunningServer, spawn_shell: SpawnShell, proxy: ProxyFactory, local: Path
) -> None:
    data = os.urandom(UPLOAD_SIZE)
    (local / "up.bin").write_bytes(data)
    home = server.alice_home
    shell = spawn_shell(port=proxy(rate=UPLOAD_RATE).port)
    shell.child.sendline("put up.bin")

    def upload_under_way() -> bool:
        sizes = []
        for temp in temp_files(home):
            with contextlib.suppress(FileNotFoundError):
                sizes.append(temp.stat().st_size)
        return any(size > MIB for size in sizes)

    assert wait_until(upload_under_way, timeout=10), "the upload did not start"
    shell.child.sendintr()
    out = shell.prompt(timeout=15)
    assert "interrupted" in plain(out), f"no 'interrupted' line: {out!r}"
    assert not (home / "up.bin").exists(), "an interrupted upload was put in place"
    partials = home / PARTIAL_DIR
    assert wait_until(
        lambda: not temp_files(home) and partials.is_dir() and any(partials.iterdir()), timeout=10
    ), "the server kept no partial upload"
    out = shell.run("reput up.bin", timeout=30)
    assert "resumed" in plain(out), f"the summary does not say it resumed: {out!r}"
    assert file_digest_of(home / "up.bin") == file_digest_of(local / "up.bin"), "stored bytes"
    assert shell.quit() == 0


def test_ctrl_c_at_the_prompt_keeps_the_shell(
    server: RunningServer, spawn_shell: SpawnShell, local: Path
) -> None:
    put_on_server(server, "after.txt", b"after\n")
    shell = spawn_shell()
    shell.run("cd /")
    shell.child.send("half a comm")
    # As a person would: Ctrl-C once the typing is on screen.  (A SIGINT that
    # lands while readline handles a key waits for the next key in CPython.)
    shell.child.expect_exact("half a comm", timeout=5)
    time.sleep(0.2)
    shell.child.sendintr()
    out = plain(shell.prompt())
    assert "^C" in out, out
    assert shell.child.isalive(), "Ctrl-C at the prompt ended the shell"
    out = plain(shell.run("get after.txt"))
    assert "half a comm" not in out, f"the abandoned line was kept: {out!r}"
    assert (local / "after.txt").read_bytes() == b"after\n"
    assert shell.quit() == 0


def test_reconnect_keeps_the_remote_folder(
    server: RunningServer, spawn_shell: SpawnShell, local: Path
) -> None:
    put_on_server(server, "work/notes.txt", b"notes\n")
    shell = spawn_shell()
    shell.run("cd work")
    out = plain(shell.run("reconnect"))
    assert f"reconnected to 127.0.0.1:{server.port}" in out, out
    assert shell.folder == "/work", "reconnect lost the remote folder"
    assert "/work" in plain(shell.run("pwd")).splitlines()[1:]
    shell.run("get notes.txt")
    assert (local / "notes.txt").read_bytes() == b"notes\n"


def test_lost_connection_is_reported_then_reconnect_and_reget(
    server: RunningServer, spawn_shell: SpawnShell, proxy: ProxyFactory, local: Path
) -> None:
    data = os.urandom(DOWNLOAD_SIZE)
    remote = put_on_server(server, "big.bin", data)
    cut = proxy(drop_after=MIB)
    shell = spawn_shell(port=cut.port)
    out = plain(shell.run("get big.bin", timeout=30))
    assert cut.dropped.is_set(), "the proxy never cut the connection"
    assert "connection lost" in out and "reconnect" in out, out
    assert "(disconnected)" in str(shell.child.after), f"prompt: {shell.child.after!r}"
    assert (local / "big.bin.part").exists() and not (local / "big.bin").exists()
    out = plain(shell.run("ls"))
    assert "not connected" in out, out
    out = plain(shell.run("reconnect"))
    assert "reconnected" in out, out
    assert "(disconnected)" not in str(shell.child.after)
    out = plain(shell.run("reget big.bin", timeout=30))
    assert "resumed" in out, f"reget did not resume: {out!r}"
    assert file_digest_of(local / "big.bin") == file_digest_of(remote)


# -- Ctrl-D and history --------------------------------------------------------------


def test_ctrl_d_quits_with_0_and_history_is_recalled(
    spawn_shell: SpawnShell, client_env: ClientEnv, local: Path
) -> None:
    shell = spawn_shell()
    shell.run("lmkdir from-history")
    assert (local / "from-history").is_dir()
    assert shell.quit() == 0
    assert client_env.history_file.is_file(), "no history file in $HOME"
    assert "lmkdir from-history" in client_env.history_file.read_text().splitlines()
    (local / "from-history").rmdir()

    shell = spawn_shell()
    shell.child.send("\x1b[A")
    shell.child.expect_exact("lmkdir from-history", timeout=5)
    shell.child.send("\r")
    shell.prompt()
    assert (local / "from-history").is_dir(), "the recalled command did not run"
    assert shell.quit() == 0


# -- local commands -----------------------------------------------------------------


def test_local_commands(server: RunningServer, spawn_shell: SpawnShell, local: Path) -> None:
    put_on_server(server, "remote.txt", b"remote\n")
    (local / "here.txt").write_text("here\n")
    shell = spawn_shell()
    assert str(local) in plain(shell.run("lpwd")).splitlines()[1:]
    shell.run("lmkdir dl/inner")
    assert (local / "dl" / "inner").is_dir(), "lmkdir with a missing parent"
    listing = plain(shell.run("lls -1p")).splitlines()[1:]  # flags go to the local ls
    assert listing == ["dl/", "here.txt"], listing
    assert str(local / "dl") in plain(shell.run("lcd dl")).splitlines()[1:]
    assert str(local / "dl") in plain(shell.run("lpwd")).splitlines()[1:]
    shell.run("get remote.txt")
    assert (local / "dl" / "remote.txt").read_bytes() == b"remote\n", "get after lcd"
    assert not (local / "remote.txt").exists()
    out = plain(shell.run("!echo hi"))
    assert out.splitlines()[1:] == ["hi"], out
    shell.run("!echo made > made-by-shell.txt")
    assert (local / "dl" / "made-by-shell.txt").read_text() == "made\n", "!cmd runs in lcd folder"
    out = shell.run("lcd /no/such/folder")
    assert RED in out and "/no/such/folder" in plain(out), repr(out)
    assert str(local / "dl") in plain(shell.run("lpwd")).splitlines()[1:]


# -- connecting ----------------------------------------------------------------------


def test_bookmark_from_the_config_file(
    server: RunningServer, spawn_shell: SpawnShell, client_env: ClientEnv, local: Path
) -> None:
    client_env.write_config(
        f"bookmarks:\n  testsrv:\n    host: {HOST}\n    port: {server.port}\n    user: {ALICE}\n"
    )
    put_on_server(server, "via-bookmark.txt", b"bookmark\n")
    shell = spawn_shell(target="testsrv")
    assert shell.child.after == "alice@127.0.0.1:/> "
    assert "via-bookmark.txt" in plain(shell.run("ls")).splitlines()[1:]
    shell.run("get via-bookmark.txt")
    assert (local / "via-bookmark.txt").read_bytes() == b"bookmark\n"
    assert shell.quit() == 0
