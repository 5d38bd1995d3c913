"""The local side of ``mirror``: a folder tree on disk and, with ``-c``, its files' digests.

:func:`local_tree` walks a folder with ``os.scandir`` (links never
followed) into a :class:`Tree` of relative ``/``-separated paths.  Asked for
digests, it hashes every regular file with BLAKE3, several files at once:
the reads (``os.preadv``) and the digest release the GIL, so on a machine
with two cores or more two threads hash the tree in about half the time one
takes (measured in docs/PERFORMANCE.md, "Trees and slow links").  Each file
is opened once, never through a link, and its size and time are taken from
the open file, so they describe the bytes that were hashed.

:class:`FileInfo` and :class:`Tree` are plain classes (no ``dataclasses``:
that import alone costs an unchanged ``mirror`` about 10 ms at every start).
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable, Iterator
from typing import NamedTuple

from ftpclient.datatypes import LocalError
from ftpproto.digest import READ_PIECE, new_hasher

__all__ = ["HASH_THREADS", "FileInfo", "Tree", "hash_threads", "local_digest", "local_tree"]

Digest = Callable[[str], str | None]  # relative path -> digest (None: unknown)

HASH_THREADS = 2  # at most; measured: a third thread on two cores gained nothing
FILES_PER_THREAD = 16  # a smaller tree is hashed by fewer threads (each costs its start)


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


def hash_threads() -> int:
    """Threads to hash a tree with: the CPUs this process may use, at most :data:`HASH_THREADS`."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(HASH_THREADS, cpus))


def local_tree(
    root: str, digests: dict[str, str] | None = None, threads: int | None = None
) -> Tree:
    """The local tree under ``root`` (links not followed); a missing root is an empty tree.

    With ``digests`` every regular file is hashed (by ``threads`` threads,
    default :func:`hash_threads`), its digest stored there by relative path;
    a file that cannot be read has none.  A folder that cannot be listed is
    left out, as ``os.walk`` does.
    """
    if not os.path.isdir(root):
        if os.path.lexists(root):
            raise LocalError(f"not a folder: {root}")
        return Tree(exists=False)
    tree = Tree()
    found = list(_walk(root, tree))
    if digests is None:
        for relative, item in found:
            st = item.stat(follow_symlinks=False)
            tree.files[relative] = FileInfo(st.st_size, int(st.st_mtime))
    else:
        count = hash_threads() if threads is None else threads
        _hash_all(found, tree, digests, max(1, min(count, len(found) // FILES_PER_THREAD)))
    return tree


def _walk(root: str, tree: Tree) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """Record the folders and others of ``root`` in ``tree``; yield its regular files."""
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
            elif item.is_file(follow_symlinks=False):
                yield relative, item
            else:
                tree.others.add(relative)


def _hash_all(
    found: list[tuple[str, os.DirEntry[str]]], tree: Tree, digests: dict[str, str], threads: int
) -> None:
    """Hash every file of ``found`` into ``tree`` and ``digests``, ``threads`` at a time.

    This thread is one of them; the first error of any is raised here once all stopped.
    """
    pending = iter(found)  # shared: taking the next item is atomic
    failed: list[BaseException] = []

    def work() -> None:
        buffer = memoryview(bytearray(READ_PIECE))
        try:
            for relative, item in pending:
                hashed = _hashed(item.path, buffer)
                if hashed is None:
                    st = item.stat(follow_symlinks=False)
                    tree.files[relative] = FileInfo(st.st_size, int(st.st_mtime))
                else:
                    st, digests[relative] = hashed
                    tree.files[relative] = FileInfo(st.st_size, int(st.st_mtime))
        except BaseException as exc:  # raised in the caller's thread
            failed.append(exc)

    helpers = [
        threading.Thread(target=work, name="mirror-hash", daemon=True) for _ in range(threads - 1)
    ]
    for helper in helpers:
        helper.start()
    work()
    for helper in helpers:
        helper.join()
    if failed:
        raise failed[0]


def _hashed(path: str, buffer: memoryview) -> tuple[os.stat_result, str] | None:
    """The regular file ``path`` (never a link followed): its status and digest, or None.

    Read with ``os.preadv`` into ``buffer`` (this thread's, reused for every file).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        hasher = new_hasher()
        size, done, piece = st.st_size, 0, len(buffer)
        while done < size:
            n = os.preadv(fd, [buffer[: min(size - done, piece)]], done)
            if not n:
                return None  # shorter than it was a moment ago
            hasher.update(buffer[:n])
            done += n
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
