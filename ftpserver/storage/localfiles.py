"""The local backend's handles: the home's lock, a file open for reading, an upload.

* :class:`HomeAccount` is the per-home lock (``flock`` on the home folder,
  so it holds across threads and worker processes) and the quota ledger
  calls that go with it: a change of how many bytes the home holds is made
  and reported to the ledger under the lock, and a measurement of the home
  too, so the ledger's figures stay exact without the ledger ever touching
  a file.
* :class:`LocalReadHandle` is one version of a regular file, with its file
  descriptor for ``sendfile`` and its digest remembered in the
  :class:`~ftpserver.digests.DigestCache`.
* :class:`LocalUpload` receives a file into a temporary file in the target
  folder and renames it into place only when complete and verified.  A
  connection lost mid-upload saves what arrived as a *partial upload* (under
  the home's ``.ftp-partial`` folder, keyed by the virtual path) for ``put``
  with an offset to resume; every other failure removes the temporary file.
  An older file of the same name is never touched and nothing half-written
  is visible.
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

from ftpfiles.files import GuardedWriter, file_digest
from ftpproto.digest import Hasher, new_hasher
from ftpproto.handshake import Resume, upload_start
from ftpserver.digests import DigestCache, version
from ftpserver.fsops import file_size
from ftpserver.state.ledger import LaterLedger, QuotaLedger, Reservation, Unmeasured
from ftpserver.storage.base import AbortedOnExit, ClosedOnExit
from ftpserver.storage.deferred import collector
from ftpserver.storage.paths import is_temporary
from ftpserver.storage.temps import temp_name

__all__ = ["HomeAccount", "LocalReadHandle", "LocalUpload", "discard_upload", "disk_free"]

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


def disk_free(folder: str) -> int:
    """Bytes free for an unprivileged user on the filesystem of ``folder``."""
    fs = os.statvfs(folder)
    return fs.f_bavail * fs.f_frsize


def discard_upload(temp: str) -> None:
    """Remove the temporary file of an upload whose writer died (its reservation is gone)."""
    if is_temporary(os.path.basename(temp)):
        with contextlib.suppress(OSError):
            os.unlink(temp)


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
                if held:
                    self.ledger.record(self.user, self._measure())
                else:
                    with self.locked():
                        self.ledger.record(self.user, self._measure())
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


class LocalReadHandle(ClosedOnExit):
    """A regular file open for reading (see :class:`~ftpserver.storage.base.ReadHandle`)."""

    def __init__(self, fd: int, digests: DigestCache) -> None:
        self._fd = fd
        self._digests = digests
        self._before = os.fstat(fd)

    @property
    def size(self) -> int:
        return self._before.st_size

    @property
    def version(self) -> tuple[int, ...]:
        return version(self._before)

    def fileno(self) -> int | None:
        return self._fd

    def readinto(self, buffer: memoryview, /) -> int:
        return os.readv(self._fd, [buffer])

    def seek(self, offset: int, /) -> None:
        os.lseek(self._fd, offset, os.SEEK_SET)

    def changed(self) -> bool:
        # Writes change the size or st_mtime; st_ctime also moves when the file is
        # merely unlinked or replaced by a rename, which leaves this version intact.
        after = os.fstat(self._fd)
        before = self._before
        return (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns)

    def stored_digest(self) -> str | None:
        return self._digests.get(self._before, self._fd)

    def store_digest(self, hexdigest: str) -> None:
        self._digests.put(self._before, hexdigest, self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


class LocalUpload(AbortedOnExit):
    """A temporary file next to ``target`` that becomes ``target`` on :meth:`commit`.

    Use as a context manager.  Leaving the block without a commit removes the
    temporary file, or, if :attr:`keep_partial` is set and bytes arrived,
    saves them as the partial upload for ``target``.
    """

    def __init__(
        self,
        account: HomeAccount,
        digests: DigestCache,
        target: str,
        partial: str,
        mode: int,
        fsync: bool,
        owner: str = "",
    ) -> None:
        self.account = account
        self.digests = digests
        self.target = target
        self.partial = partial
        self.mode = mode
        self.fsync = fsync
        # named after the partial key and the owner: see ftpserver.storage.temps
        name = temp_name(os.path.basename(partial), owner)
        self.temp = os.path.join(os.path.dirname(target), name)
        self.keep_partial = False
        self.replaced: int | None = None  # the target's size, if the caller just looked
        self.reservation: Reservation | None = None
        self.writer: GuardedWriter | None = None
        self._later = False  # start() leaves the new temporary file to create()
        self._done = False

    @property
    def sink(self) -> GuardedWriter:
        assert self.writer is not None, "start() first"
        return self.writer

    def create_later(self) -> Callable[[], None]:
        """Have :meth:`start` (unless it resumes) leave the new temporary file to :meth:`create`.

        The pipelined uploads make it on a helper thread (:mod:`ftpserver.finishing`):
        on ext4, allocating the inode is the costliest step of a small upload.
        """
        self._later = True
        return self.create

    def create(self) -> None:
        """Make the new, empty temporary file (``O_EXCL``), unless it exists already."""
        if self.writer is None:
            flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_EXCL
            self.writer = GuardedWriter(os.open(self.temp, flags, self.mode))

    def start(self, size: int, resume: Resume | None) -> tuple[int, Hasher]:
        claimed = 0
        if resume is not None:
            with contextlib.suppress(FileNotFoundError):
                claimed = self.account.claim(self.partial, self.temp)
        if claimed:
            fd = os.open(self.temp, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, self.mode)
            self.writer = GuardedWriter(fd)
            with open(fd, "rb", buffering=0, closefd=False) as reader:
                offset, hasher = upload_start(
                    resume, size, claimed, lambda count: file_digest(reader, 0, count)[0]
                )
            if os.fstat(fd).st_size != offset:
                # Only when needed: on ext4, truncating a file makes its close flush it.
                os.ftruncate(fd, offset)
            os.lseek(fd, offset, os.SEEK_SET)
        else:  # a new, empty file (O_EXCL): nothing to take over, truncate or seek
            if not self._later:
                self.create()
            offset, hasher = upload_start(resume, size, 0, lambda count: new_hasher())
        self.keep_partial = offset > 0
        replaced = file_size(self.target) if self.replaced is None else self.replaced
        free = disk_free(os.path.dirname(self.temp))
        self.reservation = self.account.reserve(size, replaced, free, self.temp)
        self.keep_partial = True
        return offset, hasher

    def abort(self) -> None:
        self._finish(commit=False)

    def commit(self, hexdigest: str) -> None:
        """Flush, optionally fsync, and rename over the target; raise a write error seen.

        The committed file's digest is remembered, so its first download
        need not hash it again.
        """
        writer = self.sink
        if writer.error is not None:
            self.keep_partial = False
            raise writer.error
        if self.fsync:
            os.fsync(writer.fd)
        self._finish(commit=True, hexdigest=hexdigest)
        if os.path.lexists(self.partial):  # most uploads never had one: no lock for them
            with contextlib.suppress(FileNotFoundError):
                self.account.remove([self.partial])

    def _finish(self, commit: bool, hexdigest: str = "") -> None:
        if self._done:
            return
        self._done = True
        fd = self.writer.fd if self.writer is not None else -1
        # The reservation goes back in the same ledger step that counts the
        # file (settle(release=...)), or on its own if nothing is kept.
        reservation, self.reservation = self.reservation, None
        renamed = False  # then the temporary file is gone
        try:
            if commit:
                held, reservation = reservation, None
                st = os.fstat(fd)  # the version a rename keeps (size, time, inode)
                self.account.replace(
                    self.temp, self.target, enforce=True, release=held, size=st.st_size
                )
                renamed = True
                if hexdigest:
                    self.digests.put(st, hexdigest, fd)
            elif self.keep_partial and file_size(self.temp) > 0:
                os.makedirs(os.path.dirname(self.partial), exist_ok=True)
                held, reservation = reservation, None
                self.account.replace(self.temp, self.partial, enforce=False, release=held)
                renamed = True
        finally:
            if fd >= 0:
                os.close(fd)
            if not renamed:
                with contextlib.suppress(OSError):
                    os.unlink(self.temp)
            if reservation is not None:
                self.account.ledger.release(reservation)
