"""The client's kept local digests (:mod:`ftpclient.digestcache`) and ``local_tree`` using them.

Real files in a temporary folder; the cache files go to the suite's
``$XDG_CACHE_HOME`` (conftest) or to one a test points elsewhere.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from conftest import digest_of

from ftpclient import localtree
from ftpclient.digestcache import FORGET_AFTER, DigestCache, cache_folder
from ftpclient.localtree import local_tree

OLD = 1_600_000_000  # a modification time long settled


def make_file(path: Path, data: bytes, mtime: int | None = OLD) -> os.stat_result:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return os.lstat(path)


def test_a_kept_digest_survives_a_save_and_a_load(tmp_path: Path) -> None:
    st = make_file(tmp_path / "a.bin", b"alpha")
    cache = DigestCache.load(str(tmp_path))
    assert cache.known("a.bin", st) is None
    cache.remember("a.bin", st, digest_of(b"alpha"))
    cache.save()
    again = DigestCache.load(str(tmp_path))
    assert again.known("a.bin", os.lstat(tmp_path / "a.bin")) == digest_of(b"alpha")
    assert DigestCache.load(str(tmp_path), trust=False).known("a.bin", st) is None
    assert oct(os.stat(cache_folder()).st_mode & 0o777) == "0o700"


def test_new_bytes_with_the_old_size_and_time_are_not_taken_for_the_old(tmp_path: Path) -> None:
    """Setting the time back after a write moves ``ctime``: the kept digest no longer applies."""
    path = tmp_path / "a.bin"
    st = make_file(path, b"alpha")
    cache = DigestCache.load(str(tmp_path))
    cache.remember("a.bin", st, digest_of(b"alpha"))
    time.sleep(0.02)  # past the filesystem clock's tick
    changed = make_file(path, b"omega")
    assert (changed.st_size, changed.st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    assert cache.known("a.bin", changed) is None
    assert cache.known("a.bin", st) == digest_of(b"alpha")  # (the old status still matches)


def test_a_file_modified_just_now_is_not_kept(tmp_path: Path) -> None:
    st = make_file(tmp_path / "fresh.bin", b"new", mtime=None)
    cache = DigestCache.load(str(tmp_path))
    cache.remember("fresh.bin", st, digest_of(b"new"))
    assert cache.known("fresh.bin", st) is None


def test_a_damaged_or_foreign_cache_file_is_an_empty_cache(tmp_path: Path) -> None:
    st = make_file(tmp_path / "one" / "a.bin", b"alpha")
    one = DigestCache.load(str(tmp_path / "one"))
    one.remember("a.bin", st, digest_of(b"alpha"))
    one.save()
    [name] = _cache_files_for(tmp_path / "one")
    data = Path(name).read_bytes()
    Path(name).write_bytes(data[:-3])  # cut short
    assert DigestCache.load(str(tmp_path / "one")).known("a.bin", st) is None
    Path(name).write_bytes(b"something else")
    assert DigestCache.load(str(tmp_path / "one")).known("a.bin", st) is None
    # another root's file under this root's name: not used
    other = DigestCache.load(str(tmp_path / "two"))
    other.remember("a.bin", st, digest_of(b"alpha"))
    other.save()
    os.replace(_cache_files_for(tmp_path / "two")[0], name)
    assert DigestCache.load(str(tmp_path / "one")).known("a.bin", st) is None


def _cache_files_for(root: Path) -> list[str]:
    """The cache file of ``root`` (by the name a cache of it would use), if written."""
    path = DigestCache(str(root)).path
    return [path] if os.path.exists(path) else []


def test_forget_and_keep_only_drop_what_the_tree_no_longer_has(tmp_path: Path) -> None:
    cache = DigestCache.load(str(tmp_path))
    status = {}
    for name in ("a.bin", "sub/b.bin", "sub/deep/c.bin", "subway.bin"):
        status[name] = make_file(tmp_path / name, name.encode())
        cache.remember(name, status[name], digest_of(name.encode()))
    cache.forget("sub")
    assert cache.known("sub/b.bin", status["sub/b.bin"]) is None
    assert cache.known("sub/deep/c.bin", status["sub/deep/c.bin"]) is None
    assert cache.known("subway.bin", status["subway.bin"]) == digest_of(b"subway.bin")
    cache.keep_only({"subway.bin"})
    assert cache.known("a.bin", status["a.bin"]) is None
    assert cache.known("subway.bin", status["subway.bin"]) == digest_of(b"subway.bin")


def test_a_cache_that_cannot_be_written_is_let_be(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "not-a-folder").write_bytes(b"")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "not-a-folder"))
    st = make_file(tmp_path / "a.bin", b"alpha")
    cache = DigestCache.load(str(tmp_path))
    cache.remember("a.bin", st, digest_of(b"alpha"))
    cache.save()  # no error
    assert DigestCache.load(str(tmp_path)).known("a.bin", st) is None


def test_old_cache_files_are_removed_and_used_ones_touched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    st = make_file(tmp_path / "tree" / "a.bin", b"alpha")
    used = DigestCache.load(str(tmp_path / "tree"))
    used.remember("a.bin", st, digest_of(b"alpha"))
    used.save()
    [used_file] = _cache_files_for(tmp_path / "tree")
    long_ago = time.time() - FORGET_AFTER - 60
    os.utime(used_file, (long_ago, long_ago))
    unused = Path(cache_folder()) / "0123456789abcdef"
    unused.write_bytes(b"")
    os.utime(unused, (long_ago, long_ago))
    DigestCache.load(str(tmp_path / "tree")).save()  # used, unchanged: its time is set
    assert os.stat(used_file).st_mtime > time.time() - 60
    other = DigestCache.load(str(tmp_path / "other"))
    other.remember("a.bin", st, digest_of(b"alpha"))
    other.save()  # a write clears out what nobody used
    assert not unused.exists() and os.path.exists(used_file)


def test_local_tree_reads_only_the_files_the_cache_does_not_know(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "tree"
    for index in range(6):
        make_file(root / f"f{index}.bin", bytes([index]) * 100)
    make_file(root / "new.bin", b"written now", mtime=None)
    cache = DigestCache.load(str(root))
    digests: dict[str, str] = {}
    tree = local_tree(str(root), digests, cache=cache)
    assert len(digests) == 7
    cache.save()

    read: list[str] = []
    real = localtree.hash_files

    def counting(paths: list[str], *args: object) -> object:
        read.extend(os.path.basename(path) for path in paths)
        return real(paths, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(localtree, "hash_files", counting)
    time.sleep(0.02)
    make_file(root / "f1.bin", b"\x09" * 100)  # the same size and time, other bytes
    again: dict[str, str] = {}
    second = local_tree(str(root), again, cache=DigestCache.load(str(root)))
    assert sorted(read) == ["f1.bin", "new.bin"]  # the changed file and the unsettled one
    assert again["f1.bin"] == digest_of(b"\x09" * 100)
    assert again["f2.bin"] == digests["f2.bin"] == digest_of(b"\x02" * 100)
    assert second.files == tree.files
