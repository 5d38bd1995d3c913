"""End to end: per-user rights (issue 3).

For each right in turn a user without it gets ``403 permission denied: <cmd>
<path>`` for every command that needs it and nothing on disk changes, while
every other command works.  A read-only user can never create, truncate or
alter a file.  ``ftpserver useradd --quota --read-only`` and ``usermod``
change the YAML and are enforced after a restart.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import (
    HOST,
    Account,
    Connect,
    MakeServer,
    RawSession,
    RunFtpserver,
    RunningServer,
    ServerProcess,
    digest_of,
    file_digest_of,
    run_command,
    tree_state,
)

from ftpclient.client import FileTransferClient
from ftpproto.commands import COMMANDS, RIGHTS
from ftpproto.errors import ErrorCode, RemoteError
from ftpproto.messages import Message

pytestmark = pytest.mark.timeout(60)

PASSWORD = "limited pw"
FILE = b"the file that must not change\n" * 50
INNER = b"inner\n" * 10


def populate(home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "file.txt").write_bytes(FILE)
    (home / "dir").mkdir()
    (home / "dir" / "inner.txt").write_bytes(INNER)
    (home / "empty").mkdir()
    (home / "empty2").mkdir()


def populate_all(homes: Path) -> None:
    for name in ("limited", "ro"):
        populate(homes / name)


def perms_without(right: str) -> str:
    return ",".join(r for r in RIGHTS if r != right)


@dataclass(frozen=True)
class Attempt:
    """A command and how to run it; ``right`` is what it needs."""

    label: str
    right: str
    run: Callable[[FileTransferClient, RawSession, Path], object]
    expected_text: str


def raw_call(session: RawSession, command: str, *args: str) -> None:
    """Send a request on a raw session; raise RemoteError for an error reply."""
    session.call(command, *args).raise_if_error()


ATTEMPTS = [
    Attempt("ls", "list", lambda c, r, here: c.ls(), "permission denied: ls"),
    Attempt("ls dir", "list", lambda c, r, here: c.ls("dir"), "permission denied: ls dir"),
    Attempt(
        "stat", "list", lambda c, r, here: c.stat("file.txt"), "permission denied: stat file.txt"
    ),
    Attempt(
        "stat blake3",
        "list",
        lambda c, r, here: c.stat("file.txt", digest=True),
        "permission denied: stat file.txt",
    ),
    Attempt(
        "get",
        "read",
        lambda c, r, here: c.get("file.txt", str(here / "got")),
        "permission denied: get file.txt",
    ),
    Attempt(
        "get resume",
        "read",
        lambda c, r, here: raw_call(r, "get", "file.txt", "5", digest_of(FILE[:5])),
        "permission denied: get file.txt",
    ),
    Attempt(
        "put new",
        "write",
        lambda c, r, here: c.put(str(here / "up.txt"), "new.txt"),
        "permission denied: put new.txt",
    ),
    Attempt(
        "put over",
        "write",
        lambda c, r, here: c.put(str(here / "up.txt"), "file.txt"),
        "permission denied: put file.txt",
    ),
    Attempt(
        "put truncate",
        "write",
        lambda c, r, here: raw_call(r, "put", "file.txt", "0"),
        "permission denied: put file.txt",
    ),
    Attempt(
        "put resume",
        "write",
        lambda c, r, here: raw_call(
            r, "put", "file.txt", str(len(FILE) + 5), str(len(FILE)), digest_of(FILE)
        ),
        "permission denied: put file.txt",
    ),
    Attempt(
        "put -a",
        "write",
        lambda c, r, here: c.put(str(here / "up.txt"), "dir/inner.txt", resume=True),
        "permission denied: partial dir/inner.txt",
    ),
    Attempt(
        "partial",
        "write",
        lambda c, r, here: c.partial("file.txt"),
        "permission denied: partial file.txt",
    ),
    Attempt(
        "mkdir", "mkdir", lambda c, r, here: c.mkdir("newdir"), "permission denied: mkdir newdir"
    ),
    Attempt(
        "mkdir -p",
        "mkdir",
        lambda c, r, here: c.mkdir("a/b/c", parents=True),
        "permission denied: mkdir a/b/c",
    ),
    Attempt(
        "mkdir -p existing",
        "mkdir",
        lambda c, r, here: c.mkdir("dir", parents=True),
        "permission denied: mkdir dir",
    ),
    Attempt(
        "rmdir", "delete", lambda c, r, here: c.rmdir("empty"), "permission denied: rmdir empty"
    ),
    Attempt("rm", "delete", lambda c, r, here: c.rm("file.txt"), "permission denied: rm file.txt"),
    Attempt(
        "rm -r",
        "delete",
        lambda c, r, here: c.rm("dir", recursive=True),
        "permission denied: rm dir",
    ),
    Attempt(
        "mv",
        "rename",
        lambda c, r, here: c.mv("file.txt", "moved.txt"),
        "permission denied: mv file.txt",
    ),
    Attempt(
        "mv into", "rename", lambda c, r, here: c.mv("dir", "empty"), "permission denied: mv dir"
    ),
]


def test_every_right_is_covered() -> None:
    """Each right guards at least one command, and the table agrees with the attempts."""
    needed = {a.right for a in ATTEMPTS}
    assert needed == set(RIGHTS)
    for attempt in ATTEMPTS:
        command = attempt.expected_text.split()[2]
        assert COMMANDS[command].permission == attempt.right, attempt.label


@pytest.fixture
def local_files(local: Path) -> Path:
    (local / "up.txt").write_bytes(b"an upload that must not land\n")
    return local


def start_limited(make_server: MakeServer, perms: str) -> RunningServer:
    return make_server(
        Account("limited", PASSWORD, perms=perms),
        Account("ro", PASSWORD, perms="read-only"),
        populate=populate_all,
    )


@pytest.mark.parametrize("right", RIGHTS)
def test_missing_right_is_denied_and_changes_nothing(
    make_server: MakeServer, connect: Connect, local_files: Path, right: str
) -> None:
    running = start_limited(make_server, perms_without(right))
    home = running.home("limited")
    conn = connect(running, "limited", PASSWORD)
    session = RawSession(running.port)
    session.login("limited", PASSWORD)
    try:
        for attempt in (a for a in ATTEMPTS if a.right == right):
            before, local_before = tree_state(home), tree_state(local_files)
            with pytest.raises(RemoteError) as caught:
                attempt.run(conn, session, local_files)
            error = caught.value
            assert error.code == ErrorCode.PERMISSION_DENIED, f"{attempt.label}: {error}"
            assert error.text == attempt.expected_text, f"{attempt.label}: {error.text!r}"
            assert tree_state(home) == before, f"{attempt.label} changed the home"
            assert tree_state(local_files) == local_before, f"{attempt.label} wrote locally"
            # The session goes on normally after a refusal.
            assert session.call("pwd") == Message("pwd", ("ok", "/"))
    finally:
        session.close()


def allowed_steps(
    home: Path, local: Path
) -> list[tuple[str, Callable[[FileTransferClient], None]]]:
    """Every command once, each with a check on disk; run in this order."""

    def ls(c: FileTransferClient) -> None:
        names = {e.name for e in c.ls()}
        assert names == set(os.listdir(home)), names

    def stat(c: FileTransferClient) -> None:
        info = c.stat("file.txt", digest=True)
        assert (info.type, info.size, info.blake3) == ("file", len(FILE), digest_of(FILE))

    def get(c: FileTransferClient) -> None:
        c.get("file.txt", str(local / "got.txt"))
        assert file_digest_of(local / "got.txt") == digest_of(FILE)

    def put(c: FileTransferClient) -> None:
        c.put(str(local / "up.txt"), "uploaded.txt")
        assert file_digest_of(home / "uploaded.txt") == file_digest_of(local / "up.txt")
        assert c.partial("uploaded.txt") == 0

    def mkdir(c: FileTransferClient) -> None:
        c.mkdir("made/deeper", parents=True)
        assert (home / "made" / "deeper").is_dir()

    def mv(c: FileTransferClient) -> None:
        c.mv("dir", "empty2")
        assert (home / "empty2" / "dir" / "inner.txt").read_bytes() == INNER

    def delete(c: FileTransferClient) -> None:
        c.rmdir("empty")
        c.rm("file.txt")
        inner = "empty2/dir" if (home / "empty2" / "dir").exists() else "dir"
        c.rm(inner, recursive=True)
        assert not (home / "empty").exists() and not (home / "file.txt").exists()
        assert not (home / inner).exists()

    return [
        ("list", ls),
        ("list", stat),
        ("read", get),
        ("write", put),
        ("mkdir", mkdir),
        ("rename", mv),
        ("delete", delete),
    ]


@pytest.mark.parametrize("right", RIGHTS)
def test_other_rights_still_work(
    make_server: MakeServer, connect: Connect, local_files: Path, right: str
) -> None:
    running = start_limited(make_server, perms_without(right))
    home = running.home("limited")
    conn = connect(running, "limited", PASSWORD)
    for needed, step in allowed_steps(home, local_files):
        if needed != right:
            step(conn)
    # Commands that need no right work for everyone.
    assert conn.pwd() == "/"
    assert conn.cd("empty2") == "/empty2"
    assert conn.quota().used >= 0


def test_read_only_user_cannot_change_anything(
    make_server: MakeServer, connect: Connect, local_files: Path
) -> None:
    running = start_limited(make_server, "all")
    home = running.home("ro")
    conn = connect(running, "ro", PASSWORD)
    session = RawSession(running.port)
    session.login("ro", PASSWORD)
    before = tree_state(home)
    denied = [a for a in ATTEMPTS if a.right not in ("list", "read")]
    assert {a.right for a in denied} == {"write", "mkdir", "delete", "rename"}
    try:
        for attempt in denied:
            with pytest.raises(RemoteError) as caught:
                attempt.run(conn, session, local_files)
            assert caught.value.code == ErrorCode.PERMISSION_DENIED, attempt.label
            assert caught.value.text == attempt.expected_text, caught.value.text
        assert tree_state(home) == before, "a read-only user changed the home"
        # Reading is allowed and changes nothing either.
        assert {e.name for e in conn.ls()} == {"file.txt", "dir", "empty", "empty2"}
        conn.get("file.txt", str(local_files / "got.txt"))
        assert file_digest_of(local_files / "got.txt") == digest_of(FILE)
        (local_files / "part.txt.part").write_bytes(FILE[:100])
        result = conn.get("file.txt", str(local_files / "part.txt"), resume=True)
        assert result.offset == 100
        assert file_digest_of(local_files / "part.txt") == digest_of(FILE)
        assert conn.stat("dir/inner.txt", digest=True).blake3 == digest_of(INNER)
        assert tree_state(home) == before, "reading changed the home"
    finally:
        session.close()


def test_cli_shows_permission_denied(make_server: MakeServer, local_files: Path) -> None:
    running = start_limited(make_server, "all")
    before = tree_state(running.home("ro"))
    result = run_command(
        ["-m", "ftpclient", "--host", HOST, "--port", str(running.port), "--user", "ro",
         "-c", "get file.txt; put up.txt"],
        cwd=local_files,
        password=PASSWORD,
    )  # fmt: skip
    assert result.returncode == 1, result
    assert result.stderr.strip() == "remote: permission denied: put up.txt", result.stderr
    assert file_digest_of(local_files / "file.txt") == digest_of(FILE)
    assert tree_state(running.home("ro")) == before
    for command, text in (
        ("mkdir -p x/y", "permission denied: mkdir x/y"),
        ("rm -r dir", "permission denied: rm dir"),
        ("mv file.txt y", "permission denied: mv file.txt"),
        ("reput up.txt", "permission denied: partial up.txt"),
    ):
        result = run_command(
            ["-m", "ftpclient", "--port", str(running.port), "--user", "ro", "-c", command],
            cwd=local_files,
            password=PASSWORD,
        )
        assert result.returncode == 1 and text in result.stderr, (command, result)
    assert tree_state(running.home("ro")) == before


# -- the server command line --------------------------------------------------------------


StartServer = Callable[..., ServerProcess]


def users_entry(users: Path, name: str) -> dict[str, object]:
    entry: dict[str, object] = yaml.safe_load(users.read_text())["users"][name]
    return entry


def stop(process: ServerProcess) -> None:
    process.proc.terminate()
    assert process.proc.wait(timeout=10) == 0


def test_useradd_and_usermod_are_enforced_after_restart(
    tmp_path: Path,
    ftpserver_cli: RunFtpserver,
    server_process: StartServer,
    server_config: Path,
    local: Path,
) -> None:
    users, homes = tmp_path / "users.yaml", tmp_path / "homes"
    common = ["--users", str(users), "--home", str(homes), "--config", str(server_config)]
    added = ftpserver_cli(
        "useradd", "gina", *common, "--password-stdin", "--quota", "1M", "--read-only",
        stdin="gina pw\n",
    )  # fmt: skip
    assert added.returncode == 0, added
    entry = users_entry(users, "gina")
    assert entry["quota"] == "1M" and entry["perms"] == "read-only", entry  # as written
    (homes / "gina" / "seed.txt").write_bytes(b"seed")
    upload = local / "up.bin"
    upload.write_bytes(os.urandom(300_000))

    running = server_process(users, homes)
    with FileTransferClient(HOST, running.port, timeout=10) as conn:
        conn.login("gina", "gina pw")
        usage = conn.quota()
        assert (usage.used, usage.limit) == (4, 1024 * 1024)
        with pytest.raises(RemoteError) as caught:
            conn.put(str(upload), "up.bin")
        assert caught.value.code == ErrorCode.PERMISSION_DENIED
        assert caught.value.text == "permission denied: put up.bin"
        with pytest.raises(RemoteError):
            conn.mkdir("d")
        assert conn.stat("seed.txt", digest=True).blake3 == digest_of(b"seed")
    stop(running)
    assert sorted(os.listdir(homes / "gina")) == ["seed.txt"]

    changed = ftpserver_cli(
        "usermod", "gina", *common, "--quota", "none", "--perms", "list,read,write"
    )
    assert changed.returncode == 0, changed
    entry = users_entry(users, "gina")
    assert "quota" not in entry and entry["perms"] == ["list", "read", "write"], entry

    running = server_process(users, homes)
    with FileTransferClient(HOST, running.port, timeout=10) as conn:
        conn.login("gina", "gina pw")
        assert conn.quota().limit is None
        conn.put(str(upload), "up.bin")
        assert file_digest_of(homes / "gina" / "up.bin") == file_digest_of(upload)
        with pytest.raises(RemoteError) as caught:
            conn.mkdir("d")
        assert caught.value.text == "permission denied: mkdir d"
        with pytest.raises(RemoteError) as caught:
            conn.rm("up.bin")
        assert caught.value.text == "permission denied: rm up.bin"
    assert file_digest_of(homes / "gina" / "up.bin") == file_digest_of(upload)
    assert not (homes / "gina" / "d").exists()

    changed = ftpserver_cli("usermod", "gina", *common, "--quota", "100K")
    assert changed.returncode == 0, changed
    entry = users_entry(users, "gina")
    assert entry["quota"] == "100K" and entry["perms"] == ["list", "read", "write"], entry
    running = server_process(users, homes)
    with FileTransferClient(HOST, running.port, timeout=10) as conn:
        conn.login("gina", "gina pw")
        usage = conn.quota()
        assert (usage.used, usage.limit, usage.available) == (300_004, 100 * 1024, 0)
        small = local / "small"
        small.write_bytes(b"s")
        with pytest.raises(RemoteError) as caught:
            conn.put(str(small), "small")
        assert caught.value.code == ErrorCode.QUOTA_EXCEEDED
    assert not (homes / "gina" / "small").exists()


@pytest.mark.parametrize(
    "args, problem",
    [
        (["usermod", "nobody", "--quota", "1M"], "nobody"),
        (["usermod", "gina"], "nothing to change"),
        (["usermod", "gina", "--quota", "lots"], "lots"),
        (["usermod", "gina", "--perms", "list,fly"], "fly"),
        (["useradd", "hank", "--password-stdin", "--quota", "-1"], "-1"),
        (["useradd", "hank", "--password-stdin", "--perms", "root"], "root"),
    ],
)
def test_server_cli_refuses_bad_limits(
    tmp_path: Path,
    ftpserver_cli: RunFtpserver,
    server_config: Path,
    args: list[str],
    problem: str,
) -> None:
    users, homes = tmp_path / "users.yaml", tmp_path / "homes"
    common = ["--users", str(users), "--home", str(homes), "--config", str(server_config)]
    assert (
        ftpserver_cli("useradd", "gina", *common, "--password-stdin", stdin="pw\n").returncode == 0
    )
    before = users.read_bytes()
    result = ftpserver_cli(*args, *common, stdin="pw\n")
    assert result.returncode == 1, result
    assert problem in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert users.read_bytes() == before, "a refused command changed the users file"
    assert not (homes / "hank").exists()


def test_useradd_perms_list(
    tmp_path: Path, ftpserver_cli: RunFtpserver, server_config: Path
) -> None:
    users, homes = tmp_path / "users.yaml", tmp_path / "homes"
    common = ["--users", str(users), "--home", str(homes), "--config", str(server_config)]
    result = ftpserver_cli(
        "useradd", "ivy", *common, "--password-stdin", "--perms", "read,list,delete",
        stdin="pw\n",
    )  # fmt: skip
    assert result.returncode == 0, result
    assert users_entry(users, "ivy")["perms"] == ["list", "read", "delete"]
    assert "quota" not in users_entry(users, "ivy")
    both = ftpserver_cli(
        "useradd", "jo", *common, "--password-stdin", "--perms", "list", "--read-only",
        stdin="pw\n",
    )  # fmt: skip
    assert both.returncode == 2, both
