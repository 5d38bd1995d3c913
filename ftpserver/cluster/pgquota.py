"""The quota ledger in PostgreSQL: one user's bytes and reservations, exact across nodes.

:class:`PgQuotaLedger` is the :class:`~ftpserver.state.ledger.QuotaLedger`
of a cluster, with the same answers and errors as the in-process
:class:`~ftpserver.state.ledger.QuotaBook`:

* ``ft_usage``: each user's bytes, as last measured by a node's storage
  and then changed by the deltas it reports (the storage measures and
  changes a home under its lock, which on a shared filesystem is a
  ``flock`` all nodes see);
* ``ft_reservations``: one row per upload in progress, with the node that
  holds it.  Only the reservations of nodes whose lease runs count, so a
  dead node's uploads stop holding space when its lease runs out, and its
  rows go with its node row.

Reserving and settling run under one cluster-wide advisory lock, so two
uploads that would together go over a quota cannot both be accepted,
whichever nodes they reach.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import psycopg

from ftpproto.errors import ErrorCode, ProtocolError
from ftpproto.units import format_size
from ftpserver.cluster.database import LOCK_QUOTA, Database, SharedStateUnavailable
from ftpserver.state.ledger import Reservation, Unmeasured, Usage

__all__ = ["PgQuotaLedger", "PgReservation"]

Connection = psycopg.Connection[tuple[object, ...]]

# A measurement of a home; the second keeps one recorded meanwhile (QuotaLedger.record).
_RECORD = (
    "insert into ft_usage (user_name, used) values (%s, %s) on conflict (user_name)"
    " do update set used = excluded.used, measured = now()"
)
_RECORD_FIRST = (
    "insert into ft_usage (user_name, used) values (%s, %s) on conflict (user_name) do nothing"
)
_LIVE = "ft_reservations r join ft_nodes n on n.name = r.node and n.lease_until > now()"
_FIGURES = (
    "select u.used,"
    f" (select coalesce(sum(r.quota_bytes), 0) from {_LIVE} where r.user_name = u.user_name),"
    f" (select coalesce(sum(r.disk_bytes), 0) from {_LIVE})"
    " from ft_usage u where u.user_name = %s"
)


@dataclass
class PgReservation(Reservation):
    """A reservation, with its row in ``ft_reservations`` (0 once given back)."""

    row: int = 0


def _int(value: object) -> int:
    """A count from the database (``sum`` of bigints is a numeric: a Decimal)."""
    if isinstance(value, (int, Decimal)):
        return int(value)
    raise TypeError(f"expected a number from the database, got {value!r}")


class PgQuotaLedger:
    """Users' bytes and upload reservations kept in PostgreSQL."""

    def __init__(self, db: Database, node: Callable[[], str]) -> None:
        self.db = db
        self.node = node

    def _figures(self, conn: Connection, user: str) -> tuple[int, int, int]:
        """(used, reserved by the user, disk reserved by everyone); Unmeasured if unknown."""
        row = conn.execute(_FIGURES, (user,)).fetchone()
        if row is None:
            raise Unmeasured(user)
        return _int(row[0]), _int(row[1]), _int(row[2])

    def usage(self, user: str, quota: int | None, free: int) -> Usage:
        used, reserved, disk = self.db.run(lambda conn: self._figures(conn, user))
        left = max(0, free - disk)
        if quota is not None:
            left = min(left, max(0, quota - used - reserved))
        return Usage(used, reserved, quota, left)

    def record(self, user: str, used: int, first: bool = False) -> None:
        query = _RECORD_FIRST if first else _RECORD
        self.db.run(lambda conn: conn.execute(query, (user, used)))

    def reserve(
        self, user: str, quota: int | None, size: int, replaced: int, free: int, temp: str
    ) -> Reservation:
        need = max(0, size - replaced)

        def work(conn: Connection) -> PgReservation:
            with conn.transaction():
                conn.execute("select pg_advisory_xact_lock(%s)", (LOCK_QUOTA,))
                used, reserved, disk_reserved = self._figures(conn, user)
                if quota is not None:
                    left = quota - used - reserved
                    if need > 0 and need > left:
                        raise _quota_exceeded(need, left)
                disk = free - disk_reserved
                if size > disk:
                    raise ProtocolError(
                        ErrorCode.NO_SPACE,
                        f"not enough space on the server: {format_size(size)} needed, "
                        f"{format_size(max(0, disk))} free",
                    )
                row = conn.execute(
                    "insert into ft_reservations (node, user_name, quota_bytes, disk_bytes, temp)"
                    " values (%s, %s, %s, %s, %s) returning id",
                    (self.node(), user, need, size, temp),
                ).fetchone()
                assert row is not None
                return PgReservation(user, need, size, temp, _int(row[0]))

        try:
            return self.db.run(work)
        except psycopg.errors.ForeignKeyViolation:  # this node's row is gone (an outage)
            raise SharedStateUnavailable("this node is not registered") from None

    def settle(
        self, user: str, growth: int, limit: int | None = None, release: Reservation | None = None
    ) -> None:
        def work(conn: Connection) -> None:
            with conn.transaction():
                conn.execute("select pg_advisory_xact_lock(%s)", (LOCK_QUOTA,))
                row = conn.execute(
                    "select used from ft_usage where user_name = %s for update", (user,)
                ).fetchone()
                if row is None and limit is not None:
                    raise Unmeasured(user)  # nothing given back: measure and ask again
                try:
                    if row is None:
                        return  # the next measurement of the home sees the change
                    used = _int(row[0])
                    if limit is not None and growth > 0 and used + growth > limit:
                        raise _quota_exceeded(growth, limit - used)
                    conn.execute(
                        "update ft_usage set used = used + %s where user_name = %s",
                        (growth, user),
                    )
                finally:
                    if release is not None:
                        self._delete(conn, release)

        self.db.run(work)
        if release is not None:
            _spent(release)

    def release(self, reservation: Reservation) -> None:
        with contextlib.suppress(SharedStateUnavailable):  # it stops counting with the lease
            self.db.run(lambda conn: self._delete(conn, reservation))
        _spent(reservation)

    def _delete(self, conn: Connection, reservation: Reservation) -> None:
        if isinstance(reservation, PgReservation) and reservation.row:
            conn.execute("delete from ft_reservations where id = %s", (reservation.row,))

    def forget(self, user: str) -> None:
        """Drop a user's figures so that the next session measures the home again."""
        self.db.run(lambda conn: conn.execute("delete from ft_usage where user_name = %s", (user,)))


def _spent(reservation: Reservation) -> None:
    reservation.quota_bytes = reservation.disk_bytes = 0
    if isinstance(reservation, PgReservation):
        reservation.row = 0


def _quota_exceeded(need: int, free: int) -> ProtocolError:
    return ProtocolError(
        ErrorCode.QUOTA_EXCEEDED,
        f"quota exceeded: {format_size(need)} needed, {format_size(max(0, free))} free",
    )
