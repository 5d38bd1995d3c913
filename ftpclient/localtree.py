"""The local side of ``mirror``: a folder tree on disk and, with ``-c``, its files' digests.

:func:`local_tree` walks a folder with ``os.scandir`` (links never
followed) into a :class:`Tree` of relative ``/``-separated paths.  Asked for
digests, it then hashes every regular file (up to a size, if given) with
BLAKE3 through :func:`ftpclient.treehash.hash_files`, on more than one core
where that pays: each file is opened once, never through a link, and its
size and time are taken from the open file, so they describe the bytes that
were hashed.  With a :class:`~ftpclient.digestcache.DigestCache`, a file
whose status has not changed since its digest was kept is not read at all.

:class:`FileInfo` and :class:`Tree` are plain classes, not dataclasses: that
import alone costs an unchanged ``mirror`` about 10 ms at every start.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from ftpclient.datatypes import LocalError
from ftpclient.treehash import Hashed, ReadBuffer, hash_file, hash_files

if TYPE_CHECKING:
    from ftpclient.digestcache import DigestCache

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


def local_tree(
    root: str,
    digests: dict[str, str] | None = None,
    most: int | None = None,
    beside: Callable[[], object] | None = None,
    cache: DigestCache | None = None,
) -> Tree:
    """The local tree under ``root`` (links not followed); a missing root is an empty tree.

    With ``digests`` every regular file (of at most ``most`` bytes, if
    given) is hashed (:func:`~ftpclient.treehash.hash_files`, after the
    walk), its digest stored there by relative path; a file that cannot be
    read has none.  ``beside`` is called once any hashing helpers are
    started (threads must not be started before: see
    :mod:`ftpclient.treehash`), and only if there is a file to hash: a
    thread to work beside costs more than it saves when nothing is read.
    A folder that cannot be listed is left out, as ``os.walk`` does.  A
    file whose digest ``cache`` knows (of any size) is not read, and what
    is hashed is kept there.
    """
    if not os.path.isdir(root):
        if os.path.lexists(root):
            raise LocalError(f"not a folder: {root}")
        return Tree(exists=False)
    tree = Tree()
    found: list[tuple[str, os.DirEntry[str]]] = []
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
                found.append((relative, item))
            else:
                tree.others.add(relative)
    if digests is None:
        for relative, item in found:
            st = item.stat(follow_symlinks=False)
            tree.files[relative] = FileInfo(st.st_size, int(st.st_mtime))
        return tree
    before: dict[str, os.stat_result] = {}  # the status of each file to hash, taken before
    if cache is not None:
        found = _known(found, tree, digests, cache, before)
    hashed = hash_files([item.path for _, item in found], most, beside if found else None)
    for (relative, item), known in zip(found, hashed, strict=True):
        if known is None:
            st = item.stat(follow_symlinks=False)
            tree.files[relative] = FileInfo(st.st_size, int(st.st_mtime))
            continue
        size, mtime, digest = known
        tree.files[relative] = FileInfo(size, mtime)
        if digest is not None:
            digests[relative] = digest
            if cache is not None and relative in before:
                _keep(cache, relative, before[relative], known)
    return tree


def _known(
    found: list[tuple[str, os.DirEntry[str]]],
    tree: Tree,
    digests: dict[str, str],
    cache: DigestCache,
    before: dict[str, os.stat_result],
) -> list[tuple[str, os.DirEntry[str]]]:
    """Put the files ``cache`` knows into ``tree`` and ``digests``; the others, to hash.

    The status of each of those, taken here (one ``lstat``), goes into
    ``before``: a hashed file's digest is kept with the status it had before
    its bytes were read.
    """
    unknown = []
    for relative, item in found:
        try:
            st = item.stat(follow_symlinks=False)
        except OSError:
            unknown.append((relative, item))  # gone meanwhile: hash_files says so
            continue
        digest = cache.known(relative, st)
        if digest is None:
            unknown.append((relative, item))
            before[relative] = st
        else:
            tree.files[relative] = FileInfo(st.st_size, int(st.st_mtime))
            digests[relative] = digest
    return unknown


def _keep(cache: DigestCache, relative: str, st: os.stat_result, hashed: Hashed) -> None:
    """Keep a hashed file's digest with ``st``, its status before the read, if they agree."""
    size, mtime, digest = hashed
    if digest is not None and size == st.st_size and mtime == int(st.st_mtime):
        cache.remember(relative, st, digest)


def local_digest(root: str, cache: DigestCache | None = None) -> Digest:
    """A :data:`Digest` hashing files under the local folder ``root`` when asked.

    What it hashes is kept in ``cache``, if given.
    """

    def digest(relative: str) -> str | None:
        path = os.path.join(root, *relative.split("/"))
        try:
            st = os.lstat(path) if cache is not None else None
        except OSError:
            return None
        hashed = hash_file(path, ReadBuffer())
        if hashed is None:
            return None
        if st is not None and cache is not None:
            _keep(cache, relative, st, hashed)
        return hashed[2]

    return digest
