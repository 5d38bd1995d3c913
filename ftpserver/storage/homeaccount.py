"""A local home's lock and the quota ledger calls made under it.

:class:`HomeAccount` is the per-home lock (``flock`` on the home folder, so
it holds across threads and worker processes; a lock per home in each
process for its threads) and the quota ledger calls that go with it: a
change of how many bytes the home holds is made and reported to the ledger
under the lock, and a measurement of the home too, so the ledger's figures
stay exact without the ledger ever touching a file.  Used by the local
backend's uploads (:mod:`ftpserver.storage.localfiles`) and by the S3
backend's staging folder.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

from ftpserver.fsops import file_size
from ftpserver.state.ledger import LaterLedger, QuotaLedger, Reservation, Unmeasured
from ftpserver.storage.deferred import collector

__all__ = ["HomeAccount"]

log = logging.getLogger("ftpserver")
T = TypeVar("T")
_ATTEMPTS = 3  # a reload may forget the figures again between a measurement and the retry


_NO_FLOCK = {errno.EBADF, errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL}
_locks_lock = threading.Lock()
_locks: dict[str, threading.Lock] = {}
_warned: set[str] = set()


def _thread_lock(root: str) -> threading.Lock:
    """This process's lock for the home ``root``."""
    lock = _locks.get(root)  # once made, a home's lock is never replaced
    if lock is not None:
        return lock
    with _locks_lock:
        return _locks.setdefault(root, threading.Lock())


def _warn_no_flock(root: str, exc: OSError) -> None:
    with _locks_lock:
        if root in _warned:
            return
        _warned.add(root)
    log.warning(
        "no flock on %s (%s): quota figures are exact only within one worker process",
        root,
        exc.strerror,
    )


class HomeAccount:
    """One user's home: its lock, and the quota ledger calls made with it."""

    def __init__(
        self,
        ledger: QuotaLedger,
        user: str,
        quota: int | None,
        root: str,
        measure: Callable[[], int],
    ) -> None:
        self.ledger = ledger
        # A runtime protocol check walks the class every time: once here, not per upload.
        self._later = ledger if isinstance(ledger, LaterLedger) else None
        self.user = user
        self.quota = quota
        self.root = root
        self._measure = measure

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the home's lock (not re-entrant: never nest it).

        A lock per home in this process, then ``flock`` on the home folder
        for the other worker processes.  Where the filesystem has no
        ``flock`` on folders (NFS emulates it with write locks) only the
        first holds, and that is logged once.
        """
        with _thread_lock(self.root):
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except OSError as exc:
                    if exc.errno not in _NO_FLOCK:
                        raise
                    _warn_no_flock(self.root, exc)
                yield
            finally:
                os.close(fd)  # closing the only descriptor of the lock releases it

    def ask(self, call: Callable[[], T], held: bool = False) -> T:
        """``call()`` on the ledger; if it has no figures, measure the home and try again.

        ``held`` says the caller holds the home's lock already.
        """
        for attempt in range(_ATTEMPTS):
            try:
                return call()
            except Unmeasured:
                if attempt == _ATTEMPTS - 1:
                    raise
                # first: a measurement recorded meanwhile by another session wins (see record)
                with contextlib.nullcontext() if held else self.locked():
                    self.ledger.record(self.user, self._measure(), first=True)
        raise AssertionError("unreachable")

    def reserve(self, size: int, replaced: int, free: int, temp: str) -> Reservation:
        """Reserve ``size`` bytes for an upload over ``replaced`` ones (quota and ``free`` space).

        ``temp`` names the upload's temporary file (``""`` for none) for the ledger.
        Inside :func:`~ftpserver.storage.deferred.collecting`, with a ledger
        far away, the ledger's answer is checked by the confirmation collected.
        """

        def now() -> Reservation:
            return self.ask(
                lambda: self.ledger.reserve(self.user, self.quota, size, replaced, free, temp)
            )

        confirms = collector()
        later = self._later
        if confirms is None or later is None:
            return now()
        # collecting (ftpserver.storage.deferred): asked now, the answer checked later
        answer = later.reserve_later(self.user, self.quota, size, replaced, free, temp)
        reservation = Reservation.asked(self.user, size, replaced, temp)

        def confirm() -> None:
            try:
                try:
                    answer()
                except Unmeasured:  # the home is measured now, and the ledger asked again
                    now()
            except BaseException:
                reservation.quota_bytes = reservation.disk_bytes = 0  # nothing is held
                raise

        confirms.append(confirm)
        return reservation

    def settle(
        self, growth: int, limit: int | None = None, release: Reservation | None = None
    ) -> None:
        """Report ``growth`` bytes to the ledger; the caller holds the home's lock."""
        self.ask(lambda: self.ledger.settle(self.user, growth, limit, release), held=True)

    def replace(
        self,
        source: str,
        target: str,
        enforce: bool,
        release: Reservation | None,
        size: int | None = None,
    ) -> None:
        """Rename the uncounted ``source`` over ``target``, counting the size change exactly.

        With ``enforce`` (a finished upload) a growth over the quota is
        refused with QUOTA_EXCEEDED and nothing is renamed: the reservation
        made at ``ready`` can fall short when the file it was to replace was
        renamed or removed meanwhile.  ``release`` is given back in the same
        ledger step, whatever the outcome.  ``size`` is the source's, when
        the caller has it open (no one else writes an uncounted file).
        """
        with self.locked():
            old = file_size(target)
            growth = (file_size(source) if size is None else size) - old
            # A growth within the reservation was counted against the quota at ready.
            covered = release is not None and growth <= release.quota_bytes
            self.settle(growth, self.quota if enforce and not covered else None, release)
            try:
                os.replace(source, target)
            except OSError:
                self.settle(-growth)
                raise

    def claim(self, counted: str, temp: str) -> int:
        """Rename a counted file (a kept partial upload) to the uncounted ``temp``; its size.

        Raises FileNotFoundError if there is none.
        """
        with self.locked():
            size = file_size(counted)
            os.rename(counted, temp)
            self.settle(-size)
            return size

    def rename_over(self, source: str, target: str) -> None:
        """Rename ``source`` over ``target`` in one ``rename(2)``; what it replaced stops counting.

        An existing file (or symlink, never followed) at ``target`` is
        replaced atomically and its bytes are reported freed in the same
        locked step; two names of one file are left as they are, as
        ``rename(2)`` does.
        """
        with self.locked():
            with contextlib.suppress(FileNotFoundError):
                if os.path.samestat(os.lstat(source), os.lstat(target)):
                    return
            replaced = file_size(target)
            os.rename(source, target)
            if replaced:
                self.settle(-replaced)

    def remove(self, paths: list[str]) -> int:
        """Unlink files or symlinks (never followed) in one step; the bytes freed.

        Stops at the first error, after counting what went.
        """
        freed = 0
        with self.locked():
            try:
                for path in paths:
                    size = file_size(path)
                    os.unlink(path)
                    freed += size
            finally:
                if freed:
                    self.settle(-freed)
        return freed
