"""A node of a cluster: its lease in the shared state, and the state its sessions share.

:class:`ClusterState` is what a server process builds when ``shared_state``
is a PostgreSQL URL: the pool (:class:`~ftpserver.cluster.database.Database`),
the tables brought up to date, and a :class:`~ftpserver.state.shared.Shared`
of the PostgreSQL classes (:mod:`ftpserver.cluster.pgstate`,
:mod:`ftpserver.cluster.pgquota`).  :meth:`ClusterState.start` registers the node and starts
its lease thread, which every third of ``node_lease``:

* renews this node's row (``lease_until = now() + node_lease``, with its
  address and its counts of sessions and transfers running);
* writes its session slots (per address and per user) back whole when its
  row had gone or a write had failed (an outage);
* deletes the rows of nodes whose lease ran out (their session slots go
  with them), expired bans, old failed logins and idle bandwidth buckets.

A node whose lease it could not renew in time refuses new sessions with
``421`` ("shared state unavailable"), and takes them again after its next
successful renewal.  :meth:`ClusterState.close` removes the node's row.
:meth:`ClusterState.live_nodes` answers for the storage which owners of
temporary uploads on shared homes are alive (:mod:`ftpserver.storage.temps`).
:func:`list_nodes` is ``ftpserver nodes``.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from ftpserver.cluster.database import Database, SharedStateUnavailable, migrate
from ftpserver.cluster.pgquota import PgQuotaLedger
from ftpserver.cluster.pgstate import PgBandwidth, PgBans, PgSessionSlots, PgUserSessions
from ftpserver.config import Settings
from ftpserver.state.shared import Shared

__all__ = ["ClusterState", "NodeRow", "default_node_name", "list_nodes", "read_nodes"]

log = logging.getLogger("ftpserver.cluster")
Stats = Callable[[], tuple[int, int]]  # (sessions, transfers running)
FAILURE_MEMORY = 86400.0  # seconds failed logins are kept at most


def default_node_name(settings: Settings, port: int) -> str:
    """``node_name``, or ``HOSTNAME:PORT``."""
    return settings.node_name or f"{socket.gethostname()}:{port}"


class ClusterState:
    """The shared state in PostgreSQL as one node's sessions use it."""

    def __init__(self, settings: Settings, suffix: str = "") -> None:
        """Connect and migrate (raises SharedStateUnavailable if the database is down)."""
        assert settings.shared_state is not None
        self.settings = settings
        self.suffix = suffix  # told apart: the worker processes of one node
        self.name = default_node_name(settings, settings.port) + suffix
        self.address = f"{settings.host}:{settings.port}"
        self.limits: Callable[[], Settings] = lambda: self.settings
        self.stats: Stats = lambda: (0, 0)
        self.db = Database(settings.shared_state, timeout=min(5.0, settings.node_lease / 3))
        self.db.open()
        self._renewed = 0.0  # time.monotonic() of the last renewal
        self._healthy = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.bans = PgBans(self.db, self._limits, self.healthy)
        self.slots = PgSessionSlots(
            self.db, lambda: self.name, self._limits, self.healthy, self.bans
        )
        self.bandwidth = PgBandwidth(self.db)
        self.quotas = PgQuotaLedger(self.db, lambda: self.name)
        self.user_slots = PgUserSessions(self.db, lambda: self.name, self.healthy)
        self.shared = Shared(self.quotas, self.slots, self.bans, self.bandwidth, self.user_slots)
        self._migrated = False
        try:
            migrate(self.db)
            self._migrated = True
        except SharedStateUnavailable as exc:
            log.error("shared state unavailable at start (%s); sessions wait for it", exc)

    def _limits(self) -> Settings:
        return self.limits()

    def healthy(self) -> bool:
        """Whether the lease was renewed recently enough to take sessions."""
        return self._healthy and time.monotonic() - self._renewed < self.settings.node_lease * 0.8

    def start(self, address: tuple[str, int], limits: Callable[[], Settings], stats: Stats) -> None:
        """Register the node serving at ``address`` and start renewing its lease."""
        self.name = default_node_name(self.settings, address[1]) + self.suffix
        self.address = f"{address[0]}:{address[1]}"
        self.limits, self.stats = limits, stats
        self.renew()
        self._thread = threading.Thread(target=self._renew_loop, name="node-lease", daemon=True)
        self._thread.start()
        log.info("node %s in the shared state (lease %g s)", self.name, self.settings.node_lease)

    def renew(self) -> bool:
        """Renew the lease once and tidy up after dead nodes; whether it worked."""
        settings = self.limits()
        sessions, busy = self.stats()

        def work(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
            row = conn.execute(
                "insert into ft_nodes (name, address, lease_until, sessions, transfers)"
                " values (%s, %s, now() + %s * interval '1 second', %s, %s)"
                " on conflict (name) do update set address = excluded.address,"
                " renewed = now(), lease_until = excluded.lease_until,"
                " sessions = excluded.sessions, transfers = excluded.transfers"
                " returning (xmax = 0)",
                (self.name, self.address, self.settings.node_lease, sessions, busy),
            ).fetchone()
            inserted = bool(row and row[0])
            for counts in (self.slots, self.user_slots):
                if inserted or counts.dirty:
                    counts.resync(conn)
            gone = conn.execute(
                "delete from ft_nodes where lease_until < now() returning name"
            ).fetchall()
            for (name,) in gone:
                log.warning("node %s's lease ran out: its sessions are released", name)
            conn.execute("delete from ft_bans where until < now()")
            conn.execute(
                "delete from ft_failures where at < now() - %s * interval '1 second'",
                (min(settings.ban_window, FAILURE_MEMORY),),
            )
            conn.execute("delete from ft_buckets where stamp < now() - interval '1 hour'")
            return inserted

        started = time.monotonic()
        try:
            if not self._migrated:  # the database was down at start
                migrate(self.db)
                self._migrated = True
            self.db.run(work)
        except (SharedStateUnavailable, psycopg.Error) as exc:
            if self._healthy:
                log.error("shared state unavailable: %s; refusing new sessions", exc)
            self._healthy = False
            self.db.reset()
            return False
        if not self._healthy:
            log.info("shared state available: node %s takes sessions", self.name)
        self._renewed, self._healthy = started, True
        return True

    @property
    def lease(self) -> float:
        """``node_lease`` in seconds (:class:`~ftpserver.storage.temps.UploadOwners`)."""
        return self.settings.node_lease

    def live_nodes(self) -> dict[str, float]:
        """The nodes whose lease runs, with its seconds left (raises SharedStateUnavailable)."""
        rows = self.db.run(
            lambda conn: conn.execute(
                "select name, extract(epoch from lease_until - now())::float8"
                " from ft_nodes where lease_until > now()"
            ).fetchall()
        )
        return {str(name): float(str(left)) for name, left in rows}

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.settings.node_lease / 3):
            self.renew()

    def close(self) -> None:
        """Stop renewing and leave the cluster (this node's slots go with its row)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self.db.run(
                lambda conn: conn.execute("delete from ft_nodes where name = %s", (self.name,))
            )
        except (SharedStateUnavailable, psycopg.Error) as exc:
            log.warning("could not remove node %s from the shared state: %s", self.name, exc)
        self.db.close()


@dataclass(frozen=True)
class NodeRow:
    """One node as ``ftpserver nodes`` shows it."""

    name: str
    address: str
    lease_age: float  # seconds since its last renewal
    alive: bool
    sessions: int
    transfers: int
    started: datetime


def list_nodes(url: str) -> list[NodeRow]:
    """The nodes in the shared state at ``url``, by name (raises psycopg.Error)."""
    with psycopg.connect(url, connect_timeout=5) as conn:
        return read_nodes(conn)


def read_nodes(conn: psycopg.Connection[Any]) -> list[NodeRow]:
    """The nodes in the shared state on ``conn``, by name ([] before the tables exist)."""
    exists = conn.execute("select to_regclass('ft_nodes') is not null").fetchone()
    if not exists or not exists[0]:
        return []
    rows = conn.execute(
        "select name, address, extract(epoch from now() - renewed)::float8,"
        " lease_until > now(), sessions, transfers, started from ft_nodes order by name"
    ).fetchall()
    return [
        NodeRow(str(n), str(a), float(age), bool(alive), int(s), int(t), started)
        for n, a, age, alive, s, t, started in rows
    ]
