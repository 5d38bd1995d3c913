"""End to end: managing files and folders (issue 3).

``mkdir`` (and parents), ``rmdir``, ``rm`` (and ``rm -r``, never following a
symlink), ``mv``, ``stat`` (with the BLAKE3 digest), ``ls`` of a big folder and
``ls -l`` through the command line; every one of them kept inside the home.
Each result is checked on disk, in alice's home and outside it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    ClientFactory,
    RunCli,
    RunningServer,
    digest_of,
    file_digest_of,
    tree_state,
)

import ftpserver.fsops
import ftpserver.handler
from ftpproto.errors import ErrorCode, RemoteError
from ftpserver.jail import TEMP_PREFIX

pytestmark = pytest.mark.timeout(60)

SECRET = b"outside the home, must survive\n"


def remote_error(action: Callable[[], object]) -> RemoteError:
    """Run ``action``, which must fail with an error reply; return it."""
    with pytest.raises(RemoteError) as caught:
        action()
    return caught.value


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside every home: a secret file and a sub folder."""
    folder = tmp_path / "outside"
    (folder / "sub").mkdir(parents=True)
    (folder / "secret.txt").write_bytes(SECRET)
    (folder / "sub" / "deep.txt").write_bytes(SECRET * 2)
    return folder


@pytest.fixture
def home(server: RunningServer, outside: Path) -> Path:
    """Alice's home: files, folders and symlinks out of it."""
    root = server.alice_home
    (root / "docs" / "inner").mkdir(parents=True)
    (root / "docs" / "a.txt").write_bytes(b"alpha\n" * 100)
    (root / "docs" / "inner" / "b.bin").write_bytes(os.urandom(5000))
    (root / "empty").mkdir()
    (root / "mine.txt").write_bytes(b"mine")
    (root / "link_file").symlink_to(outside / "secret.txt")
    (root / "link_dir").symlink_to(outside, target_is_directory=True)
    return root


# -- mkdir ---------------------------------------------------------------------------


def test_mkdir(home: Path, client: ClientFactory) -> None:
    conn = client()
    assert conn.mkdir("new") == "/new"
    assert (home / "new").is_dir()
    assert conn.mkdir("docs/inner/deeper") == "/docs/inner/deeper"
    assert (home / "docs" / "inner" / "deeper").is_dir()
    conn.cd("docs")
    assert conn.mkdir("rel") == "/docs/rel"
    assert (home / "docs" / "rel").is_dir()


def test_mkdir_existing_is_410(home: Path, client: ClientFactory) -> None:
    before = tree_state(home)
    for path in ("docs", "mine.txt", "/"):
        error = remote_error(lambda p=path: client().mkdir(p))  # type: ignore[misc]
        assert error.code == ErrorCode.EXISTS, f"mkdir {path}: {error.code} {error.text}"
    assert tree_state(home) == before


def test_mkdir_missing_parent_is_404_without_parents(home: Path, client: ClientFactory) -> None:
    error = remote_error(lambda: client().mkdir("x/y/z"))
    assert error.code == ErrorCode.NOT_FOUND, error
    assert not (home / "x").exists()


def test_mkdir_parents(home: Path, client: ClientFactory) -> None:
    conn = client()
    assert conn.mkdir("x/y/z", parents=True) == "/x/y/z"
    assert (home / "x" / "y" / "z").is_dir()
    # An existing folder is fine with parents; its contents are untouched.
    before = tree_state(home / "docs")
    assert conn.mkdir("docs", parents=True) == "/docs"
    assert tree_state(home / "docs") == before


def test_mkdir_parents_through_a_file_fails(home: Path, client: ClientFactory) -> None:
    error = remote_error(lambda: client().mkdir("mine.txt/sub", parents=True))
    assert error.code in (ErrorCode.NOT_DIRECTORY, ErrorCode.EXISTS), error
    assert (home / "mine.txt").read_bytes() == b"mine"


def test_mkdir_cli_p(home: Path, run_cli: RunCli) -> None:
    result = run_cli("-c", "mkdir -p 'p q/r s/t'; mkdir plain")
    assert result.returncode == 0, result
    assert (home / "p q" / "r s" / "t").is_dir() and (home / "plain").is_dir()
    result = run_cli("-c", "mkdir a/b")
    assert result.returncode == 1 and "a/b" in result.stderr, result
    assert not (home / "a").exists()


# -- rmdir ------------------------------------------------------------------------------


def test_rmdir_empty(home: Path, client: ClientFactory) -> None:
    assert client().rmdir("empty") == "/empty"
    assert not (home / "empty").exists()


def test_rmdir_not_empty_is_410(home: Path, client: ClientFactory) -> None:
    before = tree_state(home)
    error = remote_error(lambda: client().rmdir("docs"))
    assert error.code == ErrorCode.EXISTS, error
    assert "docs" in error.text
    assert tree_state(home) == before


def test_rmdir_of_a_folder_holding_only_an_upload_says_so(
    home: Path, client: ClientFactory
) -> None:
    upload = home / "empty" / f"{TEMP_PREFIX}0123abcd"  # as a crashed upload leaves it
    upload.write_bytes(b"half")
    conn = client()
    assert conn.ls("empty") == []
    error = remote_error(lambda: conn.rmdir("empty"))
    assert error.code == ErrorCode.EXISTS, error
    assert error.text == "an upload into this folder is in progress: /empty", error
    assert upload.read_bytes() == b"half"
    assert conn.rm("empty", recursive=True) == (0, 0)
    assert not (home / "empty").exists()


def test_rmdir_of_a_file_fails(home: Path, client: ClientFactory) -> None:
    error = remote_error(lambda: client().rmdir("mine.txt"))
    assert error.code == ErrorCode.NOT_DIRECTORY, error
    assert (home / "mine.txt").read_bytes() == b"mine"


def test_rmdir_of_a_link_to_a_folder_keeps_both(
    home: Path, client: ClientFactory, outside: Path
) -> None:
    before = tree_state(outside)
    error = remote_error(lambda: client().rmdir("link_dir"))
    assert error.code == ErrorCode.NOT_DIRECTORY, error
    assert (home / "link_dir").is_symlink()
    assert tree_state(outside) == before


# -- rm -----------------------------------------------------------------------------------


def test_rm_file(home: Path, client: ClientFactory) -> None:
    size = (home / "docs" / "a.txt").stat().st_size
    assert client().rm("docs/a.txt") == (1, size)
    assert not (home / "docs" / "a.txt").exists()
    assert (home / "docs" / "inner" / "b.bin").exists()


def test_rm_folder_without_recursive_is_411(home: Path, client: ClientFactory) -> None:
    before = tree_state(home)
    for path in ("docs", "empty"):
        error = remote_error(lambda p=path: client().rm(p))  # type: ignore[misc]
        assert error.code == ErrorCode.IS_DIRECTORY, f"rm {path}: {error}"
    assert tree_state(home) == before


def test_rm_missing_is_404(home: Path, client: ClientFactory) -> None:
    error = remote_error(lambda: client().rm("nope.txt"))
    assert error.code == ErrorCode.NOT_FOUND, error


def test_rm_recursive(home: Path, client: ClientFactory) -> None:
    sizes = (home / "docs" / "a.txt").stat().st_size + 5000
    files, freed = client().rm("docs", recursive=True)
    assert (files, freed) == (2, sizes)
    assert not (home / "docs").exists()
    assert (home / "mine.txt").exists() and (home / "empty").is_dir()


def test_rm_recursive_does_not_follow_symlinks_out(
    home: Path, client: ClientFactory, outside: Path
) -> None:
    tree = home / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "real.txt").write_bytes(b"12345")
    (tree / "sub" / "real2.txt").write_bytes(b"1234567890")
    (tree / "sub" / "out_dir").symlink_to(outside, target_is_directory=True)
    (tree / "out_file").symlink_to(outside / "secret.txt")
    (tree / "sub" / "dangling").symlink_to(outside / "missing")
    (tree / "in_link").symlink_to(home / "mine.txt")
    before = tree_state(outside)
    files, freed = client().rm("tree", recursive=True)
    assert freed == 15, f"bytes counted through symlinks: {freed}"
    assert files >= 2
    assert not os.path.lexists(tree), "the tree (or a link in it) is still there"
    assert tree_state(outside) == before, "rm -r changed something outside the home"
    assert (home / "mine.txt").read_bytes() == b"mine", "a link target inside the home was removed"
    assert (home / "link_dir").is_symlink() and (home / "link_file").is_symlink()


def test_rm_symlink_removes_the_link_only(home: Path, client: ClientFactory, outside: Path) -> None:
    before = tree_state(outside)
    conn = client()
    assert conn.rm("link_file") == (1, 0)
    assert conn.rm("link_dir", recursive=True)[1] == 0
    assert not os.path.lexists(home / "link_file") and not os.path.lexists(home / "link_dir")
    assert tree_state(outside) == before


def test_rm_cli_r(home: Path, run_cli: RunCli) -> None:
    result = run_cli("-c", "rm -r docs; rm mine.txt")
    assert result.returncode == 0, result
    assert "removed 2 files" in result.stdout, result.stdout
    assert not (home / "docs").exists() and not (home / "mine.txt").exists()
    result = run_cli("-c", "rm empty")
    assert result.returncode == 1 and "rm -r" in result.stderr, result
    assert (home / "empty").is_dir()


# -- refusing the home itself --------------------------------------------------------


@pytest.mark.parametrize("path", ["/", ".", "..", "/..", "docs/../..", "//"])
@pytest.mark.parametrize("command", ["rm", "rm -r", "rmdir", "mv-from"])
def test_the_home_itself_is_refused(
    home: Path, client: ClientFactory, path: str, command: str
) -> None:
    conn = client()
    before = tree_state(home)
    actions: dict[str, Callable[[], object]] = {
        "rm": lambda: conn.rm(path),
        "rm -r": lambda: conn.rm(path, recursive=True),
        "rmdir": lambda: conn.rmdir(path),
        "mv-from": lambda: conn.mv(path, "empty/home"),
    }
    error = remote_error(actions[command])
    assert error.code == ErrorCode.PERMISSION_DENIED, f"{command} {path}: {error}"
    assert tree_state(home) == before


# -- mv ----------------------------------------------------------------------------------


def test_mv_rename(home: Path, client: ClientFactory) -> None:
    digest = file_digest_of(home / "mine.txt")
    assert client().mv("mine.txt", "yours.txt") == "/yours.txt"
    assert not (home / "mine.txt").exists()
    assert file_digest_of(home / "yours.txt") == digest


def test_mv_into_an_existing_folder(home: Path, client: ClientFactory) -> None:
    digest = file_digest_of(home / "mine.txt")
    conn = client()
    assert conn.mv("mine.txt", "empty") == "/empty/mine.txt"
    assert file_digest_of(home / "empty" / "mine.txt") == digest
    assert conn.mv("docs", "empty/") == "/empty/docs"
    assert (home / "empty" / "docs" / "inner" / "b.bin").is_file()
    assert not (home / "docs").exists()


def test_mv_folder_rename_keeps_contents(home: Path, client: ClientFactory) -> None:
    before = tree_state(home / "docs", times=False)
    assert client().mv("docs", "papers") == "/papers"
    assert tree_state(home / "papers", times=False) == before


@pytest.mark.parametrize(
    "old, new",
    [("mine.txt", "docs/a.txt"), ("docs", "empty"), ("docs", "/empty/"), ("empty", "mine.txt")],
)
def test_mv_target_exists_is_410(home: Path, client: ClientFactory, old: str, new: str) -> None:
    (home / "empty" / "docs").mkdir()  # so that "mv docs empty" would collide, too
    before = tree_state(home)
    error = remote_error(lambda: client().mv(old, new))
    assert error.code == ErrorCode.EXISTS, f"mv {old} {new}: {error}"
    assert tree_state(home) == before


def test_mv_into_folder_with_that_name_taken_is_410(home: Path, client: ClientFactory) -> None:
    (home / "empty" / "mine.txt").write_bytes(b"other")
    before = tree_state(home)
    error = remote_error(lambda: client().mv("mine.txt", "empty"))
    assert error.code == ErrorCode.EXISTS, error
    assert tree_state(home) == before


def test_mv_onto_a_name_taken_meanwhile_overwrites_nothing(
    home: Path, client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another session creates the target after every check, just before the rename.

    The kernel's RENAME_NOREPLACE refuses it: 410, and both files are intact.
    """
    real = ftpserver.fsops._renameat2
    if real is None:
        pytest.skip("no renameat2 in this C library")

    def racing(*args: Any) -> int:
        Path(os.fsdecode(args[3])).write_bytes(b"written by the other session")
        return real(*args)

    monkeypatch.setattr(ftpserver.fsops, "_renameat2", racing)
    error = remote_error(lambda: client().mv("mine.txt", "new.txt"))
    assert error.code == ErrorCode.EXISTS, error
    assert (home / "new.txt").read_bytes() == b"written by the other session"
    assert (home / "mine.txt").read_bytes() == b"mine"


@pytest.mark.parametrize("kernel", [True, False], ids=["renameat2", "check-then-rename"])
def test_rename_noreplace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kernel: bool) -> None:
    """With and without the kernel's RENAME_NOREPLACE: refuses a taken name, else renames."""
    if not kernel:
        monkeypatch.setattr(ftpserver.fsops, "_renameat2", None)
    elif ftpserver.fsops._renameat2 is None:
        pytest.skip("no renameat2 in this C library")
    source, taken, free = tmp_path / "source", tmp_path / "taken", tmp_path / "free"
    source.write_bytes(b"source")
    taken.write_bytes(b"taken")
    with pytest.raises(FileExistsError):
        ftpserver.fsops.rename_noreplace(str(source), str(taken))
    assert taken.read_bytes() == b"taken" and source.read_bytes() == b"source"
    ftpserver.fsops.rename_noreplace(str(source), str(free))
    assert free.read_bytes() == b"source" and not source.exists()
    with pytest.raises(FileNotFoundError):
        ftpserver.fsops.rename_noreplace(str(source), str(tmp_path / "other"))


@pytest.mark.parametrize("new", ["docs/inner", "docs", "docs/inner/x", "docs/new"])
def test_mv_folder_into_itself_is_refused(home: Path, client: ClientFactory, new: str) -> None:
    before = tree_state(home)
    error = remote_error(lambda: client().mv("docs", new))
    assert error.code in (ErrorCode.BAD_REQUEST, ErrorCode.EXISTS), f"mv docs {new}: {error}"
    assert tree_state(home) == before


def test_mv_missing_is_404(home: Path, client: ClientFactory) -> None:
    error = remote_error(lambda: client().mv("nope", "other"))
    assert error.code == ErrorCode.NOT_FOUND, error
    assert not (home / "other").exists()


def test_mv_into_a_missing_folder_named_with_a_slash_is_404(
    home: Path, client: ClientFactory
) -> None:
    digest = file_digest_of(home / "mine.txt")
    error = remote_error(lambda: client().mv("mine.txt", "newdir/"))
    assert error.code == ErrorCode.NOT_FOUND, error
    assert not (home / "newdir").exists()
    assert file_digest_of(home / "mine.txt") == digest


def test_mv_of_a_symlink_moves_the_link(home: Path, client: ClientFactory, outside: Path) -> None:
    before = tree_state(outside)
    target = os.readlink(home / "link_file")
    conn = client()
    assert conn.mv("link_file", "empty/moved_link") == "/empty/moved_link"
    assert not os.path.lexists(home / "link_file")
    assert (home / "empty" / "moved_link").is_symlink()
    assert os.readlink(home / "empty" / "moved_link") == target
    assert conn.mv("link_dir", "renamed_dir_link") == "/renamed_dir_link"
    assert (home / "renamed_dir_link").is_symlink()
    assert tree_state(outside) == before, "moving a link moved or changed its target"
    # A link to a file inside the home: the link moves, the file stays.
    (home / "in_link").symlink_to("mine.txt")
    assert conn.mv("in_link", "docs/in_link") == "/docs/in_link"
    assert (home / "mine.txt").read_bytes() == b"mine"
    assert (home / "docs" / "in_link").is_symlink()


def test_mv_cli(home: Path, run_cli: RunCli) -> None:
    result = run_cli("-c", "mv mine.txt 'new name.txt'; mv 'new name.txt' empty")
    assert result.returncode == 0, result
    assert (home / "empty" / "new name.txt").read_bytes() == b"mine"
    result = run_cli("-c", "mv docs empty/new\\ name.txt")
    assert result.returncode == 1, result
    assert (home / "docs").is_dir()


# -- stat ------------------------------------------------------------------------------


def test_stat_file(home: Path, client: ClientFactory) -> None:
    path = home / "docs" / "inner" / "b.bin"
    os.utime(path, (1_700_000_000, 1_700_000_000))
    info = client().stat("docs/inner/b.bin")
    assert (info.type, info.size, info.mtime) == ("file", 5000, 1_700_000_000)
    assert info.blake3 is None
    with_digest = client().stat("/docs/inner/b.bin", digest=True)
    assert with_digest.blake3 == file_digest_of(path)
    assert with_digest.size == path.stat().st_size


def test_stat_folder_and_empty_file(home: Path, client: ClientFactory) -> None:
    os.utime(home / "docs", (1_600_000_000, 1_600_000_000))
    info = client().stat("docs", digest=True)
    assert (info.type, info.size, info.mtime) == ("dir", 0, 1_600_000_000)
    (home / "zero").write_bytes(b"")
    zero = client().stat("zero", digest=True)
    assert (zero.type, zero.size, zero.blake3) == ("file", 0, digest_of(b""))


def test_stat_follows_a_link_inside_the_home(home: Path, client: ClientFactory) -> None:
    (home / "in_link").symlink_to("docs/a.txt")
    info = client().stat("in_link", digest=True)
    assert info.type == "file"
    assert info.blake3 == file_digest_of(home / "docs" / "a.txt")


def test_stat_missing_and_bad_flag(home: Path, client: ClientFactory, raw: Callable) -> None:
    assert remote_error(lambda: client().stat("nope")).code == ErrorCode.NOT_FOUND
    session = raw()
    session.login()
    reply = session.call("stat", "mine.txt", "md5")
    assert reply.status == "error" and reply.fields[1] == "400", reply


def test_stat_cli_s(home: Path, run_cli: RunCli) -> None:
    result = run_cli("-c", "stat -s docs/a.txt")
    assert result.returncode == 0, result
    assert f"blake3:   {file_digest_of(home / 'docs' / 'a.txt')}" in result.stdout, result.stdout
    assert "type:     file" in result.stdout and "size:     600 " in result.stdout


# -- ls -------------------------------------------------------------------------------


def test_ls_lh_human_sizes_cli(home: Path, run_cli: RunCli) -> None:
    (home / "sizes").mkdir()
    (home / "sizes" / "small").write_bytes(b"x" * 532)
    (home / "sizes" / "kib").write_bytes(b"x" * 1536)
    (home / "sizes" / "mib").write_bytes(b"x" * (3 * 1024 * 1024 + 150 * 1024))
    (home / "sizes" / "folder").mkdir()
    result = run_cli("-c", "ls -lh sizes")
    assert result.returncode == 0, result
    lines = {line.split()[-1]: line for line in result.stdout.splitlines() if line.strip()}
    assert set(lines) == {"small", "kib", "mib", "folder/"}, result.stdout
    assert "532 B" in lines["small"] and lines["small"].startswith("file")
    assert "1.5 KiB" in lines["kib"]
    assert "3.1 MiB" in lines["mib"]
    assert lines["folder/"].startswith("dir") and " - " in lines["folder/"]
    plain = run_cli("-c", "ls sizes")
    assert sorted(plain.stdout.split()) == ["folder/", "kib", "mib", "small"], plain


def test_ls_of_10000_entries(home: Path, client: ClientFactory) -> None:
    big = home / "big"
    big.mkdir()
    names = {f"entry-{i:05d}" for i in range(10_000)}
    for name in names:
        (big / name).write_bytes(b"")
    (big / "entry-00042").write_bytes(b"42 bytes" * 5 + b"..")
    entries = client().ls("big")
    assert len(entries) == 10_000
    assert {e.name for e in entries} == names
    assert {e.name: e.size for e in entries}["entry-00042"] == 42
    assert all(e.type == "file" for e in entries)


def test_ls_shows_links_as_links(home: Path, client: ClientFactory) -> None:
    kinds = {e.name: e.type for e in client().ls("/")}
    assert kinds == {
        "docs": "dir",
        "empty": "dir",
        "mine.txt": "file",
        "link_file": "link",
        "link_dir": "link",
    }


# -- nothing outside the home ------------------------------------------------------------


def out_attempts(conn_local: Path) -> dict[str, Callable[..., object]]:
    """Commands through symlinks that lead out of the home; each must be 403."""
    upload = conn_local / "upload.txt"
    upload.write_bytes(b"must not land outside")
    return {
        "ls link_dir": lambda c: c.ls("link_dir"),
        "ls link_dir/sub": lambda c: c.ls("link_dir/sub"),
        "cd link_dir": lambda c: c.cd("link_dir"),
        "stat link_file": lambda c: c.stat("link_file", digest=True),
        "stat link_dir/secret.txt": lambda c: c.stat("link_dir/secret.txt"),
        "get link_file": lambda c: c.get("link_file", str(conn_local / "got")),
        "get link_dir/secret.txt": lambda c: c.get("link_dir/secret.txt", str(conn_local / "got")),
        "put link_file": lambda c: c.put(str(upload), "link_file"),
        "put link_dir/secret.txt": lambda c: c.put(str(upload), "link_dir/secret.txt"),
        "put link_dir/new.txt": lambda c: c.put(str(upload), "link_dir/new.txt"),
        "partial link_dir/new.txt": lambda c: c.partial("link_dir/new.txt"),
        "mkdir link_dir/new": lambda c: c.mkdir("link_dir/new"),
        "mkdir -p link_dir/a/b": lambda c: c.mkdir("link_dir/a/b", parents=True),
        "mkdir link_dir/sub": lambda c: c.mkdir("link_dir/sub", parents=True),
        "rmdir link_dir/sub": lambda c: c.rmdir("link_dir/sub"),
        "rm link_dir/secret.txt": lambda c: c.rm("link_dir/secret.txt"),
        "rm -r link_dir/sub": lambda c: c.rm("link_dir/sub", recursive=True),
        "mv link_dir/secret.txt in": lambda c: c.mv("link_dir/secret.txt", "stolen.txt"),
        "mv mine.txt link_dir": lambda c: c.mv("mine.txt", "link_dir"),
        "mv mine.txt link_dir/x": lambda c: c.mv("mine.txt", "link_dir/x"),
        "mv docs link_dir/sub": lambda c: c.mv("docs", "link_dir/sub"),
        "mv mine.txt link_file": lambda c: c.mv("mine.txt", "link_file"),
    }


ATTEMPT_NAMES = [
    "ls link_dir",
    "ls link_dir/sub",
    "cd link_dir",
    "stat link_file",
    "stat link_dir/secret.txt",
    "get link_file",
    "get link_dir/secret.txt",
    "put link_file",
    "put link_dir/secret.txt",
    "put link_dir/new.txt",
    "partial link_dir/new.txt",
    "mkdir link_dir/new",
    "mkdir -p link_dir/a/b",
    "mkdir link_dir/sub",
    "rmdir link_dir/sub",
    "rm link_dir/secret.txt",
    "rm -r link_dir/sub",
    "mv link_dir/secret.txt in",
    "mv mine.txt link_dir",
    "mv mine.txt link_dir/x",
    "mv docs link_dir/sub",
    "mv mine.txt link_file",
]


@pytest.mark.parametrize("name", ATTEMPT_NAMES)
def test_symlinks_out_are_403_and_touch_nothing(
    home: Path, client: ClientFactory, outside: Path, local: Path, name: str
) -> None:
    attempts = out_attempts(local)
    (outside / "sub" / "empty").mkdir()
    outside_before = tree_state(outside)
    home_before = tree_state(home)
    local_before = tree_state(local)
    error = remote_error(lambda: attempts[name](client()))
    assert error.code == ErrorCode.PERMISSION_DENIED, f"{name}: {error.code} {error.text!r}"
    assert str(outside) not in error.text and str(home) not in error.text, error.text
    assert tree_state(outside) == outside_before, f"{name} changed something outside the home"
    assert tree_state(home) == home_before, f"{name} changed the home"
    assert tree_state(local) == local_before, f"{name} wrote a local file"


@pytest.mark.parametrize(
    "action, lands",
    [
        (lambda c: c.mkdir("../../outside/new", parents=True), "outside/new"),
        (lambda c: c.mkdir("/../escaped"), "escaped"),
        (lambda c: c.mv("mine.txt", "../../docs/mine.txt"), "docs/mine.txt"),
        (lambda c: c.mv("docs", "/../../docs2"), "docs2"),
    ],
    ids=["mkdir-p", "mkdir", "mv-file", "mv-folder"],
)
def test_dotdot_stays_in_the_home(
    home: Path,
    client: ClientFactory,
    outside: Path,
    tmp_path: Path,
    action: Callable[..., object],
    lands: str,
) -> None:
    outside_before = tree_state(outside)
    around = set(os.listdir(tmp_path)), set(os.listdir(home.parent))
    action(client())
    assert os.path.lexists(home / lands), f"the result is not at /{lands} in the home"
    assert tree_state(outside) == outside_before
    assert (set(os.listdir(tmp_path)), set(os.listdir(home.parent))) == around


@pytest.mark.parametrize(
    "action",
    [
        lambda c: c.rm("../../outside/secret.txt"),
        lambda c: c.rm("../bob", recursive=True),
        lambda c: c.rmdir("../bob"),
        lambda c: c.mv("../../outside/secret.txt", "stolen"),
        lambda c: c.stat("../../outside/secret.txt"),
    ],
    ids=["rm", "rm-r", "rmdir", "mv", "stat"],
)
def test_dotdot_cannot_reach_other_folders(
    home: Path, client: ClientFactory, outside: Path, server: RunningServer, action: Callable
) -> None:
    (server.bob_home / "bobs.txt").write_bytes(b"bob")
    outside_before, bob_before = tree_state(outside), tree_state(server.bob_home)
    error = remote_error(lambda: action(client()))
    assert error.code == ErrorCode.NOT_FOUND, error
    assert tree_state(outside) == outside_before
    assert tree_state(server.bob_home) == bob_before
    assert not (home / "stolen").exists()


def test_cli_help_lists_the_new_commands(server: RunningServer, run_cli: RunCli) -> None:
    result = run_cli("-c", "help")
    assert result.returncode == 0, result
    words = set(result.stdout.split())
    expected = {"mkdir", "rmdir", "rm", "mv", "stat", "quota", "df", "reget", "reput"}
    assert expected <= words, f"missing from help: {expected - words}"
    result = run_cli("-c", "help rm")
    assert "rm [-r] PATH" in result.stdout, result.stdout


def test_server_help_lists_the_new_commands(server: RunningServer, client: ClientFactory) -> None:
    names = set(client().help())
    assert {"mkdir", "rmdir", "rm", "mv", "stat", "quota", "partial"} <= names, names
    assert client().help("mv")[0] == "mv OLD NEW [replace]"
