"""The digest cache's extended attribute: 49 packed bytes that fit in an ext4 inode.

The text form of earlier versions (``SIZE:MTIME_NS:HEX``) needed a 4 KiB
attribute block per file; it is still read.  A stamp of another version of
the file (size or time) is never taken.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import digest_of

from ftpserver.digests import XATTR, DigestCache

pytestmark = pytest.mark.timeout(30)


@contextlib.contextmanager
def _opened(path: Path, data: bytes | None = None) -> Iterator[int]:
    """``path`` (written with ``data`` first, if given) open for reading."""
    if data is not None:
        path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        yield fd
    finally:
        os.close(fd)


@pytest.fixture
def cache(tmp_path: Path) -> DigestCache:
    cache = DigestCache()
    probe = tmp_path / "probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, XATTR, b"x")
    except (AttributeError, OSError) as exc:
        pytest.skip(f"no user extended attributes here: {exc}")
    return cache


def test_a_stamp_is_49_bytes_and_read_back_after_a_restart(
    cache: DigestCache, tmp_path: Path
) -> None:
    with _opened(tmp_path / "a.bin", b"alpha") as fd:
        st = os.fstat(fd)
        cache.put(st, digest_of(b"alpha"), fd)
        assert len(os.getxattr(fd, XATTR)) == 49
        assert DigestCache().get(st, fd) == digest_of(b"alpha")  # a new cache: the attribute


def test_the_text_form_of_earlier_versions_is_still_read(
    cache: DigestCache, tmp_path: Path
) -> None:
    with _opened(tmp_path / "old.bin", b"beta") as fd:
        st = os.fstat(fd)
        os.setxattr(fd, XATTR, f"{st.st_size}:{st.st_mtime_ns}:{digest_of(b'beta')}".encode())
        assert cache.get(st, fd) == digest_of(b"beta")


@pytest.mark.parametrize(
    "stamp",
    [b"", b"garbage", b"\x01" + b"\x00" * 47, b"\x02" + b"\x00" * 48, b"4:5:" + b"z" * 64],
)
def test_a_damaged_stamp_is_no_digest(cache: DigestCache, tmp_path: Path, stamp: bytes) -> None:
    with _opened(tmp_path / "bad.bin", b"gamma") as fd:
        os.setxattr(fd, XATTR, stamp)
        assert cache.get(os.fstat(fd), fd) is None


def test_a_stamp_of_another_version_is_no_digest(cache: DigestCache, tmp_path: Path) -> None:
    path = tmp_path / "c.bin"
    with _opened(path, b"delta") as fd:
        cache.put(os.fstat(fd), digest_of(b"delta"), fd)
    with open(path, "ab") as more:  # same inode, another size and time: the stamp stays
        more.write(b"!")
    with _opened(path) as fd:
        assert DigestCache().get(os.fstat(fd), fd) is None


def test_a_stamp_takes_no_more_disk_than_the_file(cache: DigestCache, tmp_path: Path) -> None:
    """On ext4 (256-byte inodes) the packed stamp stays in the inode, where the text form
    took an attribute block; elsewhere it takes no more than the text form."""
    packed, text = tmp_path / "packed.bin", tmp_path / "text.bin"
    for path in (packed, text):
        path.write_bytes(b"x" * 100)
    before = os.stat(packed).st_blocks
    with _opened(packed) as fd:
        cache.put(os.fstat(fd), digest_of(b"x" * 100), fd)
    st = os.stat(text)
    os.setxattr(text, XATTR, f"{st.st_size}:{st.st_mtime_ns}:{digest_of(b'x' * 100)}".encode())
    assert os.stat(packed).st_blocks <= os.stat(text).st_blocks
    if os.stat(text).st_blocks > before:  # the text form took a block here (ext4): not this one
        assert os.stat(packed).st_blocks == before
