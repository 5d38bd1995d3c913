"""The local side of ``mirror``: a folder tree on disk and, with ``-c``, its files' digests.

:func:`local_tree` walks a folder with ``os.scandir`` (links never
followed) into a :class:`Tree` of relative ``/``-separated paths.  Asked for
digests, it hashes every regular file (up to a size, if given) with BLAKE3
as it goes: each file is
opened once, never through a link, read with ``os.preadv`` into one buffer
reused for the whole tree, and its size and time are taken from the open
file, so they describe the bytes that were hashed.

One thread: hashing small files from several threads was no faster here (each
file is five system calls, and every one hands the GIL over; see
docs/PERFORMANCE.md, "Trees and slow links").  :class:`FileInfo` and
:class:`Tree` are plain classes, not dataclasses: that import alone costs
an unchanged ``mirror`` about 10 ms at every start.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from typing import NamedTuple

from ftpclient.datatypes import LocalError
from ftpproto.digest import READ_PIECE, new_hasher
from ftpproto.splicing import hash_fd

__all__ = ["Digest", "FileInfo", "Tree", "local_digest", "local_tree"]

Digest = Callable[[str], str | None]  # relative path -> digest (None: unknown)


class FileInfo(NamedTuple):
    """A file of a tree: size, modification time (seconds), digest if known."""

    size: int
    mtime: int
    blake3: str | None = None


class Tree:
    """A folder tree by relative ``/``-separated paths; ``exists`` is False for a missing root."""

    __slots__ = ("exists", "files", "folders", "others")

    def __init__(
        self,
        files: dict[str, FileInfo] | None = None,
        folders: set[str] | None = None,
        others: set[str] | None = None,  # links and special files
        exists: bool = True,
    ) -> None:
        self.files = {} if files is None else files
        self.folders = set() if folders is None else folders
        self.others = set() if others is None else others
        self.exists = exists


def local_tree(root: str, digests: dict[str, str] | None = None, most: int | None = None) -> Tree:
    """The local tree under ``root`` (links not followed); a missing root is an empty tree.

    With ``digests`` every regular file (of at most ``most`` bytes, if
    given) is hashed as it is found, its digest stored there by relative
    path; a file that cannot be read has none.  A folder that cannot be
    listed is left out, as ``os.walk`` does.
    """
    if not os.path.isdir(root):
        if os.path.lexists(root):
            raise LocalError(f"not a folder: {root}")
        return Tree(exists=False)
    tree = Tree()
    buffer = memoryview(bytearray(READ_PIECE if digests is not None else 0))
    pending = [("", root)]
    while pending:
        prefix, folder = pending.pop()
        try:
            items = list(os.scandir(folder))
        except OSError:
            continue
        for item in items:
            relative = prefix + item.name
            if item.is_dir(follow_symlinks=False):
                tree.folders.add(relative)
                pending.append((relative + "/", item.path))
            elif not item.is_file(follow_symlinks=False):
                tree.others.add(relative)
            elif digests is None or (hashed := _hashed(item.path, buffer, most)) is None:
                st = item.stat(follow_symlinks=False)
                tree.files[relative] = FileInfo(st.st_size, int(st.st_mtime))
            else:
                st, digests[relative] = hashed
                tree.files[relative] = FileInfo(st.st_size, int(st.st_mtime))
    return tree


def _hashed(
    path: str, buffer: memoryview, most: int | None = None
) -> tuple[os.stat_result, str] | None:
    """The regular file ``path`` (never a link followed): its status and digest, or None.

    None also for a file over ``most`` bytes (left to be hashed when asked).
    Read with ``os.preadv`` into ``buffer`` (reused for every file).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (most is not None and st.st_size > most):
            return None
        hasher = new_hasher()
        if hash_fd(hasher, fd, 0, st.st_size, buffer) < st.st_size:
            return None  # shorter than it was a moment ago
        return st, hasher.hexdigest()
    except OSError:
        return None
    finally:
        os.close(fd)


def local_digest(root: str) -> Digest:
    """A :data:`Digest` hashing files under the local folder ``root`` when asked."""

    def digest(relative: str) -> str | None:
        path = os.path.join(root, *relative.split("/"))
        hashed = _hashed(path, memoryview(bytearray(READ_PIECE)))
        return None if hashed is None else hashed[1]

    return digest
