"""The quota ledger as a shared concern: its worker proxy and its owner-side methods.

The interface is :class:`~ftpserver.state.ledger.QuotaLedger` (numbers
only: the storage measures homes and changes files).  :class:`RemoteLedger`
is a worker's proxy for the supervisor's :class:`~ftpserver.state.ledger.QuotaBook`
(a settle without a limit is posted, not waited for; a reservation can be
sent ahead and its answer read later, :meth:`RemoteLedger.reserve_later`),
:func:`quota_methods` what a worker may call on it, and :class:`QuotaHolds`
the reservations a worker holds, given back (their temporary files removed)
if it dies.  ``forget`` is not shared: only the owner's reload drops figures.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable

from ftpserver.state.ledger import QuotaBook, Reservation, Unmeasured, Usage
from ftpserver.state.wire import Args, PipeClient, StateUnavailable, arg, expect
from ftpserver.storage.localfiles import discard_upload

__all__ = ["QuotaHolds", "QuotaMethod", "RemoteLedger", "quota_methods"]

TARGET = "quotas"


def _quota(args: Args, index: int) -> int | None:
    """An optional quota or limit argument: ``None`` or an ``int``."""
    return None if args[index] is None else arg(args, index, int)


def _reservation(args: Args, index: int) -> Reservation | None:
    return None if args[index] is None else arg(args, index, Reservation)


class RemoteLedger:
    """A worker's :class:`~ftpserver.state.ledger.QuotaLedger`: the supervisor's, over the pipe."""

    def __init__(self, client: PipeClient) -> None:
        self._client = client

    def usage(self, user: str, quota: int | None, free: int) -> Usage:
        return expect(self._client.call(TARGET, "usage", user, quota, free), Usage)

    def record(self, user: str, used: int, first: bool = False) -> None:
        self._client.call(TARGET, "record", user, used, first)

    def reserve(
        self, user: str, quota: int | None, size: int, replaced: int, free: int, temp: str
    ) -> Reservation:
        return self.reserve_later(user, quota, size, replaced, free, temp)()

    def reserve_later(
        self, user: str, quota: int | None, size: int, replaced: int, free: int, temp: str
    ) -> Callable[[], Reservation]:
        """:meth:`reserve` sent now; a function that waits for the answer (or raises)."""
        result = self._client.submit(TARGET, "reserve", user, quota, size, replaced, free, temp)
        return lambda: expect(result(), Reservation)

    def settle(
        self, user: str, growth: int, limit: int | None = None, release: Reservation | None = None
    ) -> None:
        if limit is None:  # nothing to refuse: sent without waiting for the answer
            try:  # (a copy: the request goes out later, after this one is zeroed below)
                sent = None if release is None else dataclasses.replace(release)
                self._client.post(TARGET, "settle", user, growth, limit, sent)
            finally:
                if release is not None:
                    _spent(release)
            return
        try:
            self._client.call(TARGET, "settle", user, growth, limit, release)
        except Unmeasured:
            raise  # nothing was given back: the caller measures and settles again
        except BaseException:
            if release is not None:
                _spent(release)
            raise
        if release is not None:
            _spent(release)

    def release(self, reservation: Reservation) -> None:
        with contextlib.suppress(StateUnavailable):  # the supervisor is gone, the book too
            self._client.call(TARGET, "release", reservation)
        _spent(reservation)

    def flush(self) -> None:
        """Send the settles still held back (:data:`~ftpserver.state.wire.POST_DELAY`) now."""
        with contextlib.suppress(StateUnavailable):
            self._client.flush()


def _spent(reservation: Reservation) -> None:
    """Zero the worker's copy as the book zeroes its own, so a second release gives nothing."""
    reservation.quota_bytes = reservation.disk_bytes = 0


class QuotaHolds:
    """The reservations one worker holds in the supervisor's book, and whose figures it moved."""

    def __init__(self) -> None:
        self.reservations: list[Reservation] = []
        self.users: set[str] = set()

    def forget(self, copy: Reservation | None) -> Reservation | None:
        """The worker gave back ``copy``: stop holding the first reservation equal to it."""
        for index, reservation in enumerate(self.reservations):
            if reservation == copy:
                return self.reservations.pop(index)
        return None

    def give_back(self, book: QuotaBook) -> int:
        """Release every reservation still held and remove its upload (the worker is gone).

        The figures of the users it served are then forgotten, to be
        measured again by the next session that needs them: a worker that
        died may have held back settles it never sent.
        """
        held, self.reservations = self.reservations, []
        for reservation in held:
            book.release(reservation)
            discard_upload(reservation.temp)
        for user in self.users:
            book.forget(user)
        return len(held)


QuotaMethod = tuple[int, Callable[[QuotaHolds, Args], object]]  # argument count, call


def quota_methods(book: QuotaBook) -> dict[str, QuotaMethod]:
    """The book's methods a worker may call, by name, with the bookkeeping of its reservations."""

    def usage(holds: QuotaHolds, args: Args) -> Usage:
        return book.usage(arg(args, 0, str), _quota(args, 1), arg(args, 2, int))

    def record(holds: QuotaHolds, args: Args) -> None:
        book.record(arg(args, 0, str), arg(args, 1, int), arg(args, 2, bool))

    def reserve(holds: QuotaHolds, args: Args) -> Reservation:
        user, quota = arg(args, 0, str), _quota(args, 1)
        size, replaced, free = arg(args, 2, int), arg(args, 3, int), arg(args, 4, int)
        reservation = book.reserve(user, quota, size, replaced, free, arg(args, 5, str))
        holds.reservations.append(reservation)
        holds.users.add(user)
        return reservation

    def settle(holds: QuotaHolds, args: Args) -> None:
        user, growth, limit = arg(args, 0, str), arg(args, 1, int), _quota(args, 2)
        copy = _reservation(args, 3)
        holds.users.add(user)
        given = holds.forget(copy)  # settle gives it back, whatever the outcome...
        try:
            book.settle(user, growth, limit, copy)
        except Unmeasured:
            if given is not None:  # ...except when the ledger had no figures: still held
                holds.reservations.append(given)
            raise

    def release(holds: QuotaHolds, args: Args) -> None:
        reservation = arg(args, 0, Reservation)
        holds.forget(reservation)  # before release zeroes it
        book.release(reservation)

    return {
        "usage": (3, usage),
        "record": (3, record),
        "reserve": (6, reserve),
        "settle": (4, settle),
        "release": (1, release),
    }
