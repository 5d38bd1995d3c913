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

import threading
from collections.abc import Callable
from queue import SimpleQueue

from ftpserver.storage.base import UploadHandle

__all__ = ["Finisher", "Job", "create_later"]


class Job:
    """One step for the helper thread; :meth:`Finisher.result` waits for it."""

    __slots__ = ("done", "error", "work")

    def __init__(self, work: Callable[[], None]) -> None:
        self.work: Callable[[], None] | None = work
        self.done = False
        self.error: BaseException | None = None


class Finisher:
    """One helper thread per session, running jobs one at a time in the order submitted.

    Lighter than a ``ThreadPoolExecutor`` (a job is two per file): a job
    is a plain object in a ``SimpleQueue``, and the thread wakes the
    session's only when it waits.
    """

    def __init__(self) -> None:
        self._jobs: SimpleQueue[Job | None] = SimpleQueue()
        self._thread: threading.Thread | None = None
        self._changed = threading.Condition()
        self._waiting = False
        self._last: Job | None = None
        self._inline = False  # no thread could be started: jobs run as they are submitted

    def submit(self, work: Callable[[], None]) -> Job:
        """Run ``work`` after every job submitted before it.

        Where no thread can be started (a task limit), on this one, now.
        """
        job = self._last = Job(work)
        if self._thread is None and not self._inline:
            thread = threading.Thread(target=self._run, name="upload-finisher", daemon=True)
            try:
                thread.start()
            except RuntimeError:  # "can't start new thread"
                self._inline = True
            else:
                self._thread = thread
        if self._inline:
            _do(job)
        else:
            self._jobs.put(job)
        return job

    def commit(self, upload: UploadHandle, hexdigest: str) -> Job:
        """Commit ``upload`` on the helper thread; a failed commit gives the upload up."""
        return self.submit(lambda: _commit(upload, hexdigest))

    def result(self, job: Job) -> None:
        """Wait for ``job``; raise what it raised."""
        self._wait(job)
        if job.error is not None:
            raise job.error

    def drain(self) -> None:
        """Wait until every job submitted so far is done (their outcomes stay with them)."""
        if self._last is not None:
            self._wait(self._last)

    def _wait(self, job: Job) -> None:
        if not job.done:
            with self._changed:
                self._waiting = True
                while not job.done:
                    self._changed.wait(1.0)
                self._waiting = False

    def close(self) -> None:
        """Finish the jobs submitted and end the thread."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._jobs.put(None)
            thread.join()

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            _do(job)
            if self._waiting:
                with self._changed:
                    self._changed.notify_all()


def _do(job: Job) -> None:
    try:
        assert job.work is not None
        job.work()
    except BaseException as exc:  # kept for the session's thread to raise
        job.error = exc
    job.work = None
    job.done = True


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
