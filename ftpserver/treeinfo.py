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
otherwise (a storage with ``files_in``, the local one, opens them by name in
each folder resolved once); ``-`` means not asked, not a file, or the file changed while it
was read.  The work per request is bounded: at most :data:`MAX_ENTRIES`
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
from ftpserver.storage.base import ReadHandle, Storage
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


@runtime_checkable
class _OpensByName(Protocol):
    def files_in(self, virtual: str) -> AbstractContextManager[Callable[[str], ReadHandle]]: ...


def _opener(
    storage: Storage, folder: str, needed: bool
) -> AbstractContextManager[Callable[[str], ReadHandle]]:
    """Opens a file of ``folder`` by name: the storage's ``files_in``, or ``open_read``."""
    if needed and isinstance(storage, _OpensByName):
        return storage.files_in(folder)
    return contextlib.nullcontext(lambda name: storage.open_read(posixpath.join(folder, name)))


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
        entries = sorted(storage.listdir(folder))
        hashing = digests and any(e.kind == "file" for e in entries)
        with _opener(storage, folder, hashing) as by_name:
            for name, kind, size, mtime in entries:
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
                    digest = _digest(functools.partial(by_name, name), size)
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
