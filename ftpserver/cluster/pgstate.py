"""Session slots, bans and bandwidth budgets kept in PostgreSQL, shared by every node.

One class per protocol of :mod:`ftpserver.state.protocols`, giving the same
answers as the in-process classes of :mod:`ftpserver.guards`:

* :class:`PgSessionSlots`: a row per (node, client address) with its count
  of open sessions; a slot is taken (``ft_acquire``, one round trip like
  every call here) under one cluster-wide advisory lock,
  counting only nodes whose lease is running, so the limits hold across
  nodes and a dead node's slots stop counting when its lease runs out.  The
  node also keeps its own counts, which it writes back whole after a
  database outage or when it finds its row gone (:meth:`resync`).
* :class:`PgBans`: failed logins (address, time) and bans (address, until),
  in database time; one address's failures are counted under a lock of its
  own (``ft_failure``).
* :class:`PgBandwidth`: a token bucket per user and direction, refilled and
  spent in one statement; while the database cannot be reached a node paces
  with its own buckets (asking the database again each second), so running
  transfers go on.

Limits come from ``limits()`` (the server's current settings) at every use.
Database time (``now()``) is the only clock, so the nodes' clocks need not agree.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

import psycopg

from ftpserver.cluster.database import LOCK_BANS, LOCK_SLOTS, Database, SharedStateUnavailable
from ftpserver.config import Settings
from ftpserver.guards import Bandwidth

__all__ = ["UNAVAILABLE", "PgBandwidth", "PgBans", "PgSessionSlots"]

log = logging.getLogger("ftpserver.cluster")

UNAVAILABLE = "shared state unavailable"
RETRY_PAUSE = 1.0  # seconds a node paces alone before it asks the database again
Connection = psycopg.Connection[tuple[object, ...]]
Limits = Callable[[], Settings]


def _number(value: object) -> float:
    assert isinstance(value, (int, float)), f"expected a number from the database: {value!r}"
    return float(value)


class PgSessionSlots:
    """Open sessions in the whole cluster, in total and per client address."""

    def __init__(
        self, db: Database, node: Callable[[], str], limits: Limits, healthy: Callable[[], bool]
    ) -> None:
        self.db = db
        self.node = node  # this node's name
        self.limits = limits
        self.healthy = healthy  # whether this node's lease is current
        self._lock = threading.Lock()
        self._mine: Counter[str] = Counter()
        self.dirty = True  # the database's rows for this node may differ from _mine

    def acquire(self, ip: str) -> str | None:
        """Take a slot for ``ip``: None, or why it was refused."""
        settings = self.limits()
        if not self.healthy():
            return UNAVAILABLE

        def work(conn: Connection) -> str | None:
            row = conn.execute(
                "select ft_acquire(%s, %s, %s, %s, %s)",
                (LOCK_SLOTS, self.node(), ip, settings.max_sessions, settings.max_sessions_per_ip),
            ).fetchone()
            return None if row is None or row[0] is None else str(row[0])

        with self._lock:
            try:
                refused = self.db.run(work)
            except (SharedStateUnavailable, psycopg.errors.ForeignKeyViolation) as exc:
                log.warning("refusing a session from %s: shared state unavailable (%s)", ip, exc)
                self.dirty = True
                return UNAVAILABLE
            if refused is None:
                self._mine[ip] += 1
            return refused

    def release(self, ip: str) -> None:
        """Give back a slot taken by :meth:`acquire`."""

        def work(conn: Connection) -> None:
            conn.execute("select ft_release(%s, %s)", (self.node(), ip))

        with self._lock:
            self._mine[ip] -= 1
            if self._mine[ip] <= 0:
                del self._mine[ip]
            if not self.healthy():  # no waiting on a database known to be away
                self.dirty = True
                return
            try:
                self.db.run(work)
            except SharedStateUnavailable:
                self.dirty = True  # written back whole when the database is back

    def resync(self, conn: Connection) -> None:
        """Write this node's counts over its rows (after an outage, or a fresh start)."""
        with self._lock, conn.transaction():
            conn.execute("delete from ft_slots where node = %s", (self.node(),))
            rows = [(self.node(), ip, count) for ip, count in self._mine.items()]
            if rows:
                with conn.cursor() as cur:
                    cur.executemany(
                        "insert into ft_slots (node, ip, count) values (%s, %s, %s)", rows
                    )
            self.dirty = False

    def counts(self) -> dict[str, int]:
        """This node's open sessions per address."""
        with self._lock:
            return dict(self._mine)


class PgBans:
    """Failed logins per address across the cluster, and the bans they lead to."""

    def __init__(self, db: Database, limits: Limits, healthy: Callable[[], bool]) -> None:
        self.db = db
        self.limits = limits
        self.healthy = healthy  # whether this node's lease is current

    def is_banned(self, ip: str) -> bool:
        """Whether ``ip`` is banned now; :class:`SharedStateUnavailable` if unknown."""
        if not self.healthy():
            raise SharedStateUnavailable("this node's lease is not current")

        def work(conn: Connection) -> bool:
            row = conn.execute(
                "select exists (select 1 from ft_bans where ip = %s and until > now())", (ip,)
            ).fetchone()
            return bool(row and row[0])

        return self.db.run(work)

    def failure(self, ip: str) -> bool:
        """Count a failed login from ``ip``; True if that bans it."""
        settings = self.limits()
        if not settings.ban_failures:
            return False

        def work(conn: Connection) -> bool:
            row = conn.execute(
                "select ft_failure(%s, %s, %s, %s, %s)",
                (LOCK_BANS, ip, settings.ban_window, settings.ban_failures, settings.ban_time),
            ).fetchone()
            return bool(row and row[0])

        return self.db.run(work)


class PgBandwidth:
    """Per-user byte rates shared by the user's sessions on every node."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.fallback = Bandwidth()  # while the database cannot be reached
        self._degraded = False
        self._retry_at = 0.0  # time.monotonic() before which the fallback is used unasked

    def take(self, user: str, direction: str, rate: int, count: int) -> float:
        """Spend ``count`` bytes at ``rate`` bytes/s; the seconds the caller must wait."""

        def work(conn: Connection) -> float:
            row = conn.execute(
                "insert into ft_buckets as b (user_name, direction, rate, tokens, stamp)"
                " values (%(user)s, %(direction)s, %(rate)s, %(rate)s - %(count)s,"
                " clock_timestamp())"
                " on conflict (user_name, direction) do update set"
                " tokens = case when b.rate <> excluded.rate then excluded.tokens"
                " else least(b.rate::float8, b.tokens"
                " + extract(epoch from clock_timestamp() - b.stamp)::float8 * b.rate)"
                " - %(count)s end,"
                " rate = excluded.rate, stamp = clock_timestamp()"
                " returning tokens",
                {"user": user, "direction": direction, "rate": rate, "count": count},
            ).fetchone()
            assert row is not None
            return _number(row[0])

        if self._degraded and time.monotonic() < self._retry_at:
            return self.fallback.take(user, direction, rate, count)
        try:
            tokens = self.db.run(work)
        except SharedStateUnavailable as exc:
            if not self._degraded:
                log.warning("bandwidth limits per node until the shared state is back: %s", exc)
                self._degraded = True
            self._retry_at = time.monotonic() + RETRY_PAUSE
            return self.fallback.take(user, direction, rate, count)
        if self._degraded:
            log.info("bandwidth limits shared again")
        self._degraded = False
        return 0.0 if tokens >= 0 else -tokens / rate
