"""A cache of the SHA-256 of files the server has sent or received.

A download must end with the SHA-256 of the bytes; hashing a big file costs
as much CPU as sending it.  The digest of a file version is kept, keyed by
what changes whenever its content can have changed: device, inode, size,
modification and status-change times (``st_ctime`` cannot be set back by
anyone).  The cache is in memory only and bounded.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

__all__ = ["DigestCache", "version"]

Key = tuple[int, int, int, int, int]


def version(st: os.stat_result) -> Key:
    """What identifies one version of a file's content."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class DigestCache:
    """SHA-256 hex digests by file version, least recently used dropped first."""

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._items: OrderedDict[Key, str] = OrderedDict()

    def get(self, st: os.stat_result) -> str | None:
        """The digest of this file version, if known."""
        key = version(st)
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, st: os.stat_result, hexdigest: str) -> None:
        """Remember the digest of this file version."""
        with self._lock:
            self._items[version(st)] = hexdigest
            self._items.move_to_end(version(st))
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
