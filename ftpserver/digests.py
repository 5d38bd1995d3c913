"""A cache of the BLAKE3 digest of files the server has sent or received.

A download must end with the digest of the bytes, and hashing a big file
costs more CPU than sending it.  The digest of a file version is kept in
memory (bounded), and also on the file itself as the extended attribute
``user.ftpserver.blake3`` (where the filesystem has them), so it survives
restarts (where ``os.getxattr``/``os.setxattr`` exist: checked once, when a
cache is made; elsewhere, macOS for one, only the memory is used).  The
attribute is 49 bytes (a version byte, the size, the modification time
and the raw digest), small enough to stay inside an ext4 inode of 256
bytes: the text form earlier versions wrote (``SIZE:MTIME_NS:HEX``, 90
bytes) took a 4 KiB attribute block per file, and is still read.  A
version is identified by device, inode, size and modification time; a
write changes the size or the modification time.  A stale entry can only
make a download fail its digest check on the client, never pass wrong data
as good.
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
from collections import OrderedDict

from ftpproto.digest import NAME, is_hexdigest

__all__ = ["XATTR", "DigestCache", "version"]

XATTR = f"user.ftpserver.{NAME}"
Key = tuple[int, int, int, int]


def version(st: os.stat_result) -> Key:
    """What identifies one version of a file's content."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


_PACKED = struct.Struct("<BQq32s")  # version 1, size, modification time (ns), digest
_PACKED_VERSION = 1


def _stamp(st: os.stat_result, hexdigest: str) -> bytes:
    return _PACKED.pack(_PACKED_VERSION, st.st_size, st.st_mtime_ns, bytes.fromhex(hexdigest))


def _read_stamp(stamp: bytes) -> tuple[int, int, str] | None:
    """``(size, mtime_ns, hexdigest)`` of an attribute's value, packed or text; None if neither."""
    if len(stamp) == _PACKED.size and stamp[0] == _PACKED_VERSION:
        _, size, mtime, raw = _PACKED.unpack(stamp)
        return size, mtime, raw.hex()
    size_text, _, rest = stamp.partition(b":")  # the text form of earlier versions
    mtime_text, _, hexdigest = rest.partition(b":")
    try:
        return int(size_text), int(mtime_text), hexdigest.decode("ascii")
    except (ValueError, UnicodeDecodeError):
        return None


class DigestCache:
    """Hex digests by file version, least recently used dropped first."""

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._items: OrderedDict[Key, str] = OrderedDict()
        self.xattrs = hasattr(os, "getxattr") and hasattr(os, "setxattr")

    def get(self, st: os.stat_result, fd: int | None = None) -> str | None:
        """The digest of this file version, from memory or the open file's attribute."""
        key = version(st)
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                return found
        if fd is None or not self.xattrs:
            return None
        try:
            stamp = os.getxattr(fd, XATTR)
        except OSError:
            return None
        stamped = _read_stamp(stamp)
        if stamped is None or stamped[:2] != (st.st_size, st.st_mtime_ns):
            return None
        text = stamped[2]
        if not is_hexdigest(text):
            return None
        self._remember(key, text)
        return text

    def put(self, st: os.stat_result, hexdigest: str, fd: int | None = None) -> None:
        """Remember the digest of this file version (and stamp the open file with it)."""
        self._remember(version(st), hexdigest)
        if fd is not None and self.xattrs:
            with contextlib.suppress(OSError):
                os.setxattr(fd, XATTR, _stamp(st, hexdigest))

    def _remember(self, key: Key, hexdigest: str) -> None:
        with self._lock:
            self._items[key] = hexdigest
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
