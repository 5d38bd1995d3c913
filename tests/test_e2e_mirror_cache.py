"""End to end: the local digests ``mirror`` keeps between runs (:mod:`ftpclient.digestcache`).

Through the real server and the real command line.  To show that a kept
digest is what ``mirror -c`` used (and that no file was read), a test
replaces it with a wrong one through the cache's own interface: the
mirror then copies a file whose bytes are in fact the same.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from conftest import CliResult, RunCli, RunningServer, digest_of, tree_digests
from test_e2e_mirror import make_tree

from ftpclient.digestcache import DigestCache

pytestmark = pytest.mark.timeout(120)
FILES = {"a.txt": b"alpha\n", "sub/b.bin": b"\x01" * 5000, "sub/c.txt": b"gamma\n"}
WRONG = digest_of(b"not these bytes")


def kept(root: Path) -> dict[str, str | None]:
    """What the cache of ``root`` says of each of its files now."""
    cache = DigestCache.load(str(root))
    return {name: cache.known(name, os.lstat(root / name)) for name in FILES}


def plant_wrong_digest(root: Path, name: str) -> None:
    """Make the cache of ``root`` hold a wrong digest for ``name``, as it is now on disk."""
    cache = DigestCache.load(str(root))
    cache.remember(name, os.lstat(root / name), WRONG)
    cache.save()


def summary(done: CliResult) -> str:
    """The ``mirror:`` line of a run's output (all of it if there is none)."""
    return next(
        (line for line in done.stdout.splitlines() if line.startswith("mirror:")), done.stdout
    )


def test_a_download_keeps_its_digests_and_mirror_c_trusts_them_while_files_stay(
    server: RunningServer, run_cli: RunCli, local: Path
) -> None:
    site, copy = server.alice_home / "site", local / "copy"
    make_tree(site, FILES)
    first = run_cli("-c", "mirror site copy")
    assert first.returncode == 0, first.stderr
    assert kept(copy) == {name: digest_of(data) for name, data in FILES.items()}

    # the kept digest is used: a.txt is not read, so a wrong one makes it look changed
    plant_wrong_digest(copy, "a.txt")
    trusted = run_cli("-c", "mirror -c site copy")
    assert summary(trusted) == "mirror: 1 file copied (6 B), 2 unchanged", trusted.stderr
    assert kept(copy)["a.txt"] == digest_of(FILES["a.txt"])

    # --rehash reads every file: the same wrong digest changes nothing, and is mended
    plant_wrong_digest(copy, "a.txt")
    rehashed = run_cli("-c", "mirror -c --rehash site copy")
    assert summary(rehashed) == "mirror: 0 files copied, 3 unchanged", rehashed.stdout
    assert kept(copy)["a.txt"] == digest_of(FILES["a.txt"])

    # other bytes with the same size and time: ctime moved, so the file is read again
    time.sleep(0.02)
    make_tree(copy, {"sub/c.txt": b"GAMMA\n"})
    again = run_cli("-c", "mirror -c site copy")
    assert summary(again) == "mirror: 1 file copied (6 B), 2 unchanged", again.stdout
    assert tree_digests(copy) == tree_digests(site)


def test_mirror_c_upwards_keeps_what_it_hashed_and_drops_what_is_gone(
    server: RunningServer, run_cli: RunCli, local: Path
) -> None:
    tree = local / "tree"
    make_tree(tree, {**FILES, "old.txt": b"soon gone"})
    first = run_cli("-c", "mirror -R -c tree up")
    assert first.returncode == 0, first.stderr
    assert kept(tree) == {name: digest_of(data) for name, data in FILES.items()}
    assert DigestCache.load(str(tree)).known("old.txt", os.lstat(tree / "old.txt"))

    (tree / "old.txt").unlink()
    plant_wrong_digest(tree, "sub/b.bin")
    second = run_cli("-c", "mirror -R -c --delete tree up")
    assert summary(second) == "mirror: 1 file copied (4.9 KiB), 2 unchanged, 1 removed"
    assert (server.alice_home / "up" / "sub" / "b.bin").read_bytes() == FILES["sub/b.bin"]
    assert not (server.alice_home / "up" / "old.txt").exists()
    make_tree(tree, {"old.txt": b"soon gone"})  # back, as the very same bytes and time
    cache = DigestCache.load(str(tree))
    assert cache.known("old.txt", os.lstat(tree / "old.txt")) is None  # dropped when gone


def test_rehash_without_c_is_a_usage_error(run_cli: RunCli) -> None:
    done = run_cli("-c", "mirror --rehash site copy")
    assert done.returncode != 0
    assert "usage: mirror [-R] [-c [--rehash]]" in done.stderr + done.stdout
