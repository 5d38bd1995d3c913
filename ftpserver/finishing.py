"""A session's helper thread for the disk side of pipelined uploads (docs/PROTOCOL.md, 5.4).

Receiving a small file costs the session's thread less than creating its
temporary file and renaming it into place (inode allocation, the rename,
the digest's extended attribute, the home's lock and the quota ledger).
:class:`Finisher` runs those steps on one more thread, in the order they
were asked: at ``offer`` the creation of the temporary file (where the
storage can leave it for later: :func:`create_later`; the checks of the
path and the quota reservation stay on the session's thread, in order),
and after the data :meth:`~ftpserver.storage.base.UploadHandle.commit`,
while the session's thread reads and hashes the next file (the
interpreter lock is released in system calls and in hashing).  Nothing
about a file's outcome changes: its ``offer`` is answered once its file
exists, its ``send`` once its commit is done, in request order
(:mod:`ftpserver.batch` owes them to the channel); the thread is made at
the first job and ends with the session.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TypeVar

from ftpserver.storage.base import UploadHandle

__all__ = ["Finisher", "create_later"]

T = TypeVar("T")


class Finisher:
    """One helper thread per session, running jobs one at a time in the order submitted."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._last: Future[object] | None = None

    def submit(self, job: Callable[[], T]) -> Future[T]:
        """Run ``job`` after every job submitted before it; its future."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="upload-finisher")
        future = self._pool.submit(job)
        self._last = future  # type: ignore[assignment]
        return future

    def commit(self, upload: UploadHandle, hexdigest: str) -> Future[None]:
        """Commit ``upload`` on the helper thread; a failed commit gives the upload up."""
        return self.submit(lambda: _commit(upload, hexdigest))

    def drain(self) -> None:
        """Wait until every job submitted so far is done (their outcomes stay in their futures)."""
        last = self._last
        if last is not None and not last.done():
            wait([last])

    def close(self) -> None:
        """Finish the jobs submitted and end the thread."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


def create_later(upload: UploadHandle) -> Callable[[], None] | None:
    """Where the storage can, leave ``upload``'s file to be made later; the function that makes it.

    Call it before ``upload.start()``; that then reserves the space but
    makes no file, and the function returned (run once, on any thread,
    before the data) does.  None: the storage makes its file at start.
    """
    later = getattr(upload, "create_later", None)  # LocalUpload's (one system call worth moving)
    return later() if later is not None else None


def _commit(upload: UploadHandle, hexdigest: str) -> None:
    try:
        upload.commit(hexdigest)
    except BaseException:
        upload.abort()
        raise
