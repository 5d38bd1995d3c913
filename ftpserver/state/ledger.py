"""The quota ledger: per-user byte counts and upload reservations, shared by every session.

The ledger only adds up numbers.  For each user it keeps the bytes of
regular files in the home (saved partial uploads included), as last
measured and then changed by reported deltas, and the bytes reserved by
uploads in progress; and for the server the disk bytes reserved by all
uploads.  It never touches a file: the storage (:mod:`ftpserver.storage`)
measures a home, changes files and reports the change in the same step,
under its own per-home lock, so the figures stay exact however many
sessions (and worker processes) a user has.

:class:`QuotaLedger` is the interface; :class:`QuotaBook` keeps the figures
in this process behind one lock.  Every argument and result is plain,
picklable data, so a worker process calls the supervisor's book over a pipe
(:mod:`ftpserver.workers`) through the same interface.  A user the ledger
has no figures for (never measured, or forgotten by a reload) raises
:class:`Unmeasured`: the caller measures the home, :meth:`QuotaLedger.record`
the result, and asks again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ftpproto.errors import ErrorCode, ProtocolError
from ftpproto.units import format_size

__all__ = ["LaterLedger", "QuotaBook", "QuotaLedger", "Reservation", "Unmeasured", "Usage"]


class Unmeasured(Exception):
    """The ledger has no figures for this user: measure the home, record it, ask again."""


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

    @classmethod
    def asked(cls, user: str, size: int, replaced: int, temp: str) -> Reservation:
        """What :meth:`QuotaLedger.reserve` holds for an upload when it agrees."""
        return cls(user, max(0, size - replaced), size, temp)


class QuotaLedger(Protocol):
    """What sessions ask of the quota ledger (in process, or over a worker's pipe)."""

    def usage(self, user: str, quota: int | None, free: int) -> Usage:
        """The user's figures; ``available`` is capped by ``free`` disk bytes less reservations."""
        ...

    def record(self, user: str, used: int, first: bool = False) -> None:
        """Set the user's usage to a fresh measurement of the home (reservations stay).

        With ``first`` (a measurement made because the ledger said
        :class:`Unmeasured`), only if it still has no figures for the user:
        another session's measurement recorded meanwhile wins, because the
        settles that follow it may reach the ledger after this measurement
        already saw their files (a worker posts them without waiting).
        """
        ...

    def reserve(
        self, user: str, quota: int | None, size: int, replaced: int, free: int, temp: str
    ) -> Reservation:
        """Hold space for an upload of ``size`` bytes replacing ``replaced`` bytes.

        ``free`` is the disk space where the upload is written.  Raises
        QUOTA_EXCEEDED or NO_SPACE (a :class:`ProtocolError`).
        """
        ...

    def settle(
        self, user: str, growth: int, limit: int | None = None, release: Reservation | None = None
    ) -> None:
        """Count ``growth`` bytes (negative when files went); give back ``release`` in one step.

        With ``limit`` (the quota of a finished upload) a growth that would
        take the user over it raises QUOTA_EXCEEDED and counts nothing; the
        reservation is given back whatever the outcome, so the figures never
        count a file and its reservation together.
        """
        ...

    def release(self, reservation: Reservation) -> None:
        """Give back a reservation (after a failure); safe to call twice."""
        ...


@runtime_checkable
class LaterLedger(Protocol):
    """A ledger far away (over a worker's pipe) that can be asked now and answer later."""

    def reserve_later(
        self, user: str, quota: int | None, size: int, replaced: int, free: int, temp: str
    ) -> Callable[[], Reservation]:
        """Send :meth:`QuotaLedger.reserve`; a function that waits for its answer (or raises)."""
        ...


@dataclass
class _Account:
    used: int
    reserved: int = 0


def _quota_exceeded(need: int, free: int) -> ProtocolError:
    return ProtocolError(
        ErrorCode.QUOTA_EXCEEDED,
        f"quota exceeded: {format_size(need)} needed, {format_size(max(0, free))} free",
    )


class QuotaBook:
    """The in-process :class:`QuotaLedger`: the figures of all users, behind one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._accounts: dict[str, _Account] = {}
        self._disk_reserved = 0

    def _account(self, user: str) -> _Account:
        """The user's account (lock held); :class:`Unmeasured` if there is none."""
        account = self._accounts.get(user)
        if account is None:
            raise Unmeasured(user)
        return account

    def usage(self, user: str, quota: int | None, free: int) -> Usage:
        with self._lock:
            account = self._account(user)
            left = max(0, free - self._disk_reserved)
            if quota is not None:
                left = min(left, max(0, quota - account.used - account.reserved))
            return Usage(account.used, account.reserved, quota, left)

    def record(self, user: str, used: int, first: bool = False) -> None:
        with self._lock:
            account = self._accounts.get(user)
            if account is None:
                self._accounts[user] = _Account(used)
            elif not first:
                account.used = used

    def reserve(
        self, user: str, quota: int | None, size: int, replaced: int, free: int, temp: str
    ) -> Reservation:
        reservation = Reservation.asked(user, size, replaced, temp)
        need = reservation.quota_bytes
        with self._lock:
            account = self._account(user)
            if quota is not None:
                left = quota - account.used - account.reserved
                if need > 0 and need > left:
                    raise _quota_exceeded(need, left)
            disk = free - self._disk_reserved
            if size > disk:
                raise ProtocolError(
                    ErrorCode.NO_SPACE,
                    f"not enough space on the server: {format_size(size)} needed, "
                    f"{format_size(max(0, disk))} free",
                )
            account.reserved += need
            self._disk_reserved += size
        return reservation

    def settle(
        self, user: str, growth: int, limit: int | None = None, release: Reservation | None = None
    ) -> None:
        with self._lock:
            account = self._accounts.get(user)
            if account is None and limit is not None:
                raise Unmeasured(user)  # nothing given back: the caller measures and asks again
            try:
                if account is None:
                    return  # the next measurement of the home sees the change
                if limit is not None and growth > 0 and account.used + growth > limit:
                    raise _quota_exceeded(growth, limit - account.used)
                account.used += growth
            finally:
                if release is not None:
                    self._release(release)

    def release(self, reservation: Reservation) -> None:
        with self._lock:
            self._release(reservation)

    def _release(self, reservation: Reservation) -> None:
        account = self._accounts.get(reservation.user)
        if account is not None:
            account.reserved -= reservation.quota_bytes
        self._disk_reserved -= reservation.disk_bytes
        reservation.quota_bytes = reservation.disk_bytes = 0

    def forget(self, user: str) -> None:
        """Drop a user's figures so that they are measured again (the owner's reload)."""
        with self._lock:
            account = self._accounts.get(user)
            if account is not None and account.reserved == 0:
                del self._accounts[user]
