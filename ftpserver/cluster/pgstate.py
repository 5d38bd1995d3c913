"""Session slots, bans and bandwidth budgets kept in PostgreSQL, shared by every node.

One class per protocol of :mod:`ftpserver.state.protocols`, giving the same
answers as the in-process classes of :mod:`ftpserver.guards`:

* :class:`PgSessionSlots`: a row per (node, client address) with its count
  of open sessions; a slot is taken (``ft_open_many``, one round trip like
  every call here) under one cluster-wide advisory lock when a limit is set,
  counting only nodes whose lease is running, so the limits hold across
  nodes and a dead node's slots stop counting when its lease runs out.  The
  same round trip tells whether the address is banned (for the login that
  follows, see :class:`PgBans`).  The session starts that arrive while one
  is in flight go together in the next round trip, and so do the
  give-backs (:mod:`ftpserver.cluster.batching`).  The
  node also keeps its own counts, which it writes back whole after a
  database outage or when it finds its row gone (:meth:`resync`).
* :class:`PgUserSessions`: the same per user (``ft_user_slots``), for each
  user's ``max_sessions`` (``ft_user_acquire``, a lock per user);
* :class:`PgBans`: failed logins (address, time) and bans (address, until),
  in database time; one address's failures are counted under a lock of its
  own (``ft_failure``).  A login asks whether its address is banned; the
  answer a session start got for that address less than :data:`BAN_FRESH`
  seconds ago stands for it, so a login costs no round trip of its own.
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from ftpserver.cluster.batching import Batcher
from ftpserver.cluster.database import (
    LOCK_BANS,
    LOCK_SLOTS,
    LOCK_USERS,
    Database,
    SharedStateUnavailable,
)
from ftpserver.cluster.prepared import Prepared
from ftpserver.config import Settings
from ftpserver.guards import Bandwidth

__all__ = ["UNAVAILABLE", "PgBandwidth", "PgBans", "PgSessionSlots", "PgUserSessions"]

log = logging.getLogger("ftpserver.cluster")

UNAVAILABLE = "shared state unavailable"
RETRY_PAUSE = 1.0  # seconds a node paces alone before it asks the database again
BAN_FRESH = 1.0  # seconds a session start's answer "banned or not" stands for a login
BAN_ENTRIES = 4096  # addresses remembered before the stale ones are dropped
Connection = psycopg.Connection[tuple[object, ...]]
Limits = Callable[[], Settings]

# The round trips of every session (docs/CLUSTER.md): prepared on each connection.
OPEN_MANY = Prepared("ft_open_many", "select refused, banned from ft_open_many($1, $2, $3, $4, $5)")
RELEASE_MANY = Prepared("ft_release_many", "select ft_release_many($1, $2)")
USER_ACQUIRE = Prepared("ft_user_acquire", "select ft_user_acquire($1, $2, $3, $4)")
USER_RELEASE_MANY = Prepared("ft_user_release_many", "select ft_user_release_many($1, $2)")


def _number(value: object) -> float:
    assert isinstance(value, (int, float)), f"expected a number from the database: {value!r}"
    return float(value)


class _NodeCounts:
    """What this node holds in a table of ``(node, key, count)`` rows, and its own copy.

    The copy is written back whole (:meth:`resync`) after a write failed
    (an outage) or when the node's row had gone (the others took it for
    dead), so the table always comes back to what the node really holds.
    Takes and give-backs go through batches (:mod:`ftpserver.cluster.batching`),
    no lock held over a round trip; a resync waits for the writes in flight
    and holds new ones back, so that the copy it writes is what the table
    would hold.
    """

    table = ""
    column = ""
    release_many: Prepared  # (node, keys): one fewer per key

    def __init__(self, db: Database, node: Callable[[], str], healthy: Callable[[], bool]) -> None:
        self.db = db
        self.node = node  # this node's name
        self.healthy = healthy  # whether this node's lease is current
        self._lock = threading.Condition()  # guards _mine, _writing and _resyncing
        self._mine: Counter[str] = Counter()
        self._writing = 0  # takes and give-backs between their change and _mine's
        self._resyncing = False
        self.dirty = True  # the database's rows for this node may differ from _mine
        self._give_backs: Batcher[str, None] = Batcher(self._send_give_backs)

    @contextmanager
    def _write(self) -> Iterator[None]:
        """A take or give-back in flight: a resync waits for it to finish."""
        with self._lock:
            self._lock.wait_for(lambda: not self._resyncing)
            self._writing += 1
        try:
            yield
        finally:
            with self._lock:
                self._writing -= 1
                if not self._writing:
                    self._lock.notify_all()

    def _take(self, key: str, take: Callable[[str], bool]) -> bool | None:
        """``take(key)`` (True: taken), then counted here; None if the database is away."""
        with self._write():
            try:
                taken = take(key)
            except (SharedStateUnavailable, psycopg.errors.ForeignKeyViolation) as exc:
                log.warning("refusing a session: shared state unavailable (%s)", exc)
                self.dirty = True
                return None
            if taken:
                with self._lock:
                    self._mine[key] += 1
            return taken

    def _give_back(self, key: str) -> None:
        """Count one ``key`` less, here and in the database (with others given back meanwhile)."""
        with self._write():
            with self._lock:
                self._mine[key] -= 1
                if self._mine[key] <= 0:
                    del self._mine[key]
            if not self.healthy():  # no waiting on a database known to be away
                self.dirty = True
                return
            try:
                self._give_backs(key)
            except SharedStateUnavailable:
                self.dirty = True  # written back whole when the database is back

    def _send_give_backs(self, keys: list[str]) -> list[None]:
        self.db.run(
            lambda conn: self.release_many.rows(conn, self.node(), keys),
            f"{type(self).__name__}.release",
        )
        return [None] * len(keys)

    def resync(self, conn: Connection) -> None:
        """Write this node's counts over its rows (after an outage, or a fresh start)."""
        table, column = sql.Identifier(self.table), sql.Identifier(self.column)
        with self._lock:
            self._lock.wait_for(lambda: not self._resyncing)  # one resync at a time
            self._resyncing = True
            self._lock.wait_for(lambda: not self._writing)
            rows = [(self.node(), key, count) for key, count in self._mine.items()]
        try:
            with conn.transaction():
                conn.execute(
                    sql.SQL("delete from {} where node = %s").format(table), (self.node(),)
                )
                if rows:
                    with conn.cursor() as cur:
                        cur.executemany(
                            sql.SQL("insert into {} (node, {}, count) values (%s, %s, %s)").format(
                                table, column
                            ),
                            rows,
                        )
            self.dirty = False
        finally:
            with self._lock:
                self._resyncing = False
                self._lock.notify_all()

    def counts(self) -> dict[str, int]:
        """What this node holds, per key."""
        with self._lock:
            return dict(self._mine)


class PgSessionSlots(_NodeCounts):
    """Open sessions in the whole cluster, in total and per client address."""

    table, column = "ft_slots", "ip"
    release_many = RELEASE_MANY

    def __init__(
        self,
        db: Database,
        node: Callable[[], str],
        limits: Limits,
        healthy: Callable[[], bool],
        bans: PgBans,
    ) -> None:
        super().__init__(db, node, healthy)
        self.limits = limits
        self.bans = bans  # told whether each address that starts a session is banned
        self._opens: Batcher[str, str | None] = Batcher(self._send_opens)

    def acquire(self, ip: str) -> str | None:
        """Take a slot for ``ip``: None, or why it was refused."""
        if not self.healthy():
            return UNAVAILABLE
        refused: list[str] = []

        def take(key: str) -> bool:
            why = self._opens(key)
            if why is not None:
                refused.append(why)
            return why is None

        taken = self._take(ip, take)
        if taken is None:
            return UNAVAILABLE
        return None if taken else refused[0]

    def _send_opens(self, ips: list[str]) -> list[str | None]:
        """Slots for ``ips`` in one round trip: why each was refused (None: taken)."""
        settings = self.limits()
        order = sorted(range(len(ips)), key=ips.__getitem__)  # as ft_release_many locks rows
        most, most_per_ip = settings.max_sessions, settings.max_sessions_per_ip
        rows = self.db.run(
            lambda conn: OPEN_MANY.rows(
                conn, LOCK_SLOTS, self.node(), [ips[i] for i in order], most, most_per_ip
            ),
            "PgSessionSlots.acquire",
        )
        answers: list[str | None] = [None] * len(ips)
        for i, (refused, banned) in zip(order, rows, strict=True):
            self.bans.seen(ips[i], banned == "t")
            answers[i] = refused
        return answers

    def release(self, ip: str) -> None:
        """Give back a slot taken by :meth:`acquire`."""
        self._give_back(ip)


class PgUserSessions(_NodeCounts):
    """Logged-in sessions per user in the whole cluster, for each user's ``max_sessions``."""

    table, column = "ft_user_slots", "user_name"
    release_many = USER_RELEASE_MANY

    def acquire(self, name: str, limit: int) -> bool:
        """Take a slot for ``name`` unless ``limit`` (0: none) are taken already.

        Raises :class:`SharedStateUnavailable` (a ``421``) when the database is away.
        """
        if not self.healthy():
            raise SharedStateUnavailable("this node's lease is not current")

        def take(key: str) -> bool:
            row = self.db.run(lambda conn: USER_ACQUIRE(conn, LOCK_USERS, self.node(), key, limit))
            return row is not None and row[0] == "t"

        taken = self._take(name, take)
        if taken is None:
            raise SharedStateUnavailable("the shared state cannot be reached")
        return taken

    def release(self, name: str) -> None:
        """Give back a slot taken by :meth:`acquire`."""
        self._give_back(name)


class PgBans:
    """Failed logins per address across the cluster, and the bans they lead to."""

    def __init__(self, db: Database, limits: Limits, healthy: Callable[[], bool]) -> None:
        self.db = db
        self.limits = limits
        self.healthy = healthy  # whether this node's lease is current
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[float, bool]] = {}  # ip -> (time.monotonic(), banned)

    def seen(self, ip: str, banned: bool) -> None:
        """What the database just answered about ``ip`` (at a session start or a failure)."""
        now = time.monotonic()
        with self._lock:
            if len(self._seen) >= BAN_ENTRIES:
                self._seen = {k: v for k, v in self._seen.items() if now - v[0] < BAN_FRESH}
            self._seen[ip] = (now, banned)

    def _recent(self, ip: str) -> bool | None:
        with self._lock:
            entry = self._seen.get(ip)
        if entry is None or time.monotonic() - entry[0] >= BAN_FRESH:
            return None
        return entry[1]

    def is_banned(self, ip: str) -> bool:
        """Whether ``ip`` is banned now; :class:`SharedStateUnavailable` if unknown.

        Answered without a round trip when a session start from ``ip`` asked
        less than :data:`BAN_FRESH` seconds ago (the login right after it).
        """
        if not self.healthy():
            raise SharedStateUnavailable("this node's lease is not current")
        recent = self._recent(ip)
        if recent is not None:
            return recent

        def work(conn: Connection) -> bool:
            row = conn.execute(
                "select exists (select 1 from ft_bans where ip = %s and until > now())", (ip,)
            ).fetchone()
            return bool(row and row[0])

        banned = self.db.run(work)
        self.seen(ip, banned)
        return banned

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

        banned = self.db.run(work)
        if banned:
            self.seen(ip, True)
        return banned


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
