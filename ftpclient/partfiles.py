"""The local side of a download: the ``.part`` file and where the file goes.

A download is written to ``<local>.part`` (locked, so two downloads into
the same file cannot mix) and renamed into place only once verified; both
:meth:`~ftpclient.client.FileTransferClient.get` and the pipelined
downloads (:mod:`ftpclient.pipelined`) use these helpers.
"""

from __future__ import annotations

import errno
import fcntl
import os
import posixpath

from ftpclient.datatypes import LocalError

__all__ = ["PART_SUFFIX", "local_error", "local_target", "names", "open_part"]

PART_SUFFIX = ".part"


def open_part(part: str, offset: int) -> int:
    """Open and lock the ``.part`` file, cut to ``offset`` bytes and positioned there.

    The lock makes a second download into the same file fail at once rather
    than mix its bytes into this one (or truncate the file under it).
    """
    while True:
        fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise BlockingIOError(errno.EWOULDBLOCK, "another download is writing") from None
            st = os.fstat(fd)
            if not names(part, st):
                os.close(fd)  # renamed into place by the download that held the lock
                continue
            if st.st_size != offset:
                # Only when needed: on ext4, truncating a file makes its close flush it.
                os.ftruncate(fd, offset)
            os.lseek(fd, offset, os.SEEK_SET)
        except BaseException:
            os.close(fd)
            raise
        return fd


def names(path: str, st: os.stat_result) -> bool:
    """Whether ``path`` is still the file whose status is ``st``."""
    try:
        return os.path.samestat(st, os.stat(path))
    except FileNotFoundError:
        return False


def local_error(exc: OSError, path: str) -> LocalError:
    """A :class:`LocalError` that names the local ``path`` ``exc`` was about."""
    return LocalError(f"{exc.strerror or exc}: {path}")


def local_target(local: str | None, remote: str) -> str:
    """Where a download goes: ``local``, or inside it if it is a folder."""
    name = posixpath.basename(remote.rstrip("/")) or "download"
    if not local:
        return name
    if os.path.isdir(local):
        return os.path.join(local, name)
    return local
