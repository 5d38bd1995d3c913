"""End to end (issue 16): ``ftpclient`` from scripts, as a subprocess against a real server.

``--json`` as a clean stream (every line one object, errors included, entries
that name their folder, seconds in milliseconds), a closed stdout, ``--retries``
for the first connection, ``--version``, messages in words, ``mv -f``,
``rm -r`` counting folders, and bookmarks that do not block each other.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import (
    ALICE,
    ALICE_PASSWORD,
    HOST,
    SUBPROCESS_TIMEOUT,
    Account,
    ClientEnv,
    ClientFactory,
    MakeServer,
    ProxyFactory,
    RunningServer,
    ServerProcess,
    bytes_on_disk,
    start_server,
    stop_server,
    subprocess_env,
    write_users_file,
)
from test_e2e_scripting import json_lines, make_file, one_error_line, run_client, target
from test_e2e_workers import start_workers as start_workers_fixture

from ftpclient.wording import connect_problem, lost_problem
from ftpproto.errors import ConnectionClosed

pytestmark = pytest.mark.timeout(90)
start_workers = start_workers_fixture  # the fixture: ftpserver serve with worker processes


def free_port() -> int:
    """A port on 127.0.0.1 that nobody listens on (bound, then let go)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


# -- --json: one object per line, for every command -----------------------------------


def test_json_is_a_clean_stream_for_every_command(
    server: RunningServer, client_env: ClientEnv, local: Path
) -> None:
    home = server.alice_home
    make_file(home / "sub" / "a.txt", b"a" * 10)
    make_file(home / "sub" / "tree" / "inner" / "x", b"x" * 7)
    make_file(home / "sub" / "tree" / "y", b"y" * 5)
    make_file(home / "sub" / "old.txt", b"old")
    make_file(local / "up.bin", os.urandom(30_000))
    batch = (
        "pwd; cd sub; pwd; mkdir new; mv old.txt new; ls; ls a.txt; -stat nope; "
        "put up.bin; rm -r tree; quota; lpwd; help pwd"
    )
    result, _ = run_client(client_env, local, target(server.port), "--json", "-c", batch)
    assert result.returncode == 0, result
    records = json_lines(result.stdout)  # fails on any line that is not one JSON object
    events = [r["event"] for r in records]
    assert events[:5] == ["pwd", "cd", "pwd", "mkdir", "mv"], events
    assert records[0] == {"event": "pwd", "path": "/"}
    assert records[1] == {"event": "cd", "path": "/sub"}
    assert records[3] == {"event": "mkdir", "path": "/sub/new"}
    assert records[4] == {"event": "mv", "from": "/sub/old.txt", "to": "/sub/new/old.txt"}
    assert (home / "sub" / "new" / "old.txt").read_bytes() == b"old"
    entries = [r for r in records if r["event"] == "entry"]
    assert {(e["folder"], e["name"]) for e in entries[:-1]} == {
        ("/sub", "a.txt"),
        ("/sub", "new"),
        ("/sub", "tree"),
    }, entries
    assert entries[-1]["folder"] == "/sub" and entries[-1]["name"] == "a.txt", "ls FILE"
    error = next(r for r in records if r["event"] == "error")
    assert error == {"event": "error", "code": 404, "text": "remote: no such file or folder: nope"}
    assert one_error_line(result.stderr) == error["text"], "the error is also one stderr line"
    put = next(r for r in records if r["event"] == "put")
    assert put["seconds"] == round(put["seconds"], 3), f"seconds not in milliseconds: {put}"
    removed = next(r for r in records if r["event"] == "rm")
    assert removed == {"event": "rm", "path": "/sub/tree", "files": 2, "folders": 2, "bytes": 12}
    assert not (home / "sub" / "tree").exists()
    assert {"event": "lpwd", "path": str(local)} in records
    help_lines = [r["text"] for r in records if r["event"] == "text"]
    assert help_lines[0] == "usage: pwd", help_lines


def test_json_failed_connection_is_a_record_too(client_env: ClientEnv, local: Path) -> None:
    port = free_port()
    result, _ = run_client(client_env, local, target(port), "--json", "-c", "pwd")
    assert result.returncode == 2, result
    line = one_error_line(result.stderr)
    assert json_lines(result.stdout) == [{"event": "error", "code": None, "text": line}]


# -- a closed stdout, --version, --retries for the first connection ------------------


def test_closed_stdout_ends_quietly(
    server: RunningServer, client_env: ClientEnv, local: Path
) -> None:
    big = server.alice_home / "big"
    big.mkdir()
    for i in range(3000):  # over 64 KiB of ls -l lines: more than a pipe holds
        (big / f"entry-number-{i:05d}").write_bytes(b"")
    command = (
        f"set -o pipefail; {sys.executable} -m ftpclient {target(server.port)} "
        "-c 'ls -l big; ls -l big' | head -1"
    )
    done = subprocess.run(
        ["bash", "-c", command],
        cwd=local,
        env=client_env.env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert done.stdout.count("\n") == 1 and "entry-number-00000" in done.stdout, done.stdout
    assert done.stderr == "", f"a closed stdout is no error to report: {done.stderr!r}"
    assert done.returncode == 141, f"status {done.returncode}, not that of a SIGPIPE'd tool"


@pytest.mark.parametrize("program", ["ftpclient", "ftpserver"])
def test_version(program: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", program, "--version"],
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert done.returncode == 0, done
    assert done.stdout.strip() == f"{program} 0.1.0", done.stdout


def test_cannot_connect_is_said_in_words(client_env: ClientEnv, local: Path) -> None:
    port = free_port()
    result, _ = run_client(client_env, local, target(port), "-c", "pwd")
    assert result.returncode == 2, result
    line = one_error_line(result.stderr)
    assert line == f"ftpclient: cannot connect to {HOST}:{port}: connection refused", line


def test_retries_cover_the_first_connection(
    users_file: Path, homes: Path, client_env: ClientEnv, local: Path
) -> None:
    port = free_port()
    make_file(homes / ALICE / "late.txt", b"the server came up late\n")
    client = subprocess.Popen(
        [sys.executable, "-m", "ftpclient", target(port), "--retries", "5", "-c", "get late.txt"],
        cwd=local,
        env=client_env.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert client.stderr is not None
    # The server is "restarting": it comes up only once the client was refused
    # (waiting for the client's notice, not a fixed time: its start-up may be slow).
    first = client.stderr.readline()
    running = start_server(users_file, homes, proxied=False, port=port)
    try:
        out, rest = client.communicate(timeout=SUBPROCESS_TIMEOUT)
    finally:
        stop_server(running)
    err = first + rest
    assert client.returncode == 0, (out, err)
    assert f"cannot connect to {HOST}:{port}: connection refused" in err, err
    assert "; retry 1 of 5 in 0.5 s" in err, err
    assert "Errno" not in err
    assert (local / "late.txt").read_bytes() == b"the server came up late\n"


def test_no_retries_fail_the_first_connection_at_once(client_env: ClientEnv, local: Path) -> None:
    result, seconds = run_client(client_env, local, target(free_port()), "-c", "pwd")
    assert result.returncode == 2 and "retry" not in result.stderr, result
    assert seconds < 10


# -- messages that name what to do ------------------------------------------------------


def test_folder_hints_and_paths_as_typed(
    server: RunningServer, client_env: ClientEnv, local: Path
) -> None:
    home = server.alice_home
    make_file(home / "sub" / "docs" / "a.txt", b"a")
    (local / "here").mkdir()
    cases = [
        ("cd sub; get docs", "remote: is a folder: docs (get -r copies a folder)"),
        ("put here", "local: is a folder: here (put -r copies a folder)"),
        ("mkdir a/b/c", "remote: no such folder: a/b (mkdir -p a/b/c creates it too)"),
        ("cd sub; rm docs", "remote: is a folder (use rm -r): docs"),
        ("cd sub; stat ../nope", "remote: no such file or folder: ../nope"),
    ]
    for batch, expected in cases:
        result, _ = run_client(client_env, local, target(server.port), "-c", batch)
        assert result.returncode == 1, (batch, result)
        assert one_error_line(result.stderr) == expected, batch
    assert not (home / "a").exists()


def test_rm_r_counts_files_and_folders(
    server: RunningServer, client_env: ClientEnv, local: Path
) -> None:
    make_file(server.alice_home / "t" / "one", b"1" * 1024)
    make_file(server.alice_home / "t" / "a" / "b" / "two", b"2" * 1024)
    result, _ = run_client(client_env, local, target(server.port), "-c", "rm -r t")
    assert result.returncode == 0, result
    assert result.stdout.strip() == "removed 2 files and 3 folders (2.0 KiB)", result.stdout
    assert not (server.alice_home / "t").exists()


# -- mv -f ----------------------------------------------------------------------------


def test_mv_refuses_and_mv_f_replaces(
    make_server: MakeServer, client_env: ClientEnv, local: Path
) -> None:
    def populate(homes: Path) -> None:
        make_file(homes / "carol" / "new.txt", b"n" * 1000)
        make_file(homes / "carol" / "old.txt", b"o" * 3000)

    running = make_server(Account("carol", "carol-pw-1", quota="1M"), populate=populate)
    home = running.home("carol")
    client_env.env["FTPCLIENT_PASSWORD"] = "carol-pw-1"
    where = f"carol@{HOST}:{running.port}"
    result, _ = run_client(client_env, local, where, "-c", "mv new.txt old.txt")
    assert result.returncode == 1, result
    assert one_error_line(result.stderr) == "remote: already exists: old.txt", result.stderr
    assert (home / "old.txt").read_bytes() == b"o" * 3000, "plain mv replaced the file"
    result, _ = run_client(client_env, local, where, "--json", "-c", "mv -f new.txt old.txt; quota")
    assert result.returncode == 0, result
    moved, quota = json_lines(result.stdout)
    assert moved == {"event": "mv", "from": "/new.txt", "to": "/old.txt"}
    assert (home / "old.txt").read_bytes() == b"n" * 1000
    assert not (home / "new.txt").exists()
    assert quota["used"] == bytes_on_disk(home) == 1000, "the replaced file still counts"


def test_mv_f_replaces_a_symlink_itself(
    server: RunningServer, client_env: ClientEnv, local: Path
) -> None:
    home = server.alice_home
    make_file(home / "real.txt", b"the link's target stays")
    make_file(home / "new.txt", b"new")
    (home / "link.txt").symlink_to("real.txt")
    (home / "dir").mkdir()
    make_file(home / "dir" / "new2.txt", b"old in dir")
    make_file(home / "new2.txt", b"new2")
    batch = "mv -f new.txt link.txt; mv -f new2.txt dir"
    result, _ = run_client(client_env, local, target(server.port), "-c", batch)
    assert result.returncode == 0, result
    assert not (home / "link.txt").is_symlink() and (home / "link.txt").read_bytes() == b"new"
    assert (home / "real.txt").read_bytes() == b"the link's target stays"
    assert (home / "dir" / "new2.txt").read_bytes() == b"new2", "mv -f FILE DIR: into DIR"


def test_mv_f_through_worker_processes_keeps_the_quota_exact(
    start_workers: Callable[..., ServerProcess], tmp_path: Path, client_env: ClientEnv, local: Path
) -> None:
    homes = tmp_path / "worker-homes"
    users = write_users_file(
        tmp_path / "worker-users.yaml", homes, {ALICE: (ALICE_PASSWORD, {"quota": "1M"})}
    )
    make_file(homes / ALICE / "a.txt", b"a" * 2000)
    make_file(homes / ALICE / "b.txt", b"b" * 5000)
    running = start_workers(users=users, home=homes)
    result, _ = run_client(
        client_env, local, target(running.port), "--json", "-c", "mv -f a.txt b.txt; quota"
    )
    assert result.returncode == 0, result
    moved, quota = json_lines(result.stdout)
    assert moved["to"] == "/b.txt" and quota["used"] == 2000, (moved, quota)
    assert (homes / ALICE / "b.txt").read_bytes() == b"a" * 2000


def test_mv_replace_is_atomic_for_readers(server: RunningServer, client: ClientFactory) -> None:
    home = server.alice_home
    target_path = home / "current.txt"
    target_path.write_bytes(b"version 0\n" * 1000)
    seen: list[bytes | None] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                seen.append(target_path.read_bytes())
            except FileNotFoundError:
                seen.append(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    conn = client()
    for version in range(1, 41):
        (home / "staged.txt").write_bytes(f"version {version}\n".encode() * 1000)
        assert conn.mv("staged.txt", "current.txt", replace=True) == "/current.txt"
    stop.set()
    reader.join(timeout=10)
    assert None not in seen, "a reader found no file at the name during mv -f"
    assert all(len(set(data.splitlines())) == 1 for data in seen if data), "a mixed file was seen"
    assert target_path.read_bytes() == b"version 40\n" * 1000


# -- bookmarks ------------------------------------------------------------------------


def test_one_bad_bookmark_does_not_block_the_others(
    server: RunningServer, client_env: ClientEnv, local: Path
) -> None:
    path = client_env.write_config(
        "bookmarks:\n"
        f"  work: {{host: {HOST}, port: {server.port}, user: {ALICE}}}\n"
        "  broken: {host: 127.0.0.1, port: seventy}\n"
    )
    result, _ = run_client(client_env, local, "work", "-c", "pwd")
    assert result.returncode == 0 and result.stdout == "/\n", result
    warning = one_error_line(result.stderr)
    assert f"{path}:3: bookmark broken: port must be" in warning, warning
    result, _ = run_client(client_env, local, "broken", "-c", "pwd")
    assert result.returncode == 2, result
    assert f"{path}:3: bookmark broken" in one_error_line(result.stderr)
    path.write_text(f"bookmarks:\n  work: {{host: {HOST}, port: {server.port}, user: {ALICE}}}\n")
    result, _ = run_client(client_env, local, "wrok", "-c", "pwd")
    assert result.returncode == 2, result
    line = one_error_line(result.stderr)
    assert line == "ftpclient: no such bookmark or host: wrok (did you mean 'work'?)", line


# -- lost connections in words ----------------------------------------------------------


def test_batch_lost_connection_says_what_moved_and_how_to_continue(
    server: RunningServer, client_env: ClientEnv, proxy: ProxyFactory, local: Path
) -> None:
    make_file(server.alice_home / "big.bin", os.urandom(3 * 1024 * 1024))
    cut = proxy(rate=None, drop_after=1024 * 1024)
    result, _ = run_client(client_env, local, target(cut.port), "-c", "get big.bin copy.bin")
    assert result.returncode == 2, result
    line = one_error_line(result.stderr)
    assert re.fullmatch(
        r"ftpclient: connection lost: the server (closed|reset) the connection during the "
        r"transfer of big\.bin \([\d.]+ [KM]iB of 3\.0 MiB received; "
        r"reget big\.bin copy\.bin continues it\)",
        line,
    ), line
    assert (local / "copy.bin.part").exists()


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), "the server reset"),
        (BrokenPipeError(errno.EPIPE, "Broken pipe"), "the server closed the connection"),
        (OSError(errno.ESHUTDOWN, "Cannot send after transport endpoint shutdown"), "shut down"),
        (ConnectionAbortedError(errno.ECONNABORTED, "Software caused connection abort"), "shut"),
        (ConnectionClosed("connection closed with 1048576 or more bytes to come"), "closed"),
        (TimeoutError("timed out"), "did not answer in time"),
    ],
)
def test_connection_problems_in_words(error: OSError, words: str) -> None:
    text = lost_problem(error)
    assert words in text and "Errno" not in text and "bytes to come" not in text, text
    refused = connect_problem(ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"))
    assert refused.startswith("connection refused"), refused
