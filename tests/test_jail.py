"""Tests for ftpserver.jail: virtual paths, and resolution that never leaves the home."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ftpproto.errors import ErrorCode, ProtocolError
from ftpserver.jail import MAX_NAME_BYTES, MAX_PATH_BYTES, Jail, is_reserved
from ftpserver.jail import TEMP_PREFIX as RESERVED_PREFIX


@pytest.fixture
def homes(tmp_path: Path) -> Path:
    """A home root with alice's home (some files, folders and symlinks), bob's and alice2's.

    alice/
      a.txt  sub/  sub/deep/  sub/b.txt
      in-file -> a.txt          in-dir -> sub          in-abs -> <alice>/sub/b.txt
      out-file -> ../bob/secret  out-dir -> ../bob      out-abs -> /etc/passwd
      out-sibling -> ../alice2   dangling-out -> ../bob/nothing-here
      dangling-in -> not-yet     sub/up -> ..           loop -> loop
    """
    alice = tmp_path / "alice"
    (alice / "sub" / "deep").mkdir(parents=True)
    (alice / "a.txt").write_text("a")
    (alice / "sub" / "b.txt").write_text("b")
    bob = tmp_path / "bob"
    bob.mkdir()
    (bob / "secret").write_text("bob's")
    (tmp_path / "alice2").mkdir()
    links = {
        "in-file": "a.txt",
        "in-dir": "sub",
        "in-abs": str(alice / "sub" / "b.txt"),
        "out-file": "../bob/secret",
        "out-dir": "../bob",
        "out-abs": "/etc/passwd",
        "out-sibling": "../alice2",
        "dangling-out": "../bob/nothing-here",
        "dangling-in": "not-yet",
        "sub/up": "..",
        "loop": "loop",
    }
    for name, target in links.items():
        os.symlink(target, alice / name)
    return tmp_path


@pytest.mark.parametrize(
    ("cwd", "path", "expected"),
    [
        ("/", "/", "/"),
        ("/", ".", "/"),
        ("/", "a.txt", "/a.txt"),
        ("/", "./a.txt", "/a.txt"),
        ("/", "sub/b.txt", "/sub/b.txt"),
        ("/", "sub//b.txt", "/sub/b.txt"),
        ("/", "sub/./b.txt/", "/sub/b.txt"),
        ("/", "..", "/"),
        ("/", "../..", "/"),
        ("/", "/../../etc/passwd", "/etc/passwd"),
        ("/", "a/../../..", "/"),
        ("/", "a/../../../b", "/b"),
        ("/", "//a", "/a"),
        ("/", "///a", "/a"),
        ("/", "../bob", "/bob"),
        ("/", "/etc/passwd", "/etc/passwd"),
        ("/", "a|b c%", "/a|b c%"),
        ("/", "caf\u00e9", "/caf\u00e9"),
        ("/", "...", "/..."),
        ("/sub", "b.txt", "/sub/b.txt"),
        ("/sub", ".", "/sub"),
        ("/sub", "..", "/"),
        ("/sub", "../..", "/"),
        ("/sub", "/a.txt", "/a.txt"),
        ("/sub", "deep/../b.txt", "/sub/b.txt"),
        ("/sub/deep", "../../..", "/"),
    ],
)
def test_virtual(homes: Path, cwd: str, path: str, expected: str) -> None:
    jail = Jail(homes / "alice")
    jail.chdir(cwd)
    assert jail.virtual(path) == expected


@pytest.mark.parametrize(
    ("path", "code"),
    [
        pytest.param("", ErrorCode.BAD_PATH, id="empty"),
        pytest.param("a\0b", ErrorCode.BAD_PATH, id="nul"),
        pytest.param("\0", ErrorCode.BAD_PATH, id="only-nul"),
        pytest.param("sub/\0/..", ErrorCode.BAD_PATH, id="nul-normalised-away"),
        pytest.param("x" * (MAX_NAME_BYTES + 1), ErrorCode.PATH_TOO_LONG, id="name-256"),
        pytest.param("sub/" + "x" * 300 + "/b", ErrorCode.PATH_TOO_LONG, id="inner-name-300"),
        pytest.param("\u00e9" * 128, ErrorCode.PATH_TOO_LONG, id="name-256-bytes-128-chars"),
        pytest.param("\U0001f600" * 64, ErrorCode.PATH_TOO_LONG, id="name-256-bytes-emoji"),
        pytest.param("a/" * 2049, ErrorCode.PATH_TOO_LONG, id="path-4098"),
        pytest.param("/" * (MAX_PATH_BYTES + 1), ErrorCode.PATH_TOO_LONG, id="slashes-4097"),
        pytest.param(("x" * 200 + "/") * 21, ErrorCode.PATH_TOO_LONG, id="path-4221"),
        pytest.param(RESERVED_PREFIX + "abc", ErrorCode.BAD_PATH, id="reserved"),
        pytest.param(RESERVED_PREFIX, ErrorCode.BAD_PATH, id="reserved-bare"),
        pytest.param("sub/" + RESERVED_PREFIX + "1", ErrorCode.BAD_PATH, id="reserved-inner"),
        pytest.param(RESERVED_PREFIX + "1/x", ErrorCode.BAD_PATH, id="reserved-folder"),
        pytest.param("../" + RESERVED_PREFIX + "1", ErrorCode.BAD_PATH, id="reserved-after-dots"),
    ],
)
def test_virtual_refuses(homes: Path, path: str, code: ErrorCode) -> None:
    jail = Jail(homes / "alice")
    with pytest.raises(ProtocolError) as info:
        jail.virtual(path)
    assert info.value.code == code
    with pytest.raises(ProtocolError) as info:
        jail.resolve(path)
    assert info.value.code == code


@pytest.mark.parametrize(
    "path",
    [
        "x" * MAX_NAME_BYTES,
        "\u00e9" * 127,
        "sub/" + "x" * MAX_NAME_BYTES,
        ("x" * 200 + "/") * 20,
        ".ftp-upload",
        "ftp-upload-x",
        "a" + RESERVED_PREFIX,
    ],
)
def test_virtual_accepts_limits(homes: Path, path: str) -> None:
    # Names up to 255 bytes and paths up to 4096 bytes are fine; only a name that
    # *starts* with the reserved prefix is reserved.
    jail = Jail(homes / "alice")
    assert jail.virtual(path)


def test_virtual_path_too_long_after_joining_cwd(homes: Path) -> None:
    jail = Jail(homes / "alice")
    jail.chdir("/" + "/".join(["d" * 200] * 18))  # 3618 bytes
    with pytest.raises(ProtocolError) as info:
        jail.virtual("e" * 200 + "/" + "f" * 200 + "/" + "g" * 200 + "/" + "h" * 200)
    assert info.value.code == ErrorCode.PATH_TOO_LONG


@pytest.mark.parametrize(
    ("cwd", "path", "virtual", "real"),
    [
        ("/", "/", "/", "."),
        ("/", "..", "/", "."),
        ("/", "../../..", "/", "."),
        ("/", "a/../../..", "/", "."),
        ("/", "a.txt", "/a.txt", "a.txt"),
        ("/", "/sub/b.txt", "/sub/b.txt", "sub/b.txt"),
        ("/", "new-file", "/new-file", "new-file"),
        ("/", "no/such/folder", "/no/such/folder", "no/such/folder"),
        ("/", "../bob", "/bob", "bob"),
        ("/", "../bob/secret", "/bob/secret", "bob/secret"),
        ("/", "/etc/passwd", "/etc/passwd", "etc/passwd"),
        ("/", "in-file", "/in-file", "a.txt"),
        ("/", "in-dir", "/in-dir", "sub"),
        ("/", "in-dir/b.txt", "/in-dir/b.txt", "sub/b.txt"),
        ("/", "in-abs", "/in-abs", "sub/b.txt"),
        ("/", "dangling-in", "/dangling-in", "not-yet"),
        ("/", "sub/up", "/sub/up", "."),
        ("/sub", "b.txt", "/sub/b.txt", "sub/b.txt"),
        ("/sub", "..", "/", "."),
        ("/sub", "../a.txt", "/a.txt", "a.txt"),
        ("/sub", "/a.txt", "/a.txt", "a.txt"),
        ("/sub/deep", "../../../..", "/", "."),
    ],
)
def test_resolve_inside(homes: Path, cwd: str, path: str, virtual: str, real: str) -> None:
    home = homes / "alice"
    jail = Jail(home)
    jail.chdir(cwd)
    assert jail.resolve(path) == (virtual, os.path.normpath(home / real))


@pytest.mark.parametrize(
    "path",
    [
        "out-file",
        "out-dir",
        "out-dir/secret",
        "out-abs",
        "out-sibling",
        "dangling-out",
        "/sub/../out-dir",
        "in-dir/../out-file",
    ],
)
def test_resolve_symlink_outside_is_denied(homes: Path, path: str) -> None:
    jail = Jail(homes / "alice")
    with pytest.raises(ProtocolError) as info:
        jail.resolve(path)
    assert info.value.code == ErrorCode.PERMISSION_DENIED
    assert str(homes) not in info.value.text  # replies never show real paths


def test_resolve_symlink_loop_stays_inside(homes: Path) -> None:
    home = homes / "alice"
    virtual, real = Jail(home).resolve("loop")
    assert virtual == "/loop"
    assert Jail(home).contains(real)


def test_resolve_from_symlinked_home(homes: Path) -> None:
    # The home itself may be reached through a symlink; resolution uses the real one.
    os.symlink(homes / "alice", homes / "alice-link")
    jail = Jail(homes / "alice-link")
    assert jail.root == str(homes / "alice")
    assert jail.resolve("a.txt") == ("/a.txt", str(homes / "alice" / "a.txt"))
    with pytest.raises(ProtocolError) as info:
        jail.resolve("out-dir")
    assert info.value.code == ErrorCode.PERMISSION_DENIED


def test_resolve_never_reaches_a_sibling_home(homes: Path) -> None:
    jail = Jail(homes / "alice")
    for path in ("../bob", "../bob/secret", "/../bob/secret", "../../bob", "../alice2"):
        _, real = jail.resolve(path)
        assert os.path.commonpath([real, str(homes / "alice")]) == str(homes / "alice")


@pytest.mark.parametrize(
    ("real", "inside"),
    [
        ("alice", True),
        ("alice/a.txt", True),
        ("alice/sub/deep", True),
        ("alice2", False),
        ("alice2/x", False),
        ("alice-x", False),
        ("bob", False),
        ("", False),
    ],
)
def test_contains(homes: Path, real: str, inside: bool) -> None:
    jail = Jail(homes / "alice")
    assert jail.contains(os.path.normpath(homes / real)) is inside


def test_chdir_changes_only_this_jail(homes: Path) -> None:
    before = os.getcwd()
    one = Jail(homes / "alice")
    two = Jail(homes / "alice")
    one.chdir("/sub")
    assert (one.cwd, two.cwd) == ("/sub", "/")
    assert one.virtual("b.txt") == "/sub/b.txt"
    assert two.virtual("b.txt") == "/b.txt"
    assert os.getcwd() == before


@pytest.mark.parametrize(
    ("name", "reserved"),
    [
        (RESERVED_PREFIX, True),
        (RESERVED_PREFIX + "0123abcd", True),
        (".ftp-upload", False),
        ("ftp-upload-x", False),
        ("x" + RESERVED_PREFIX, False),
        ("", False),
    ],
)
def test_is_reserved(name: str, reserved: bool) -> None:
    assert is_reserved(name) is reserved


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/a.txt",
        "/sub/deep",
        "/sub/b.txt/under-a-file",
        "/missing/deeper/name",
        "/sub/missing",
        "/in-file",
        "/in-dir/b.txt",
        "/in-abs",
        "/sub/up/a.txt",
        "/dangling-in",
        "/dangling-in/more",
        "/loop",
        "/loop/x",
        "/out-dir/secret",
    ],
)
@pytest.mark.parametrize("follow", [True, False])
def test_resolve_gives_what_realpath_gives(homes: Path, path: str, follow: bool) -> None:
    """Resolving looks only below the real home, and must still agree with ``realpath``."""
    jail = Jail(homes / "alice")
    root = os.path.realpath(homes / "alice")
    if follow:
        expected = os.path.realpath(os.path.join(root, path.lstrip("/")))
    else:
        parent, name = os.path.split(path)
        expected = os.path.join(os.path.realpath(os.path.join(root, parent.lstrip("/"))), name)
    if not jail.contains(expected):
        with pytest.raises(ProtocolError):
            jail.resolve(path, follow=follow)
        return
    if path == "/" and not follow:
        return  # refused for its own reason (tested above)
    assert jail.resolve(path, follow=follow) == (path, expected)


@pytest.mark.parametrize(
    ("path", "seen", "exists"),
    [
        ("/a.txt", True, True),  # the last name looked at: its status
        ("/sub/deep", True, True),
        ("/sub/new.txt", True, False),  # missing, in a folder that exists
        ("/", False, False),  # the home itself: the caller looks
        ("/nowhere/new.txt", False, False),  # a folder on the way is missing
        ("/a.txt/new.txt", False, False),  # a file on the way (ENOTDIR)
        ("/in-dir/b.txt", False, False),  # a link on the way: realpath decided
        ("/in-file", False, False),  # the last name a link
    ],
)
def test_resolve_status_says_what_the_walk_saw_of_the_last_name(
    homes: Path, path: str, seen: bool, exists: bool
) -> None:
    """What ``resolve_status`` reports matches an ``lstat`` of the real path, where it looked."""
    jail = Jail(homes / "alice")
    virtual, real, st, was_seen = jail.resolve_status(path)
    assert (virtual, real) == jail.resolve(path)
    assert (was_seen, st is not None) == (seen, exists)
    if st is not None:
        assert os.path.samestat(st, os.lstat(real))
    with pytest.raises(ProtocolError):
        jail.resolve_status("/out-dir/secret")
