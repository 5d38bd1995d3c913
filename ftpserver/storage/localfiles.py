"""The local backend's handles: a file open for reading, an upload.

* :class:`~ftpserver.storage.homeaccount.HomeAccount` (its own module) is
  the per-home lock and the quota ledger calls made under it.
* :class:`LocalReadHandle` is one version of a regular file, with its file
  descriptor for ``sendfile`` and its digest remembered in the
  :class:`~ftpserver.digests.DigestCache`.
* :class:`LocalFolder` is one folder opened once for a ``tree`` answer: its
  listing, the digests remembered for the versions listed, its files
  opened by name.
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
import logging
import os
import stat

from ftpfiles.files import GuardedWriter, file_digest
from ftpproto.digest import Hasher, new_hasher
from ftpproto.errors import ErrorCode, ProtocolError
from ftpproto.handshake import Resume, upload_start
from ftpserver.digests import DigestCache, version
from ftpserver.fsops import file_size, scan_entries
from ftpserver.state.ledger import Reservation
from ftpserver.storage.base import AbortedOnExit, ClosedOnExit, Entry
from ftpserver.storage.homeaccount import HomeAccount
from ftpserver.storage.paths import is_temporary
from ftpserver.storage.temps import temp_name

__all__ = ["LocalFolder", "LocalReadHandle", "LocalUpload", "discard_upload", "disk_free"]

log = logging.getLogger("ftpserver")


def disk_free(folder: str) -> int:
    """Bytes free for an unprivileged user on the filesystem of ``folder``."""
    fs = os.statvfs(folder)
    return fs.f_bavail * fs.f_frsize


def discard_upload(temp: str) -> None:
    """Remove the temporary file of an upload whose writer died (its reservation is gone)."""
    if is_temporary(os.path.basename(temp)):
        with contextlib.suppress(OSError):
            os.unlink(temp)


class LocalReadHandle(ClosedOnExit):
    """A regular file open for reading (see :class:`~ftpserver.storage.base.ReadHandle`)."""

    def __init__(self, fd: int, st: os.stat_result, digests: DigestCache) -> None:
        """``st`` is the open file's status (``os.fstat(fd)``), taken by the opener."""
        self._fd = fd
        self._digests = digests
        self._before = st

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


class LocalFolder:
    """A folder open for a tree's listing and digests (:mod:`ftpserver.treeinfo`).

    ``fd`` is the folder, opened after the jail checked its path; it is the
    caller's to close.  Names are opened relative to it and never followed
    if they are links (``ELOOP``), so they cannot lead anywhere else.
    """

    def __init__(self, fd: int, digests: DigestCache) -> None:
        self._fd = fd
        self._digests = digests
        self._listed: dict[str, os.stat_result] = {}  # regular files, as listed

    def entries(self) -> list[Entry]:
        """The folder's entries (links not followed, the server's own files hidden)."""
        found = []
        for item, st in scan_entries(self._fd):
            if item.kind == "file":
                self._listed[item.name] = st
            found.append(item)
        return found

    def known_digest(self, name: str) -> str | None:
        """The digest remembered in memory for the version of ``name`` listed; None if none.

        No file is opened: a tree whose digests are known costs no more
        system calls than its listing.
        """
        st = self._listed.get(name)
        return None if st is None else self._digests.get(st)

    def open(self, name: str) -> LocalReadHandle:
        """Open the regular file ``name`` of this folder for reading."""
        if "/" in name or name in (".", ".."):
            raise ProtocolError(ErrorCode.BAD_PATH, f"not a name: {name}")
        flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW
        fd = os.open(name, flags, dir_fd=self._fd)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise ProtocolError(ErrorCode.BAD_PATH, f"not a regular file: {name}")
        return LocalReadHandle(fd, st, self._digests)


class LocalUpload(AbortedOnExit):
    """A temporary file next to ``target`` that becomes ``target`` on :meth:`commit`.

    Use as a context manager.  Leaving the block without a commit removes the
    temporary file, or, if :attr:`keep_partial` is set and bytes arrived,
    saves them as the partial upload for ``target``.
    """

    remote_commit = False  # see UploadHandle

    def __init__(
        self,
        account: HomeAccount,
        digests: DigestCache,
        target: str,
        partial: str,
        mode: int,
        fsync: bool,
        owner: str,
        replaced: int,
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
        self.replaced = replaced  # the size of the file it will replace (0: none), as looked at
        self.reservation: Reservation | None = None
        self.writer: GuardedWriter | None = None
        self._done = False

    @property
    def sink(self) -> GuardedWriter:
        assert self.writer is not None, "start() first"
        return self.writer

    def create(self) -> None:
        """Make the new, empty temporary file (``O_EXCL``)."""
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
            self.create()
            offset, hasher = upload_start(resume, size, 0, lambda count: new_hasher())
        self.keep_partial = offset > 0
        free = disk_free(os.path.dirname(self.temp))
        self.reservation = self.account.reserve(size, self.replaced, free, self.temp)
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
