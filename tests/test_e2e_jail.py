"""End to end: every path a client names stays inside its home.

Escapes by ``..``, absolute paths, symlinks out of the home, another user's
home and the server's reserved temporary names, through the real client
library; plus the error codes of the everyday mistakes.  After each one the
server still serves, and no reply shows a real server path.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import BOB, BOB_PASSWORD, ClientFactory, RunningServer

from ftpclient.client import FileTransferClient
from ftpproto.errors import ErrorCode, RemoteError

pytestmark = pytest.mark.timeout(60)

SECRET = b"outside the jail"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside every home, with a secret file in it."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_bytes(SECRET)
    return folder


@pytest.fixture
def jailed(server: RunningServer, outside: Path) -> RunningServer:
    """Alice's home with symlinks out of it (file, folder, bob's home) and one inside."""
    home = server.alice_home
    (home / "sub").mkdir()
    (home / "sub" / "inside.txt").write_bytes(b"inside")
    (home / "mine.txt").write_bytes(b"mine")
    (home / "link_file").symlink_to(outside / "secret.txt")
    (home / "link_dir").symlink_to(outside, target_is_directory=True)
    (home / "link_bob").symlink_to(server.bob_home, target_is_directory=True)
    (home / "link_root").symlink_to("/", target_is_directory=True)
    (home / "link_dangling").symlink_to(outside / "does-not-exist.txt")
    (home / "link_relative").symlink_to("../../outside/secret.txt")
    (home / "link_in").symlink_to("sub/inside.txt")
    (server.bob_home / "x").write_bytes(b"bob's file")
    return server


def remote_error(action: Callable[[], object]) -> RemoteError:
    """Run ``action``, which must fail with an error reply; return it."""
    with pytest.raises(RemoteError) as caught:
        action()
    return caught.value


def assert_no_real_paths(server: RunningServer, text: str) -> None:
    """A reply text must not show where the homes really are."""
    for real in {str(server.homes), os.path.realpath(server.homes)}:
        assert real not in text, f"reply leaks a real path: {text!r}"


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (symlinks not followed) with its content."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


# -- .. and absolute paths land in the home ---------------------------------------


@pytest.mark.parametrize(
    "path", ["..", "../..", "/..", "/../..", "../../../../..", "sub/../..", "/"]
)
def test_climbing_stops_at_the_home(
    jailed: RunningServer, client: ClientFactory, path: str
) -> None:
    conn = client()
    assert conn.cd(path) == "/", f"cd {path!r} left the home"
    assert conn.pwd() == "/"
    names = {e.name for e in conn.ls(path)}
    assert "mine.txt" in names and "bob" not in names and "alice" not in names, names
    jailed.assert_serving()


@pytest.mark.parametrize(
    "path, code",
    [
        ("../bob/x", ErrorCode.NOT_FOUND),
        ("../../etc/passwd", ErrorCode.NOT_FOUND),
        ("/etc/passwd", ErrorCode.NOT_FOUND),
        ("/../bob/x", ErrorCode.NOT_FOUND),
        ("sub/../../bob/x", ErrorCode.NOT_FOUND),
        ("/../..", ErrorCode.IS_DIRECTORY),
        ("../", ErrorCode.IS_DIRECTORY),
    ],
)
def test_get_cannot_climb_out(
    jailed: RunningServer, client: ClientFactory, local: Path, path: str, code: ErrorCode
) -> None:
    target = local / "out.bin"
    error = remote_error(lambda: client().get(path, str(target)))
    assert error.code == code, f"get {path!r}: {error.code} {error.text!r}"
    assert_no_real_paths(jailed, error.text)
    assert not target.exists() and not (local / "out.bin.part").exists(), "a local file appeared"
    jailed.assert_serving()


@pytest.mark.parametrize(
    "remote, lands_at",
    [
        ("../escape.txt", "escape.txt"),
        ("../../../escape.txt", "escape.txt"),
        ("/abs.txt", "abs.txt"),
        ("/../abs.txt", "abs.txt"),
        ("/sub/abs.txt", "sub/abs.txt"),
        ("sub/../../../x.txt", "x.txt"),
    ],
)
def test_put_outside_lands_in_the_home(
    jailed: RunningServer,
    client: ClientFactory,
    local: Path,
    tmp_path: Path,
    remote: str,
    lands_at: str,
) -> None:
    source = local / "payload.txt"
    source.write_bytes(b"payload " + remote.encode())
    client().put(str(source), remote)
    stored = jailed.alice_home / lands_at
    assert stored.read_bytes() == source.read_bytes(), f"put {remote!r} did not land at {lands_at}"
    name = Path(lands_at).name
    for escaped in (jailed.homes / name, tmp_path / name, jailed.bob_home / name):
        assert not escaped.exists(), f"put {remote!r} wrote {escaped}"


@pytest.mark.parametrize("remote", ["../bob/x", "/../bob/x", "../../homes/bob/x", "/etc/evil"])
def test_put_cannot_reach_another_home(
    jailed: RunningServer, client: ClientFactory, local: Path, remote: str
) -> None:
    source = local / "evil.txt"
    source.write_bytes(b"overwritten!")
    error = remote_error(lambda: client().put(str(source), remote))
    assert error.code == ErrorCode.NOT_FOUND, f"put {remote!r}: {error.code} {error.text!r}"
    assert (jailed.bob_home / "x").read_bytes() == b"bob's file", "bob's file was changed"
    assert not (jailed.alice_home / "bob").exists()
    assert_no_real_paths(jailed, error.text)
    jailed.assert_serving()


def test_bob_cannot_see_alice(jailed: RunningServer, client: ClientFactory) -> None:
    bob = client(BOB, BOB_PASSWORD)
    assert [e.name for e in bob.ls("/")] == ["x"], "bob sees more than his home"
    error = remote_error(lambda: bob.ls("../alice"))
    assert error.code == ErrorCode.NOT_FOUND, error


# -- symlinks out of the home -----------------------------------------------------

OUT_LINKS = [
    "link_file",
    "link_dir",
    "link_dir/secret.txt",
    "link_bob",
    "link_bob/x",
    "link_root",
    "link_root/etc/passwd",
    "link_dangling",
    "link_relative",
    "sub/../link_dir/secret.txt",
]


@pytest.mark.parametrize("path", OUT_LINKS)
def test_symlink_out_get_is_403(
    jailed: RunningServer, client: ClientFactory, local: Path, path: str
) -> None:
    target = local / "got.bin"
    error = remote_error(lambda: client().get(path, str(target)))
    assert error.code == ErrorCode.PERMISSION_DENIED, f"get {path!r}: {error.code} {error.text!r}"
    assert_no_real_paths(jailed, error.text)
    assert not target.exists(), "bytes from outside the home reached the client"
    jailed.assert_serving()


@pytest.mark.parametrize("path", OUT_LINKS)
def test_symlink_out_ls_is_403(jailed: RunningServer, client: ClientFactory, path: str) -> None:
    error = remote_error(lambda: client().ls(path))
    assert error.code == ErrorCode.PERMISSION_DENIED, f"ls {path!r}: {error.code} {error.text!r}"
    assert_no_real_paths(jailed, error.text)
    jailed.assert_serving()


@pytest.mark.parametrize("path", OUT_LINKS)
def test_symlink_out_cd_is_403(jailed: RunningServer, client: ClientFactory, path: str) -> None:
    conn = client()
    error = remote_error(lambda: conn.cd(path))
    assert error.code == ErrorCode.PERMISSION_DENIED, f"cd {path!r}: {error.code} {error.text!r}"
    assert conn.pwd() == "/", "the working folder changed after a refused cd"
    jailed.assert_serving()


@pytest.mark.parametrize(
    "path",
    [*OUT_LINKS, "link_dir/new.txt", "link_bob/new.txt", "link_root/{outside}/new.txt"],
)
def test_symlink_out_put_is_403(
    jailed: RunningServer,
    client: ClientFactory,
    local: Path,
    outside: Path,
    path: str,
) -> None:
    path = path.format(outside=str(outside).lstrip("/"))
    before_outside = snapshot(outside)
    before_bob = snapshot(jailed.bob_home)
    source = local / "evil.txt"
    source.write_bytes(b"written through a symlink")
    error = remote_error(lambda: client().put(str(source), path))
    assert error.code == ErrorCode.PERMISSION_DENIED, f"put {path!r}: {error.code} {error.text!r}"
    assert snapshot(outside) == before_outside, "a file outside the home was written"
    assert snapshot(jailed.bob_home) == before_bob, "bob's home was written"
    assert not (outside / "does-not-exist.txt").exists(), "the dangling link was followed"
    assert (jailed.alice_home / "link_file").is_symlink(), "the symlink itself was replaced"
    jailed.assert_serving()


def test_symlinks_out_are_listed_but_not_followed(
    jailed: RunningServer, client: ClientFactory
) -> None:
    entries = {e.name: e for e in client().ls("/")}
    for name in ("link_file", "link_dir", "link_bob", "link_root", "link_dangling"):
        assert name in entries, f"{name} missing from the listing"
        entry = entries[name]
        assert entry.type == "link", f"{name} shown as {entry.type}: the link was followed"
        assert entry.size == 0, f"{name} shows the size of its target"
    # Links inside the home are listed as links too (never followed by ls),
    # but the other commands follow them (test_symlink_inside_the_home_works).
    assert entries["link_in"].type == "link" and entries["link_in"].size == 0


def test_symlink_inside_the_home_works(
    jailed: RunningServer, client: ClientFactory, local: Path
) -> None:
    target = local / "in.txt"
    client().get("link_in", str(target))
    assert target.read_bytes() == b"inside"


def test_symlink_loop_is_refused(jailed: RunningServer, client: ClientFactory, local: Path) -> None:
    (jailed.alice_home / "loop").symlink_to("loop")
    error = remote_error(lambda: client().get("loop", str(local / "loop")))
    assert error.code in (ErrorCode.BAD_PATH, ErrorCode.PERMISSION_DENIED), error
    jailed.assert_serving()


@pytest.mark.parametrize("loop", ["loop", "ping"], ids=["self", "two-links"])
def test_every_command_answers_415_for_a_symlink_loop(
    server: RunningServer, client: ClientFactory, local: Path, loop: str
) -> None:
    """stat, cd, ls, get and put agree: a link that never reaches anything is 415."""
    home = server.alice_home
    (home / "loop").symlink_to("loop")
    (home / "ping").symlink_to("pong")
    (home / "pong").symlink_to("ping")
    source = local / "up.txt"
    source.write_bytes(b"would replace the link")
    conn: FileTransferClient = client()
    actions: dict[str, Callable[[], object]] = {
        "stat": lambda: conn.stat(loop),
        "stat-blake3": lambda: conn.stat(loop, digest=True),
        "cd": lambda: conn.cd(loop),
        "ls": lambda: conn.ls(loop),
        "get": lambda: conn.get(loop, str(local / "got")),
        "put": lambda: conn.put(str(source), loop),
    }
    for name, action in actions.items():
        error = remote_error(action)
        assert error.code == ErrorCode.BAD_PATH, f"{name}: {error}"
        assert "too many levels of symbolic links" in error.text, f"{name}: {error.text}"
        assert_no_real_paths(server, error.text)
    assert os.readlink(home / loop) == ("loop" if loop == "loop" else "pong"), "put replaced it"
    assert {e.name: e.type for e in conn.ls()}[loop] == "link"  # ls of the folder lists it
    assert conn.rm(loop) == (1, 0)  # and the link itself can go
    assert not os.path.lexists(home / loop)
    server.assert_serving()


def test_home_itself_a_symlink_still_works(
    server: RunningServer, client: ClientFactory, local: Path, tmp_path: Path
) -> None:
    """A home reached through a symlink is the jail, not an escape."""
    real = tmp_path / "real-alice"
    server.alice_home.rmdir()
    real.mkdir()
    server.alice_home.symlink_to(real, target_is_directory=True)
    source = local / "s.txt"
    source.write_bytes(b"via link")
    conn: FileTransferClient = client()
    conn.put(str(source), "s.txt")
    assert (real / "s.txt").read_bytes() == b"via link"
    assert [e.name for e in conn.ls()] == ["s.txt"]


# -- the server's temporary names ----------------------------------------------


RESERVED = [".ftp-upload-abc", ".ftp-upload-", "sub/.ftp-upload-x", ".ftp-upload-abc/inner"]


@pytest.mark.parametrize("path", RESERVED)
def test_reserved_names_are_refused(
    server: RunningServer, client: ClientFactory, local: Path, path: str
) -> None:
    home = server.alice_home
    (home / "sub").mkdir()
    (home / ".ftp-upload-abc").write_bytes(b"half an upload")
    (home / "sub" / ".ftp-upload-x").write_bytes(b"another")
    conn = client()
    source = local / "r.txt"
    source.write_bytes(b"replacement")
    for name, action in [
        ("get", lambda: conn.get(path, str(local / "got"))),
        ("put", lambda: conn.put(str(source), path)),
        ("ls", lambda: conn.ls(path)),
        ("cd", lambda: conn.cd(path)),
    ]:
        error = remote_error(action)
        assert error.code == ErrorCode.BAD_PATH, f"{name} {path!r}: {error.code} {error.text!r}"
    assert (home / ".ftp-upload-abc").read_bytes() == b"half an upload"
    assert (home / "sub" / ".ftp-upload-x").read_bytes() == b"another"
    assert not (local / "got").exists()
    server.assert_serving()


def test_reserved_names_are_hidden_from_ls(server: RunningServer, client: ClientFactory) -> None:
    home = server.alice_home
    (home / "sub").mkdir()
    (home / ".ftp-upload-abc").write_bytes(b"x")
    (home / "sub" / ".ftp-upload-def").write_bytes(b"x")
    (home / ".hidden-but-ok").write_bytes(b"x")
    conn = client()
    assert [e.name for e in conn.ls()] == [".hidden-but-ok", "sub"], "ls /"
    assert [e.name for e in conn.ls("sub")] == [], "ls sub"


# -- everyday mistakes ------------------------------------------------------------


@pytest.fixture
def tree(server: RunningServer) -> RunningServer:
    """A folder and a file in alice's home."""
    (server.alice_home / "folder").mkdir()
    (server.alice_home / "file.txt").write_bytes(b"a file")
    return server


MISTAKES: list[tuple[str, str, str, ErrorCode]] = [
    ("get a folder", "get", "folder", ErrorCode.IS_DIRECTORY),
    ("get the home", "get", "/", ErrorCode.IS_DIRECTORY),
    ("get a missing file", "get", "nope.txt", ErrorCode.NOT_FOUND),
    ("get inside a file", "get", "file.txt/x", ErrorCode.NOT_DIRECTORY),
    ("ls a missing path", "ls", "nope", ErrorCode.NOT_FOUND),
    ("ls inside a missing folder", "ls", "nope/deeper", ErrorCode.NOT_FOUND),
    ("cd into a file", "cd", "file.txt", ErrorCode.NOT_DIRECTORY),
    ("cd into a missing folder", "cd", "nope", ErrorCode.NOT_FOUND),
    ("put into a missing folder", "put", "nope/x.txt", ErrorCode.NOT_FOUND),
    ("put over a folder", "put", "folder", ErrorCode.IS_DIRECTORY),
    ("put to the home", "put", "/", ErrorCode.IS_DIRECTORY),
    ("put inside a file", "put", "file.txt/x", ErrorCode.NOT_FOUND),
]


@pytest.mark.parametrize(
    "command, path, code", [m[1:] for m in MISTAKES], ids=[m[0] for m in MISTAKES]
)
def test_error_codes(
    tree: RunningServer, client: ClientFactory, local: Path, command: str, path: str, code: int
) -> None:
    before = snapshot(tree.alice_home)
    conn = client()
    source = local / "up.txt"
    source.write_bytes(b"up")
    actions: dict[str, Callable[[], object]] = {
        "get": lambda: conn.get(path, str(local / "down.txt")),
        "put": lambda: conn.put(str(source), path),
        "ls": lambda: conn.ls(path),
        "cd": lambda: conn.cd(path),
    }
    error = remote_error(actions[command])
    assert error.code == code, f"{command} {path!r}: {error.code} {error.text!r}"
    assert error.text, "an error reply without a readable text"
    assert_no_real_paths(tree, error.text)
    assert snapshot(tree.alice_home) == before, "the home changed after a failed command"
    assert not (local / "down.txt").exists() and not (local / "down.txt.part").exists()
    assert conn.pwd() == "/", "the session did not go on"


def test_a_sibling_whose_name_starts_like_the_home_is_outside(
    server: RunningServer, client: ClientFactory, local: Path
) -> None:
    """``homes/alice2`` starts with ``homes/alice`` but is not inside it."""
    sibling = server.homes / "alice2"
    sibling.mkdir()
    (sibling / "secret.txt").write_bytes(SECRET)
    (server.alice_home / "to_sibling").symlink_to(sibling, target_is_directory=True)
    (server.alice_home / "to_secret").symlink_to(sibling / "secret.txt")
    conn = client()
    for path in ("to_secret", "to_sibling/secret.txt"):
        error = remote_error(lambda path=path: conn.get(path, str(local / "s.txt")))
        assert error.code == ErrorCode.PERMISSION_DENIED, f"get {path}: {error.code}"
    error = remote_error(lambda: conn.ls("to_sibling"))
    assert error.code == ErrorCode.PERMISSION_DENIED, f"ls: {error.code}"
    error = remote_error(lambda: conn.cd("to_sibling"))
    assert error.code == ErrorCode.PERMISSION_DENIED, f"cd: {error.code}"
    assert not (local / "s.txt").exists()


def test_working_folder_swapped_for_a_symlink_is_checked_again(
    server: RunningServer, client: ClientFactory, local: Path, outside: Path
) -> None:
    """After ``cd sub``, sub is replaced on disk by a symlink out of the home."""
    home = server.alice_home
    (home / "sub").mkdir()
    conn = client()
    assert conn.cd("sub") == "/sub"
    (home / "sub").rename(home / "old-sub")
    (home / "sub").symlink_to(outside, target_is_directory=True)
    source = local / "planted.txt"
    source.write_bytes(b"planted")
    for name, action in [
        ("ls", lambda: conn.ls()),
        ("get", lambda: conn.get("secret.txt", str(local / "secret.txt"))),
        ("put", lambda: conn.put(str(source), "planted.txt")),
        ("cd", lambda: conn.cd(".")),
    ]:
        error = remote_error(action)
        assert error.code == ErrorCode.PERMISSION_DENIED, f"{name}: {error.code} {error.text!r}"
    assert not (outside / "planted.txt").exists(), "put wrote through the swapped folder"
    assert not (local / "secret.txt").exists(), "get read through the swapped folder"
    assert conn.cd("/") == "/"
