"""Writing and hashing local files around a transfer, on the server and the client.

* :class:`GuardedWriter` writes received file data until the first error and
  then drops the rest, so the receiver still reads every announced byte (the
  stream stays in step) and reports the error afterwards.  It is a
  :class:`~ftpproto.splicing.SpliceSink`: the channel splices big transfers
  straight into its file.
* :func:`file_digest` hashes part of a file (a resume's prefix, a whole file).
* :class:`BackgroundDigest` does that in a helper thread beside ``sendfile``.
"""

from __future__ import annotations

import errno
import os
import threading
from typing import BinaryIO

from ftpproto.digest import Hasher, new_hasher
from ftpproto.splicing import hash_fd

__all__ = ["BackgroundDigest", "GuardedWriter", "file_digest"]


class GuardedWriter:
    """Writes to a file descriptor until the first error, then discards the rest.

    A receiver that cannot write (a full disk, say) must still read every
    announced byte to keep the stream in step; the error is kept in
    :attr:`error` for the caller to raise once the transfer is over.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.error: OSError | None = None

    def write(self, data: bytes | memoryview) -> None:
        """Write all of ``data``, unless an earlier write failed."""
        if self.error is not None:
            return
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view) :]
        except OSError as exc:
            self.error = exc

    def splice_from(self, pipe: int, count: int) -> int:
        """Move ``count`` bytes from ``pipe`` into the file with ``splice``; the bytes moved.

        Fewer than ``count`` leaves the rest in the pipe: the file does not
        support splicing (``EINVAL``; the caller writes the rest with
        :meth:`write`), or it failed, and :attr:`error` holds why.
        """
        moved = 0
        if self.error is not None:
            return moved
        try:
            while moved < count:
                step = os.splice(pipe, self.fd, count - moved)
                if not step:
                    break
                moved += step
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                self.error = exc
        return moved


def file_digest(
    fileobj: BinaryIO, offset: int, size: int, hasher: Hasher | None = None
) -> tuple[Hasher, int]:
    """The file digest (or ``hasher`` continued) over ``size`` bytes of a file from ``offset``.

    Returns the hasher and the count read (less than ``size`` if the file is
    shorter); the file position is left alone.
    """
    hasher = hasher if hasher is not None else new_hasher()
    return hasher, hash_fd(hasher, fileobj.fileno(), offset, size)


class BackgroundDigest:
    """:func:`file_digest` in a helper thread, while this thread sends the file.

    The digest and ``os.preadv`` release the GIL, so the digest of a big
    file costs no extra time next to ``sendfile``.  :meth:`result` waits.
    """

    def __init__(self, fileobj: BinaryIO, offset: int, size: int, hasher: Hasher) -> None:
        self._count = 0
        self.hasher = hasher

        def run() -> None:
            try:
                self._count = file_digest(fileobj, offset, size, hasher)[1]
            except (OSError, ValueError):
                self._count = -1  # unreadable: the caller sees fewer bytes than asked

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def result(self) -> tuple[Hasher, int]:
        """The hasher and the bytes it read (fewer than asked if the file shrank)."""
        self._thread.join()
        return self.hasher, self._count
