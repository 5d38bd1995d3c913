"""The administrator's view of the shared state in PostgreSQL (``shared_state``).

:class:`PgAdminState` is the :class:`~ftpserver.adminstate.AdminState` of a
cluster node (its one process, or the supervisor of its workers), on a small
pool of its own, so the administrator's questions never wait behind the
sessions' calls:

* bans are the cluster's (``ft_bans``): ``unban`` deletes the row and the
  address's failed logins, which lifts the ban on every node at once (each
  node asks the table at every session start, and at a login that comes
  later than ``BAN_FRESH`` after one);
* sessions are this node's: its rows in ``ft_slots``, those of its worker
  processes (``NAME/0``, ``NAME/1`` ...) included;
* ``nodes`` is what ``ftpserver nodes`` prints;
* ``problem`` asks the database for ``select 1`` (``/healthz`` answers 503
  while it cannot).

When the database cannot be reached a question raises :class:`TimeoutError`
("shared state unavailable: ..."), which the control socket shows as a
one-line error.  Tables not made yet (the nodes make them at start) are made
first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import psycopg

from ftpserver.adminstate import Row
from ftpserver.cluster.database import Database, SharedStateUnavailable, migrate
from ftpserver.cluster.node import read_nodes

__all__ = ["PgAdminState"]

Connection = psycopg.Connection[tuple[object, ...]]
T = TypeVar("T")
TIMEOUT = 2.0  # seconds an administrator's question waits for the database


class PgAdminState:
    """The shared state in PostgreSQL, as node ``node`` shows it to its administrator."""

    def __init__(self, url: str, node: str) -> None:
        self.node = node
        self.db = Database(url, timeout=TIMEOUT, max_size=2)
        self.db.open()

    def _ask(self, work: Callable[[Connection], T]) -> T:
        """``work`` on a connection; TimeoutError when the database cannot be reached."""
        try:
            try:
                return self.db.run(work)
            except psycopg.errors.UndefinedTable:  # before any node made the tables
                migrate(self.db)
                return self.db.run(work)
        except SharedStateUnavailable as exc:
            self.db.reset()  # no reconnection back-off carried over to the next question
            raise TimeoutError(f"shared state unavailable: {exc.detail or 'no answer'}") from None

    def _run(self, query: str, args: tuple[object, ...]) -> list[tuple[object, ...]]:
        return self._ask(lambda conn: conn.execute(query.encode(), args).fetchall())

    def banned(self) -> list[tuple[str, float]]:
        rows = self._run(
            "select ip, extract(epoch from until - now())::float8 from ft_bans"
            " where until > now() order by until",
            (),
        )
        return [(str(ip), float(str(left))) for ip, left in rows]

    def unban(self, ip: str) -> bool:
        rows = self._run(
            "with gone as (delete from ft_failures where ip = %s)"
            " delete from ft_bans where ip = %s returning until > now()",
            (ip, ip),
        )
        return any(bool(alive) for (alive,) in rows)

    def session_count(self) -> int:
        rows = self._run(
            "select coalesce(sum(count), 0)::bigint from ft_slots"
            " where node = %s or starts_with(node, %s)",
            (self.node, f"{self.node}/"),
        )
        return int(str(rows[0][0])) if rows else 0

    def nodes(self) -> list[Row]:
        return [
            {
                "name": row.name,
                "address": row.address,
                "lease_age": round(row.lease_age, 1),
                "alive": row.alive,
                "sessions": row.sessions,
                "transfers": row.transfers,
            }
            for row in self._ask(read_nodes)
        ]

    def problem(self) -> str | None:
        try:
            self._run("select 1", ())
        except TimeoutError as exc:
            return str(exc)
        return None

    def quota_used(self, users: list[str]) -> dict[str, int]:
        rows = self._run("select user_name, used from ft_usage where user_name = any(%s)", (users,))
        return {str(name): int(str(used)) for name, used in rows}

    def close(self) -> None:
        self.db.close()
