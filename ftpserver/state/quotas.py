"""The quota book as a shared concern: its Protocol, its worker proxy, its owner-side methods.

Self-contained on purpose: the quota book is being reduced to a ledger that
only adds up numbers, and this module is what changes with it.  It types
today's :class:`~ftpserver.quota.QuotaBook` methods that sessions call
(:class:`Quotas`); :class:`RemoteQuotas` is a worker's proxy for them,
:func:`quota_methods` what a worker may call on the supervisor's book, and
:class:`QuotaHolds` the reservations a worker holds, abandoned (their
temporary files removed) if it dies.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Protocol

from ftpserver.quota import QuotaBook, Reservation, Usage
from ftpserver.state.wire import Args, PipeClient, StateUnavailable, arg, expect
from ftpserver.users import User

__all__ = ["QuotaHolds", "QuotaMethod", "Quotas", "RemoteQuotas", "quota_methods"]

TARGET = "quotas"


class Quotas(Protocol):
    """Usage, reservations and the counted file changes of every user (see QuotaBook)."""

    def usage(self, user: User) -> Usage: ...

    def reserve(self, user: User, size: int, replaced: int, temp: str) -> Reservation: ...

    def release(self, reservation: Reservation) -> None: ...

    def replace(
        self,
        user: User,
        source: str,
        target: str,
        enforce: bool = False,
        release: Reservation | None = None,
    ) -> None: ...

    def claim(self, user: User, counted: str, temp: str) -> int: ...

    def remove(self, user: User, path: str) -> int: ...


class RemoteQuotas:
    """A worker's :class:`Quotas`: the supervisor's book, over the pipe."""

    def __init__(self, client: PipeClient) -> None:
        self._client = client

    def usage(self, user: User) -> Usage:
        return expect(self._client.call(TARGET, "usage", user), Usage)

    def reserve(self, user: User, size: int, replaced: int, temp: str) -> Reservation:
        value = self._client.call(TARGET, "reserve", user, size, replaced, temp)
        return expect(value, Reservation)

    def release(self, reservation: Reservation) -> None:
        with contextlib.suppress(StateUnavailable):  # the supervisor is gone, the book too
            self._client.call(TARGET, "release", reservation)
        _spent(reservation)

    def replace(
        self,
        user: User,
        source: str,
        target: str,
        enforce: bool = False,
        release: Reservation | None = None,
    ) -> None:
        try:
            self._client.call(TARGET, "replace", user, source, target, enforce, release)
        finally:
            if release is not None:
                _spent(release)

    def claim(self, user: User, counted: str, temp: str) -> int:
        return expect(self._client.call(TARGET, "claim", user, counted, temp), int)

    def remove(self, user: User, path: str) -> int:
        return expect(self._client.call(TARGET, "remove", user, path), int)


def _spent(reservation: Reservation) -> None:
    """Zero the worker's copy as the book zeroes its own, so a second release gives nothing."""
    reservation.quota_bytes = reservation.disk_bytes = 0


class QuotaHolds:
    """The reservations one worker holds in the supervisor's book."""

    def __init__(self) -> None:
        self.reservations: list[Reservation] = []

    def forget(self, copy: Reservation | None) -> None:
        """The worker gave back ``copy``: stop holding the first reservation equal to it."""
        for index, reservation in enumerate(self.reservations):
            if reservation == copy:
                del self.reservations[index]
                return

    def give_back(self, book: QuotaBook) -> int:
        """Abandon every reservation still held (the worker died); returns how many."""
        held, self.reservations = self.reservations, []
        for reservation in held:
            book.abandon(reservation)
        return len(held)


QuotaMethod = tuple[int, Callable[[QuotaHolds, Args], object]]  # argument count, call


def quota_methods(book: QuotaBook) -> dict[str, QuotaMethod]:
    """The book's methods a worker may call, by name, with the bookkeeping of its reservations."""

    def reserve(holds: QuotaHolds, args: Args) -> Reservation:
        user, temp = arg(args, 0, User), arg(args, 3, str)
        reservation = book.reserve(user, arg(args, 1, int), arg(args, 2, int), temp)
        holds.reservations.append(reservation)
        return reservation

    def release(holds: QuotaHolds, args: Args) -> None:
        reservation = arg(args, 0, Reservation)
        holds.forget(reservation)  # before release zeroes it
        book.release(reservation)

    def replace(holds: QuotaHolds, args: Args) -> None:
        held = None if args[4] is None else arg(args, 4, Reservation)
        holds.forget(held)  # replace gives it back, whatever the outcome
        user, source, target = arg(args, 0, User), arg(args, 1, str), arg(args, 2, str)
        book.replace(user, source, target, arg(args, 3, bool), held)

    return {
        "usage": (1, lambda holds, args: book.usage(arg(args, 0, User))),
        "reserve": (4, reserve),
        "release": (1, release),
        "replace": (5, replace),
        "claim": (
            3,
            lambda holds, args: book.claim(
                arg(args, 0, User), arg(args, 1, str), arg(args, 2, str)
            ),
        ),
        "remove": (2, lambda holds, args: book.remove(arg(args, 0, User), arg(args, 1, str))),
    }
