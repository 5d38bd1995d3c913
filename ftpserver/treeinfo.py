"""The ``tree`` request: every file and folder under a folder in one answer.

``mirror`` compares two trees.  Asking for each remote file with ``stat``
would cost a round trip per file; ``tree PATH [blake3]`` answers with the
whole tree instead, streamed in batches like ``ls``::

    C: FileTransfer|tree|<path>[|blake3]
    S: FileTransfer|tree|entry|<kind>|<relative path>|<size>|<mtime>|<blake3 or ->
    ...                                              (parents before what they hold)
    S: FileTransfer|tree|ok|<count>

Symlinks are listed as ``link`` and never followed, so the walk stays
inside the tree.  With ``blake3`` each regular file's digest comes from the
storage's digest cache where known and is computed (and remembered)
otherwise; ``-`` means not asked, not a file, or the file changed while it
was read.  A storage with ``tree_folder`` (the local one) opens each folder
once, lists it through that, answers from memory the digests it remembers
for the versions listed without opening those files, and opens the others
by name in the open folder.  The work per request is bounded: at most :data:`MAX_ENTRIES`
entries and :data:`MAX_DEPTH` levels, else the answer ends in a ``400``
error after what was sent (mirror a subfolder instead).  A batch goes out
when full or after a second of hashing, so the client hears from a long
walk before its read timeout.  The walk checks
between files whether the session is being closed.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import posixpath
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import NamedTuple, Protocol, runtime_checkable

from ftpproto.channel import Channel
from ftpproto.errors import ErrorCode, ProtocolError
from ftpproto.messages import Message, ok
from ftpserver.storage.base import Entry, ReadHandle, Storage
from ftpserver.transfers import handle_digest

__all__ = ["MAX_DEPTH", "MAX_ENTRIES", "TreeItem", "send_tree", "walk_tree"]

MAX_ENTRIES = 200_000
MAX_DEPTH = 64
BATCH = 256
FLUSH_AFTER = 1.0  # seconds: a batch is sent early rather than keep the client waiting
NO_DIGEST = "-"


class TreeItem(NamedTuple):
    """One entry of a tree: ``path`` is relative to the tree's root, ``/``-separated."""

    kind: str
    path: str
    size: int
    mtime: int
    blake3: str


def _digest(open_file: Callable[[], ReadHandle], size: int) -> str:
    """The digest of the file ``open_file`` opens if it still has ``size`` bytes, else ``-``."""
    try:
        with open_file() as source:
            if source.size != size:
                return NO_DIGEST
            return handle_digest(source)
    except ProtocolError:
        return NO_DIGEST  # no longer a regular file
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ELOOP):
            return NO_DIGEST  # gone meanwhile
        raise


class _Folder(Protocol):
    """One folder of a tree: its entries, digests known without reading, files by name."""

    def entries(self) -> list[Entry]: ...
    def known_digest(self, name: str) -> str | None: ...
    def open(self, name: str) -> ReadHandle: ...


@runtime_checkable
class _OpensFolders(Protocol):
    def tree_folder(self, virtual: str) -> AbstractContextManager[_Folder]: ...


class _StorageFolder:
    """A folder of any storage, through its usual requests."""

    def __init__(self, storage: Storage, folder: str) -> None:
        self.storage = storage
        self.folder = folder

    def entries(self) -> list[Entry]:
        return list(self.storage.listdir(self.folder))

    def known_digest(self, name: str) -> str | None:
        return None  # the file's handle knows (handle_digest)

    def open(self, name: str) -> ReadHandle:
        return self.storage.open_read(posixpath.join(self.folder, name))


def _folder(storage: Storage, folder: str) -> AbstractContextManager[_Folder]:
    """The folder ``folder``: the storage's ``tree_folder``, or its usual requests."""
    if isinstance(storage, _OpensFolders):
        return storage.tree_folder(folder)
    return contextlib.nullcontext(_StorageFolder(storage, folder))


def walk_tree(
    storage: Storage,
    root: str,
    digests: bool,
    alive: Callable[[], None] = lambda: None,
    limit: int | None = None,
) -> Iterator[TreeItem]:
    """The entries under the virtual folder ``root``, each folder before its contents.

    ``alive`` is called before each file is hashed and raises to stop the
    walk.  Raises ``ProtocolError`` ``412`` if ``root`` is not a folder and
    ``400`` past ``limit`` (default :data:`MAX_ENTRIES`) entries or :data:`MAX_DEPTH` levels.
    """
    if storage.stat(root).kind != "dir":
        raise ProtocolError(ErrorCode.NOT_DIRECTORY, f"not a folder: {root}")
    limit = MAX_ENTRIES if limit is None else limit
    count = 0
    pending: list[tuple[str, int]] = [("", 0)]
    while pending:
        relative, depth = pending.pop()
        folder = posixpath.join(root, relative) if relative else root
        children: list[tuple[str, int]] = []
        with _folder(storage, folder) as files:
            for name, kind, size, mtime in sorted(files.entries()):
                count += 1
                if count > limit:
                    raise ProtocolError(
                        ErrorCode.BAD_REQUEST,
                        f"tree too big: more than {limit} entries under {root} (use a subfolder)",
                    )
                path = posixpath.join(relative, name) if relative else name
                digest = NO_DIGEST
                if kind == "file" and digests:
                    alive()
                    digest = files.known_digest(name) or _digest(
                        functools.partial(files.open, name), size
                    )
                elif kind == "dir":
                    if depth + 1 >= MAX_DEPTH:
                        raise ProtocolError(
                            ErrorCode.BAD_REQUEST,
                            f"tree too deep: over {MAX_DEPTH} levels under {root}",
                        )
                    children.append((path, depth + 1))
                yield TreeItem(kind, path, size, mtime, digest)
        pending.extend(reversed(children))


def send_tree(
    channel: Channel,
    storage: Storage,
    path: str,
    digests: bool,
    alive: Callable[[], None] = lambda: None,
) -> int:
    """Answer ``tree``: the entries in batches, then ``tree|ok|COUNT``; returns the count."""
    batch: list[Message] = []
    count = 0
    sent_at = time.monotonic()
    for item in walk_tree(storage, storage.virtual(path), digests, alive):
        fields = (item.kind, item.path, str(item.size), str(item.mtime), item.blake3)
        batch.append(Message("tree", ("entry", *fields)))
        count += 1
        # full batches, and whatever is ready each second while big files are hashed
        if len(batch) == BATCH or time.monotonic() - sent_at > FLUSH_AFTER:
            channel.send(*batch)
            batch.clear()
            sent_at = time.monotonic()
    channel.send(*batch, ok("tree", str(count)))
    return count
