"""End to end: whole folder trees with ``put -r`` and ``get -r`` (issue 3).

A local tree of 200+ files in nested folders goes up and comes back down with
the same relative paths and BLAKE3 digests; symlinks never take anything
from outside the tree; a failure names the file and leaves what was copied
before it complete.  Through the library and through the command line.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from conftest import (
    ClientFactory,
    RunCli,
    RunningServer,
    file_digest_of,
    temp_files,
    tree_digests,
    tree_state,
)

from ftpclient.client import LocalError
from ftpclient.trees import get_tree, put_tree
from ftpproto.errors import ErrorCode, RemoteError

pytestmark = pytest.mark.timeout(60)

SECRET = b"outside the tree: never uploaded\n"


def make_tree(root: Path, seed: int = 3) -> dict[str, str]:
    """A nested tree of 212 files (some empty, odd names) and an empty folder; its digests."""
    rng = random.Random(seed)
    root.mkdir(parents=True)
    for top in range(4):
        for sub in range(5):
            folder = root / f"top{top}" / f"sub {sub}"
            folder.mkdir(parents=True)
            for n in range(10):
                size = rng.choice([0, 1, 100, 4096, rng.randrange(1, 40_000)])
                (folder / f"file{n:02d}.bin").write_bytes(rng.randbytes(size))
    (root / "top0" / "sub 0" / "deeper" / "deepest").mkdir(parents=True)
    (root / "top0" / "sub 0" / "deeper" / "deepest" / "bottom.txt").write_bytes(b"bottom\n")
    (root / "empty folder").mkdir()
    odd = ["pipe|name.txt", "100%.txt", "ünïcødé ✓.txt", "with space.txt", "-dash", "a;b"]
    for name in odd:
        (root / name).write_bytes(name.encode() * 7)
    (root / "README").write_bytes(b"top level\n")
    (root / "big.bin").write_bytes(rng.randbytes(700_000))
    (root / "top3" / "only-file.txt").write_bytes(b"x")
    return tree_digests(root)


def folders(root: Path) -> set[str]:
    """Relative paths of every folder under ``root``."""
    return {
        Path(top, name).relative_to(root).as_posix()
        for top, dirs, _ in os.walk(root)
        for name in dirs
    }


def test_put_r_then_get_r_round_trip(
    server: RunningServer, client: ClientFactory, tmp_path: Path
) -> None:
    source = tmp_path / "src" / "tree"
    digests = make_tree(source)
    assert len(digests) >= 200
    conn = client()
    uploaded = put_tree(conn, str(source))
    assert len(uploaded.files) == len(digests)
    assert uploaded.skipped == []
    remote_root = server.alice_home / "tree"
    assert tree_digests(remote_root) == digests, "the server's copy differs"
    assert folders(remote_root) == folders(source), "the folder structure differs on the server"
    assert temp_files(server.alice_home) == []

    dest = tmp_path / "dest"
    downloaded = get_tree(conn, "tree", str(dest))
    assert len(downloaded.files) == len(digests)
    assert tree_digests(dest) == digests, "the downloaded tree differs"
    assert folders(dest) == folders(source)
    assert not list(dest.rglob("*.part")), "a .part file was left"
    assert (
        uploaded.size
        == downloaded.size
        == sum(p.stat().st_size for p in source.rglob("*") if p.is_file())
    )


def test_put_r_into_existing_remote_folder_goes_inside(
    server: RunningServer, client: ClientFactory, tmp_path: Path
) -> None:
    source = tmp_path / "proj"
    source.mkdir()
    (source / "a.txt").write_bytes(b"a")
    (source / "s").mkdir()
    (source / "s" / "b.txt").write_bytes(b"b")
    (server.alice_home / "backup").mkdir()
    conn = client()
    put_tree(conn, str(source), "backup")
    assert tree_digests(server.alice_home / "backup") == {
        "proj/a.txt": file_digest_of(source / "a.txt"),
        "proj/s/b.txt": file_digest_of(source / "s" / "b.txt"),
    }
    # A remote name that does not exist yet becomes the tree's root.
    put_tree(conn, str(source), "copy")
    assert tree_digests(server.alice_home / "copy") == tree_digests(source)


def test_get_r_into_existing_local_folder_goes_inside(
    server: RunningServer, client: ClientFactory, tmp_path: Path
) -> None:
    (server.alice_home / "r" / "s").mkdir(parents=True)
    (server.alice_home / "r" / "s" / "f").write_bytes(b"f" * 10)
    dest = tmp_path / "existing"
    dest.mkdir()
    get_tree(client(), "r", str(dest))
    assert tree_digests(dest) == {"r/s/f": file_digest_of(server.alice_home / "r" / "s" / "f")}


def test_local_symlinks_out_of_the_tree_are_not_uploaded(
    server: RunningServer, client: ClientFactory, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "secret.txt").write_bytes(SECRET)
    (outside / "dir" / "also-secret.txt").write_bytes(SECRET)
    source = tmp_path / "tree"
    (source / "sub").mkdir(parents=True)
    (source / "real.txt").write_bytes(b"real")
    (source / "sub" / "real2.txt").write_bytes(b"real2")
    (source / "out_file").symlink_to(outside / "secret.txt")
    (source / "sub" / "out_rel").symlink_to("../../outside/secret.txt")
    (source / "out_dir").symlink_to(outside / "dir", target_is_directory=True)
    (source / "dangling").symlink_to(outside / "missing")
    (source / "in_link").symlink_to("sub/real2.txt")  # inside the tree: copied as a file
    result = put_tree(client(), str(source))
    remote = server.alice_home / "tree"
    assert tree_digests(remote) == {
        "real.txt": file_digest_of(source / "real.txt"),
        "sub/real2.txt": file_digest_of(source / "sub" / "real2.txt"),
        "in_link": file_digest_of(source / "sub" / "real2.txt"),
    }
    for name in ("out_file", "sub/out_rel", "out_dir", "dangling"):
        assert not os.path.lexists(remote / name), f"{name} reached the server"
    everything = b"".join(p.read_bytes() for p in server.alice_home.rglob("*") if p.is_file())
    assert SECRET not in everything, "bytes from outside the tree were uploaded"
    skipped = {Path(p).relative_to(source).as_posix() for p in result.skipped}
    assert skipped == {"out_file", "sub/out_rel", "out_dir", "dangling"}


def test_get_r_skips_remote_links(
    server: RunningServer, client: ClientFactory, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    tree = server.alice_home / "t"
    tree.mkdir()
    (tree / "real.txt").write_bytes(b"real")
    (tree / "out").symlink_to(outside / "secret.txt")
    (tree / "out_dir").symlink_to(outside, target_is_directory=True)
    dest = tmp_path / "dest"
    result = get_tree(client(), "t", str(dest))
    assert tree_digests(dest) == {"real.txt": file_digest_of(tree / "real.txt")}
    assert not os.path.lexists(dest / "out") and not os.path.lexists(dest / "out_dir")
    assert sorted(result.skipped) == ["t/out", "t/out_dir"]


def test_put_r_failure_names_the_file_and_keeps_what_was_copied(
    server: RunningServer, client: ClientFactory, tmp_path: Path
) -> None:
    """A remote symlink out of the home sits where one file should go: that file is 403."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_bytes(SECRET)
    source = tmp_path / "tree"
    (source / "sub").mkdir(parents=True)
    for n in range(8):
        (source / f"top{n}.bin").write_bytes(os.urandom(20_000 + n))
        (source / "sub" / f"f{n}.bin").write_bytes(os.urandom(30_000 + n))
    (server.alice_home / "tree" / "sub").mkdir(parents=True)
    (server.alice_home / "tree" / "sub" / "f4.bin").symlink_to(outside / "victim.txt")
    with pytest.raises(RemoteError) as caught:
        put_tree(client(), str(source))
    assert caught.value.code == ErrorCode.PERMISSION_DENIED, caught.value
    assert "sub/f4.bin" in caught.value.text, f"the error does not name the file: {caught.value}"
    assert (outside / "victim.txt").read_bytes() == SECRET, "the upload went through the link"
    remote = tree_digests(server.alice_home / "tree")
    local = tree_digests(source)
    for name, digest in remote.items():
        assert local[name] == digest, f"{name} was copied incomplete"
    for n in range(4):  # files sorted before the failing one in its folder
        assert f"sub/f{n}.bin" in remote, f"sub/f{n}.bin was not copied before the failure"
    assert all(f"sub/f{n}.bin" not in remote for n in range(5, 8)), "the copy went on"
    assert temp_files(server.alice_home) == []


def test_put_r_refused_name_stops_with_its_name(
    server: RunningServer, client: ClientFactory, tmp_path: Path
) -> None:
    source = tmp_path / "tree"
    source.mkdir()
    for name in ("a.txt", "b.txt", "c.txt"):
        (source / name).write_bytes(name.encode() * 1000)
    (source / "later").mkdir()  # walked after the files above
    (source / "later" / ".ftp-upload-sneaky").write_bytes(b"a reserved name")
    (source / "later" / "z.txt").write_bytes(b"after the refused name")
    with pytest.raises(RemoteError) as caught:
        put_tree(client(), str(source))
    assert caught.value.code == ErrorCode.BAD_PATH, caught.value
    assert ".ftp-upload-sneaky" in caught.value.text
    remote = tree_digests(server.alice_home / "tree")
    assert remote == {n: file_digest_of(source / n) for n in ("a.txt", "b.txt", "c.txt")}
    assert temp_files(server.alice_home) == []


def test_get_r_local_failure_names_the_folder(
    server: RunningServer, client: ClientFactory, tmp_path: Path
) -> None:
    tree = server.alice_home / "t"
    (tree / "blocked").mkdir(parents=True)
    (tree / "a.txt").write_bytes(b"a" * 100)
    (tree / "blocked" / "x.txt").write_bytes(b"x")
    dest = tmp_path / "dest"
    (dest / "t").mkdir(parents=True)
    (dest / "t" / "blocked").write_bytes(b"a local file in the way")
    with pytest.raises(LocalError) as caught:
        get_tree(client(), "t", str(dest))
    assert "blocked" in str(caught.value), caught.value
    assert (dest / "t" / "blocked").read_bytes() == b"a local file in the way"
    copied = tree_digests(dest / "t")
    assert copied.get("a.txt") in (None, file_digest_of(tree / "a.txt"))
    assert not list(dest.rglob("*.part"))


def test_get_r_of_a_file_is_refused(
    server: RunningServer, client: ClientFactory, tmp_path: Path
) -> None:
    (server.alice_home / "f").write_bytes(b"f")
    with pytest.raises(LocalError):
        get_tree(client(), "f", str(tmp_path / "dest"))
    assert not (tmp_path / "dest").exists()


# -- the command line ------------------------------------------------------------------


def test_cli_put_r_and_get_r(server: RunningServer, run_cli: RunCli, local: Path) -> None:
    digests = make_tree(local / "mytree", seed=11)
    result = run_cli("-c", "put -r mytree; get -r mytree back")
    assert result.returncode == 0, result
    assert tree_digests(server.alice_home / "mytree") == digests
    assert tree_digests(local / "back") == digests
    assert folders(local / "back") == folders(local / "mytree")
    assert f"{len(digests)} files" in result.stdout, result.stdout[-500:]


def test_cli_put_r_failure(server: RunningServer, run_cli: RunCli, local: Path) -> None:
    source = local / "up"
    source.mkdir()
    for name in ("a1", "a2", "b1", "c1"):
        (source / name).write_bytes(os.urandom(10_000))
    (server.alice_home / "up" / "b1").mkdir(parents=True)  # a folder where a file should go
    before = tree_state(server.alice_home / "up" / "b1")
    result = run_cli("-c", "put -r up; pwd")
    assert result.returncode == 1, result
    assert "b1" in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert "/\n" not in result.stdout, "the batch went on after the failure"
    remote = tree_digests(server.alice_home / "up")
    assert remote == {"a1": file_digest_of(source / "a1"), "a2": file_digest_of(source / "a2")}
    assert tree_state(server.alice_home / "up" / "b1") == before
