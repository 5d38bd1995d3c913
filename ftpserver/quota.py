"""Per-user disk usage, quotas and upload reservations, shared by every session.

One :class:`QuotaBook` per server owns the figures: for each user the bytes of
regular files in the home (saved partial uploads included) and the bytes
reserved by uploads in progress.  Every operation that changes how many bytes
a home holds (replacing a file, removing one, saving or claiming a partial
upload) runs through the book under its lock, measuring the real sizes at
that moment, so the figures stay exact however many sessions a user has.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
import time
from dataclasses import dataclass

from ftpproto.errors import ErrorCode, ProtocolError
from ftpproto.units import format_size
from ftpserver.jail import is_temporary
from ftpserver.users import User

__all__ = ["QuotaBook", "Reservation", "Usage", "file_size"]


@dataclass
class _Account:
    used: int
    reserved: int = 0


@dataclass(frozen=True)
class Usage:
    """A user's figures: bytes used, reserved by uploads, the quota, and what is free."""

    used: int
    reserved: int
    quota: int | None
    available: int


@dataclass
class Reservation:
    """Space held for one upload until it is committed or given up."""

    user: str
    quota_bytes: int
    disk_bytes: int
    temp: str = ""  # the upload's temporary file, removed if its writer dies


def file_size(path: str) -> int:
    """Size of a regular file at ``path`` (not following a symlink); 0 for anything else."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return 0
    return st.st_size if stat.S_ISREG(st.st_mode) else 0


def _disk_free(folder: str) -> int:
    fs = os.statvfs(folder)
    return fs.f_bavail * fs.f_frsize


class QuotaBook:
    """Usage and reservations of all users, behind one lock."""

    def __init__(self, stale_after: float = 3600.0) -> None:
        self.stale_after = stale_after
        self._lock = threading.Lock()
        self._accounts: dict[str, _Account] = {}
        self._disk_reserved = 0

    def _account(self, user: User) -> _Account:
        """The user's account, measured from the disk the first time (lock held)."""
        account = self._accounts.get(user.name)
        if account is None:
            account = _Account(self._measure(str(user.home), time.time() - self.stale_after))
            self._accounts[user.name] = account
        return account

    @staticmethod
    def _measure(home: str, stale_before: float) -> int:
        """Bytes of regular files under ``home``, not counting temporary uploads.

        Temporary uploads untouched since ``stale_before`` (a time stamp) are
        left over from a crash and removed; live uploads write all the time.
        """
        total = 0
        for folder, _dirs, files in os.walk(home):
            for name in files:
                path = os.path.join(folder, name)
                if not is_temporary(name):
                    total += file_size(path)
                    continue
                with contextlib.suppress(OSError):
                    if os.lstat(path).st_mtime < stale_before:
                        os.unlink(path)
        return total

    def forget(self, name: str) -> None:
        """Drop a user's figures so they are measured again (after a reload)."""
        with self._lock:
            account = self._accounts.get(name)
            if account is not None and account.reserved == 0:
                del self._accounts[name]

    def usage(self, user: User) -> Usage:
        """The user's current figures; ``available`` is capped by the free disk space."""
        with self._lock:
            account = self._account(user)
            disk = max(0, _disk_free(str(user.home)) - self._disk_reserved)
            left = disk
            if user.quota is not None:
                left = min(left, max(0, user.quota - account.used - account.reserved))
            return Usage(account.used, account.reserved, user.quota, left)

    def reserve(self, user: User, size: int, replaced: int, temp: str) -> Reservation:
        """Hold space for an upload of ``size`` bytes that replaces ``replaced`` bytes.

        ``temp`` is the upload's temporary file: the free space of its folder
        counts.  Raises QUOTA_EXCEEDED or NO_SPACE before any data flows.
        """
        need = max(0, size - replaced)
        with self._lock:
            account = self._account(user)
            if user.quota is not None:
                free = user.quota - account.used - account.reserved
                if need > 0 and need > free:
                    raise ProtocolError(
                        ErrorCode.QUOTA_EXCEEDED,
                        f"quota exceeded: {format_size(need)} needed, "
                        f"{format_size(max(0, free))} free",
                    )
            disk = _disk_free(os.path.dirname(temp)) - self._disk_reserved
            if size > disk:
                raise ProtocolError(
                    ErrorCode.NO_SPACE,
                    f"not enough space on the server: {format_size(size)} needed, "
                    f"{format_size(max(0, disk))} free",
                )
            account.reserved += need
            self._disk_reserved += size
        return Reservation(user.name, need, size, temp)

    def release(self, reservation: Reservation) -> None:
        """Give back a reservation (after a commit or a failure); safe to call twice."""
        with self._lock:
            self._release(reservation)

    def abandon(self, reservation: Reservation) -> None:
        """Give back the reservation of an upload whose writer died, and remove its file.

        The temporary file was never counted, and nothing will finish it.
        """
        self.release(reservation)
        if is_temporary(os.path.basename(reservation.temp)):
            with contextlib.suppress(OSError):
                os.unlink(reservation.temp)

    def _release(self, reservation: Reservation) -> None:
        account = self._accounts.get(reservation.user)
        if account is not None:
            account.reserved -= reservation.quota_bytes
        self._disk_reserved -= reservation.disk_bytes
        reservation.quota_bytes = reservation.disk_bytes = 0

    def replace(
        self,
        user: User,
        source: str,
        target: str,
        enforce: bool = False,
        release: Reservation | None = None,
    ) -> None:
        """Rename ``source`` over ``target``, counting the size change exactly.

        ``source`` is a temporary file (not yet counted); ``target``'s old
        size, if any, stops counting and the new size starts.  With
        ``enforce`` (a finished upload), a growth that would take the user
        over the quota is refused with QUOTA_EXCEEDED and nothing is renamed:
        the reservation made at ``ready`` can fall short when the file it was
        to replace was renamed or removed meanwhile.  ``release``, the
        upload's reservation, is given back in the same step whatever the
        outcome, so the figures never count the file and its reservation
        together.
        """
        with self._lock:
            try:
                self._replace(user, source, target, enforce)
            finally:
                if release is not None:
                    self._release(release)

    def _replace(self, user: User, source: str, target: str, enforce: bool) -> None:
        """:meth:`replace` with the lock held."""
        account = self._account(user)
        old = file_size(target)
        growth = file_size(source) - old
        quota = user.quota
        if enforce and quota is not None and growth > 0 and account.used + growth > quota:
            raise ProtocolError(
                ErrorCode.QUOTA_EXCEEDED,
                f"quota exceeded: {format_size(growth)} needed, "
                f"{format_size(max(0, quota - account.used))} free",
            )
        os.replace(source, target)
        account.used += file_size(target) - old

    def rename_over(self, user: User, source: str, target: str) -> None:
        """Rename the counted ``source`` over ``target`` in one ``rename(2)``.

        An existing file at ``target`` is replaced atomically and stops counting;
        two names of one file are left as they are, as ``rename(2)`` does.
        """
        with self._lock:
            account = self._account(user)
            with contextlib.suppress(FileNotFoundError):
                if os.path.samestat(os.lstat(source), os.lstat(target)):
                    return
            old = file_size(target)
            os.rename(source, target)
            account.used -= old

    def claim(self, user: User, counted: str, temp: str) -> int:
        """Rename a counted file (a saved partial upload) to an uncounted temporary one.

        Returns its size; raises FileNotFoundError if there is none.
        """
        with self._lock:
            account = self._account(user)
            size = file_size(counted)
            os.rename(counted, temp)
            account.used -= size
            return size

    def remove(self, user: User, path: str) -> int:
        """Unlink ``path`` (a file or a symlink, never followed); returns the bytes freed."""
        with self._lock:
            account = self._account(user)
            size = file_size(path)
            os.unlink(path)
            account.used -= size
            return size
