"""Digests of local files kept between runs, so an unchanged ``mirror -c`` reads no file.

The server keeps the digest of each file version it has hashed
(:mod:`ftpserver.digests`); this is the client's side of the same idea, for
the local tree of a ``mirror``.  A file's digest is trusted while its
device, inode, size, modification time and status-change time (``ctime``,
in nanoseconds) are all what they were when the digest was taken, as
git's index and borg's files cache do.  A write moves the modification
time to the present; setting that time back (``touch -d``, ``cp -p``)
moves ``ctime``, which no program can set.

A digest is kept only for a file whose modification time is at least
:data:`SETTLED_NS` older than the moment the cache was loaded (before any
file was looked at).  A later write then always shows a newer time, even on
a filesystem whose clock ticks coarsely.  Only a write that sets the
modification time back within the same clock tick as the recorded
``ctime`` could go unseen: ``mirror`` without ``-c`` trusts far less.
``mirror --rehash`` ignores the kept digests and hashes every file again.

One cache file per local root (by its real path) sits under
``$XDG_CACHE_HOME/ftpclient/digests`` (``~/.cache`` without it), written
whole through a temporary file and a rename, so readers never see half a
file.  It lists the files the last mirror of that root saw.  A file that
cannot be read or does not parse is an empty cache.  Writing it is best
effort: a mirror never fails for its cache.  Cache files unused for
:data:`FORGET_AFTER` seconds (a used one has its time set once a day) are
removed when another is written.
"""

from __future__ import annotations

import contextlib
import os
import struct
import time
import zlib
from collections.abc import Container

__all__ = ["FORGET_AFTER", "SETTLED_NS", "DigestCache", "cache_folder"]

SETTLED_NS = 1_000_000_000  # a file modified this recently is hashed again next time
FORGET_AFTER = 90 * 24 * 3600  # seconds: the cache file of a root not mirrored since goes
_TOUCH_AFTER = 24 * 3600  # seconds: a cache file used, and older than this, has its time set
_MAGIC = b"ftpclient digests 1\n"
_HEAD = struct.Struct("<I")  # length of the root's path
_ENTRY = struct.Struct("<QQqqqI32s")  # dev, inode, size, mtime ns, ctime ns, path length, digest

Key = tuple[int, int, int, int, int]


def _key(st: os.stat_result) -> Key:
    """What identifies one version of a local file's content."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def cache_folder() -> str:
    """``$XDG_CACHE_HOME/ftpclient/digests``, or ``~/.cache/ftpclient/digests``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "ftpclient", "digests")


class DigestCache:
    """The kept digests of the files under one local root, by relative ``/``-separated path."""

    __slots__ = ("_changed", "_entries", "_path", "_root", "_since", "_stale", "_trust")

    def __init__(self, root: str, trust: bool = True) -> None:
        """An empty cache for ``root``; ``trust=False`` answers nothing but still keeps."""
        self._root = os.path.realpath(root)
        # named by two checksums of the root (a file says whose it is, so a clash only
        # costs a rehash): hashlib's import takes 20 ms, BLAKE3's up to 9, zlib's 1
        encoded = os.fsencode(self._root)
        name = f"{zlib.crc32(encoded):08x}{zlib.adler32(encoded):08x}"
        self._path = os.path.join(cache_folder(), name)
        self._entries: dict[str, tuple[Key, bytes]] = {}
        self._since = time.time_ns()
        self._trust = trust
        self._changed = False
        self._stale = False  # the file is old enough to be touched, so it is not forgotten

    @property
    def path(self) -> str:
        """The cache file of this root."""
        return self._path

    @classmethod
    def load(cls, root: str, trust: bool = True) -> DigestCache:
        """The cache of ``root`` as last written; empty if there is none or it is damaged."""
        cache = cls(root, trust)
        try:
            with open(cache._path, "rb") as file:
                data = file.read()
                cache._stale = os.fstat(file.fileno()).st_mtime < time.time() - _TOUCH_AFTER
        except OSError:
            return cache
        try:
            cache._entries = cache._parse(data)
        except (ValueError, struct.error):
            cache._entries = {}
            cache._changed = True  # written again, whole
        return cache

    def _parse(self, data: bytes) -> dict[str, tuple[Key, bytes]]:
        """The entries of a cache file's bytes; ValueError if they are not this root's."""
        if not data.startswith(_MAGIC):
            raise ValueError("not a digest cache")
        offset = len(_MAGIC)
        (length,) = _HEAD.unpack_from(data, offset)
        offset += _HEAD.size
        if data[offset : offset + length] != os.fsencode(self._root):
            raise ValueError("another root's cache")
        offset += length
        entries: dict[str, tuple[Key, bytes]] = {}
        while offset < len(data):
            dev, ino, size, mtime, ctime, length, digest = _ENTRY.unpack_from(data, offset)
            offset += _ENTRY.size
            name = data[offset : offset + length]
            if len(name) != length:
                raise ValueError("cut short")
            offset += length
            entries[os.fsdecode(name)] = ((dev, ino, size, mtime, ctime), digest)
        return entries

    def known(self, relative: str, st: os.stat_result) -> str | None:
        """The kept digest of the file at ``relative`` whose status is ``st``; None if unknown."""
        entry = self._entries.get(relative)
        if not self._trust or entry is None or entry[0] != _key(st):
            return None
        return entry[1].hex()

    def remember(self, relative: str, st: os.stat_result, digest: str) -> None:
        """Keep ``digest`` for the file at ``relative`` as ``st`` shows it, if it has settled.

        ``st`` must have been taken before the bytes were hashed (or, for a
        download, after they were written and verified).
        """
        if st.st_mtime_ns >= self._since - SETTLED_NS:
            self.forget(relative)
            return
        entry = (_key(st), bytes.fromhex(digest))
        if self._entries.get(relative) != entry:
            self._entries[relative] = entry
            self._changed = True

    def forget(self, relative: str) -> None:
        """Drop what is kept for ``relative`` and everything under it."""
        if self._entries.pop(relative, None) is not None:
            self._changed = True
        prefix = relative + "/"
        under = [path for path in self._entries if path.startswith(prefix)]
        for path in under:
            del self._entries[path]
        self._changed = self._changed or bool(under)

    def keep_only(self, relatives: Container[str]) -> None:
        """Drop what is kept for files not among ``relatives`` (gone from the tree)."""
        gone = [path for path in self._entries if path not in relatives]
        for path in gone:
            del self._entries[path]
        self._changed = self._changed or bool(gone)

    def save(self) -> None:
        """Write the cache if it changed; a folder or file that cannot be written is let be."""
        if not self._changed:
            if self._stale:  # used: not to be forgotten
                with contextlib.suppress(OSError):
                    os.utime(self._path)
                self._stale = False
            return
        root = os.fsencode(self._root)
        parts = [_MAGIC, _HEAD.pack(len(root)), root]
        for relative, ((dev, ino, size, mtime, ctime), digest) in self._entries.items():
            name = os.fsencode(relative)
            parts.append(_ENTRY.pack(dev, ino, size, mtime, ctime, len(name), digest))
            parts.append(name)
        folder = os.path.dirname(self._path)
        temporary = f"{self._path}.new-{os.getpid()}-{time.monotonic_ns()}"
        with contextlib.suppress(OSError):
            os.makedirs(folder, mode=0o700, exist_ok=True)
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                with open(fd, "wb") as file:
                    file.write(b"".join(parts))
                os.replace(temporary, self._path)
            except OSError:
                os.unlink(temporary)
                raise
            self._changed = False
            _forget_old(folder)


def _forget_old(folder: str) -> None:
    """Remove the cache files in ``folder`` not written for :data:`FORGET_AFTER` seconds."""
    oldest = time.time() - FORGET_AFTER
    with contextlib.suppress(OSError), os.scandir(folder) as items:
        for item in items:
            with contextlib.suppress(OSError):
                if item.is_file(follow_symlinks=False) and item.stat().st_mtime < oldest:
                    os.unlink(item.path)
