"""A session's helper thread for commits that wait on a remote store (docs/PROTOCOL.md, 5.4).

A pipelined upload to an object store (S3) is committed by a request to the
store; :class:`Finisher` runs those commits on one more thread, in the
order they were asked, while the session's thread reads and hashes the next
file.  Jobs marked ``inline`` (a local disk's commit: a rename, a few
system calls) run on the session's thread once the jobs before them are
done: handing them to another thread costs more than they do (each hand-over
and each system call passes the interpreter lock between the threads;
measured in docs/PERFORMANCE.md).  Nothing about a file's outcome changes:
its ``send`` is answered once its commit is done, in request order
(:mod:`ftpserver.batch` owes them to the channel); the thread is made at the
first job that needs it and ends with the session.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from queue import SimpleQueue

from ftpserver.storage.base import UploadHandle

__all__ = ["Finisher", "Job"]


class Job:
    """One step for the helper thread; :meth:`Finisher.result` waits for it."""

    __slots__ = ("done", "error", "work")

    def __init__(self, work: Callable[[], None]) -> None:
        self.work: Callable[[], None] | None = work
        self.done = False
        self.error: BaseException | None = None


class Finisher:
    """One helper thread per session, running jobs one at a time in the order submitted.

    Lighter than a ``ThreadPoolExecutor`` (a job per file): a job
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

    def submit(self, work: Callable[[], None], inline: bool = False) -> Job:
        """Run ``work`` after every job submitted before it.

        With ``inline``, or where no thread can be started (a task limit),
        on this thread, now (after the jobs before it).
        """
        if inline:
            self.drain()
            job = self._last = Job(work)
            _do(job)
            return job
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
        """Commit ``upload`` (on the helper thread if it waits on a remote store).

        A failed commit gives the upload up.
        """
        return self.submit(lambda: _commit(upload, hexdigest), inline=not upload.remote_commit)

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


def _commit(upload: UploadHandle, hexdigest: str) -> None:
    try:
        upload.commit(hexdigest)
    except BaseException:
        upload.abort()
        raise
