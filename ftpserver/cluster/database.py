"""The PostgreSQL connection pool of a node, and the tables it creates and upgrades.

:class:`Database` wraps a ``psycopg_pool.ConnectionPool`` (autocommit
connections; a unit of work that needs a transaction opens one).  A
connection or pool failure is retried on another connection, then raised as
:class:`SharedStateUnavailable`, a ``421`` reply ("shared state
unavailable") wherever a session meets it.  Each call can be timed
(:attr:`Database.observe`, the metrics' shared-state latency), named by the
function that made it (``PgBans.is_banned``, ``ClusterState.renew`` ...).
The sessions' own round trips go through :mod:`ftpserver.cluster.prepared`.

:func:`migrate` brings the schema to :data:`SCHEMA_VERSION`, one numbered
step at a time, under a PostgreSQL advisory lock, so several nodes starting
at once run each step once.  Steps add tables, columns, indexes and
functions, and a step that rewrites a function keeps its signature and
answers (step 6 makes ``ft_open``, ``ft_release`` and ``ft_user_release``
call the batched ones): a node of the previous release keeps working on a
newer schema, which is what lets nodes be upgraded one by one.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from ftpproto.errors import ErrorCode, ProtocolError

__all__ = [
    "LOCK_BANS",
    "LOCK_QUOTA",
    "LOCK_SLOTS",
    "LOCK_USERS",
    "SCHEMA_VERSION",
    "Database",
    "SharedStateUnavailable",
    "migrate",
]

log = logging.getLogger("ftpserver.cluster")
T = TypeVar("T")

# Advisory lock keys (one application-wide namespace: "FT" in ASCII, then a number).
LOCK_MIGRATE = 0x4654_0001
LOCK_SLOTS = 0x4654_0002
LOCK_BANS = 0x4654_0003  # with a second key: hashtext(ip)
LOCK_QUOTA = 0x4654_0004
LOCK_USERS = 0x4654_0005  # with a second key: hashtext(user name)


def _give_back_many(function: str, array: str, table: str, column: str) -> str:
    """SQL for ``function(node_name, array)``: one slot of ``table`` given back per element.

    An element may repeat.  Each row is locked before it is counted down or
    deleted, in the byte order of the keys (the order in which a node sends
    a batch of starts, so the two never deadlock).
    """
    return f"""create or replace function {function}(node_name text, {array} text[])
        returns void language plpgsql as $$
        declare
            item text;
            gone bigint;
            held integer;
        begin
            for item, gone in
                select k, count(*) from unnest({array}) as k group by k order by k collate "C"
            loop
                select s.count into held from {table} s
                    where s.node = node_name and s.{column} = item for update;
                if held > gone then
                    update {table} s set count = held - gone
                        where s.node = node_name and s.{column} = item;
                elsif held is not null then
                    delete from {table} s where s.node = node_name and s.{column} = item;
                end if;
            end loop;
        end $$"""


MIGRATIONS: list[tuple[str, ...]] = [
    (  # 1: nodes and their leases, session slots, failed logins and bans, bandwidth
        """create table ft_nodes (
            name text primary key,
            address text not null,
            started timestamptz not null default now(),
            renewed timestamptz not null default now(),
            lease_until timestamptz not null,
            sessions integer not null default 0,
            transfers integer not null default 0)""",
        """create table ft_slots (
            node text not null references ft_nodes (name) on delete cascade,
            ip text not null,
            count integer not null check (count > 0),
            primary key (node, ip))""",
        "create table ft_failures (ip text not null, at timestamptz not null)",
        "create index ft_failures_ip_at on ft_failures (ip, at)",
        "create table ft_bans (ip text primary key, until timestamptz not null)",
        """create table ft_buckets (
            user_name text not null,
            direction text not null,
            rate bigint not null,
            tokens double precision not null,
            stamp timestamptz not null,
            primary key (user_name, direction))""",
    ),
    (  # 2: one round trip each for taking and giving back a slot and counting a failure
        """create or replace function ft_acquire(
            lock_key bigint, node_name text, client text, max_total integer, max_per_ip integer)
        returns text language plpgsql as $$
        declare
            total bigint;
            from_ip bigint;
        begin
            perform pg_advisory_xact_lock(lock_key);
            select coalesce(sum(s.count), 0), coalesce(sum(s.count) filter (where s.ip = client), 0)
                into total, from_ip
                from ft_slots s join ft_nodes n on n.name = s.node
                where n.lease_until > now();
            if max_total > 0 and total >= max_total then
                return 'too many sessions on the server';
            end if;
            if max_per_ip > 0 and from_ip >= max_per_ip then
                return 'too many sessions from your address';
            end if;
            insert into ft_slots (node, ip, count) values (node_name, client, 1)
                on conflict (node, ip) do update set count = ft_slots.count + 1;
            return null;
        end $$""",
        """create or replace function ft_release(node_name text, client text)
        returns void language sql as $$
            delete from ft_slots where node = node_name and ip = client and count <= 1;
            update ft_slots set count = count - 1 where node = node_name and ip = client;
        $$""",
        """create or replace function ft_failure(
            lock_key integer, client text, win double precision, most integer,
            ban double precision)
        returns boolean language plpgsql as $$
        declare
            seen bigint;
        begin
            perform pg_advisory_xact_lock(lock_key, hashtext(client));
            insert into ft_failures (ip, at) values (client, now());
            delete from ft_failures where ip = client and at <= now() - win * interval '1 second';
            select count(*) into seen from ft_failures where ip = client;
            if seen < most then
                return false;
            end if;
            insert into ft_bans (ip, until) values (client, now() + ban * interval '1 second')
                on conflict (ip) do update set until = excluded.until;
            delete from ft_failures where ip = client;
            return true;
        end $$""",
    ),
    (  # 3: the quota ledger: bytes used per user, upload reservations per node
        """create table ft_usage (
            user_name text primary key,
            used bigint not null,
            measured timestamptz not null default now())""",
        """create table ft_reservations (
            id bigserial primary key,
            node text not null references ft_nodes (name) on delete cascade,
            user_name text not null,
            quota_bytes bigint not null,
            disk_bytes bigint not null,
            temp text not null default '',
            made timestamptz not null default now())""",
        "create index ft_reservations_user on ft_reservations (user_name)",
    ),
    (  # 4: logged-in sessions per user (each user's max_sessions)
        """create table ft_user_slots (
            node text not null references ft_nodes (name) on delete cascade,
            user_name text not null,
            count integer not null check (count > 0),
            primary key (node, user_name))""",
        """create or replace function ft_user_acquire(
            lock_key integer, node_name text, who text, most integer)
        returns boolean language plpgsql as $$
        declare
            open_now bigint;
        begin
            perform pg_advisory_xact_lock(lock_key, hashtext(who));
            select coalesce(sum(s.count), 0) into open_now
                from ft_user_slots s join ft_nodes n on n.name = s.node
                where s.user_name = who and n.lease_until > now();
            if most > 0 and open_now >= most then
                return false;
            end if;
            insert into ft_user_slots (node, user_name, count) values (node_name, who, 1)
                on conflict (node, user_name) do update set count = ft_user_slots.count + 1;
            return true;
        end $$""",
        """create or replace function ft_user_release(node_name text, who text)
        returns void language sql as $$
            delete from ft_user_slots where node = node_name and user_name = who and count <= 1;
            update ft_user_slots set count = count - 1 where node = node_name and user_name = who;
        $$""",
    ),
    (  # 5: a session's start takes its slot and learns whether its address is banned at once
        """create or replace function ft_open(
            lock_key bigint, node_name text, client text, max_total integer, max_per_ip integer,
            out refused text, out banned boolean)
        language plpgsql as $$
        begin
            refused := ft_acquire(lock_key, node_name, client, max_total, max_per_ip);
            banned := exists (select 1 from ft_bans b where b.ip = client and b.until > now());
        end $$""",
    ),
    (  # 6: the session starts and ends of a node sent together (ftpserver.cluster.batching)
        # Slots for clients, in this order, under one cluster-wide lock (only with a
        # limit set); a row per client: why it was refused (null: taken), whether banned.
        # The node sends them sorted by code point, the order (collation "C") in which
        # the give-backs below lock their rows, so that a batch of each never deadlock.
        """create or replace function ft_open_many(
            lock_key bigint, node_name text, clients text[], max_total integer,
            max_per_ip integer)
        returns table (refused text, banned boolean)
        language plpgsql as $$
        declare
            total bigint := 0;
            from_ip bigint;
            client text;
        begin
            if max_total > 0 or max_per_ip > 0 then
                perform pg_advisory_xact_lock(lock_key);
            end if;
            if max_total > 0 then
                select coalesce(sum(s.count), 0) into total
                    from ft_slots s join ft_nodes n on n.name = s.node
                    where n.lease_until > now();
            end if;
            foreach client in array clients loop
                refused := null;
                banned := exists (select 1 from ft_bans b where b.ip = client and b.until > now());
                if max_total > 0 and total >= max_total then
                    refused := 'too many sessions on the server';
                elsif max_per_ip > 0 then
                    select coalesce(sum(s.count), 0) into from_ip
                        from ft_slots s join ft_nodes n on n.name = s.node
                        where s.ip = client and n.lease_until > now();
                    if from_ip >= max_per_ip then
                        refused := 'too many sessions from your address';
                    end if;
                end if;
                if refused is null then
                    update ft_slots s set count = s.count + 1
                        where s.node = node_name and s.ip = client;
                    if not found then
                        insert into ft_slots as s (node, ip, count) values (node_name, client, 1)
                            on conflict (node, ip) do update set count = s.count + 1;
                    end if;
                    total := total + 1;
                end if;
                return next;
            end loop;
        end $$""",
        # Give-backs that lock their row first: version 2's delete-then-update,
        # two at once for one address, could break the count > 0 check and
        # leave the slot counted for good.
        _give_back_many("ft_release_many", "clients", "ft_slots", "ip"),
        _give_back_many("ft_user_release_many", "names", "ft_user_slots", "user_name"),
        # The single ones (nodes of version 5) do the same.
        """create or replace function ft_open(
            lock_key bigint, node_name text, client text, max_total integer, max_per_ip integer,
            out refused text, out banned boolean)
        language plpgsql as $$
        begin
            select o.refused, o.banned into refused, banned
                from ft_open_many(lock_key, node_name, array[client], max_total, max_per_ip) o;
        end $$""",
        """create or replace function ft_release(node_name text, client text)
        returns void language sql as $$ select ft_release_many(node_name, array[client]) $$""",
        """create or replace function ft_user_release(node_name text, who text)
        returns void language sql as $$ select ft_user_release_many(node_name, array[who]) $$""",
    ),
]
SCHEMA_VERSION = len(MIGRATIONS)


class SharedStateUnavailable(ProtocolError):
    """The shared state's database cannot be reached: a ``421`` for the session."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(ErrorCode.TOO_MANY_SESSIONS, "shared state unavailable")
        self.detail = detail


class Database:
    """A pool of connections to ``url``; :meth:`run` a unit of work on one of them."""

    def __init__(self, url: str, timeout: float = 3.0, max_size: int = 8) -> None:
        self.url = url
        self.timeout = timeout
        self.max_size = max_size
        self.pool = self._new_pool()
        self.observe: Callable[[str, float], None] | None = None  # (operation, seconds)

    def _new_pool(self) -> ConnectionPool[psycopg.Connection[tuple[object, ...]]]:
        return ConnectionPool(
            self.url,
            min_size=1,
            max_size=self.max_size,
            open=False,
            timeout=self.timeout,
            kwargs={"autocommit": True, "connect_timeout": max(1, math.ceil(self.timeout))},
            name="ftpserver-shared-state",
        )

    def open(self) -> None:
        """Start the pool (connections are made in the background)."""
        self.pool.open(wait=False)

    def reset(self) -> None:
        """Start over with a new pool (after a failure: no reconnection back-off carried over).

        Work running on the old pool finishes there; the old pool is closed
        in the background.
        """
        old, self.pool = self.pool, self._new_pool()
        self.pool.open(wait=False)
        threading.Thread(target=old.close, kwargs={"timeout": 5.0}, daemon=True).start()

    def run(
        self,
        work: Callable[[psycopg.Connection[tuple[object, ...]]], T],
        operation: str | None = None,
    ) -> T:
        """``work(connection)``; a broken connection is retried on another (three tries).

        ``operation`` names it in :attr:`observe` (default: the function that
        made ``work``).  Raises :class:`SharedStateUnavailable` when the
        database cannot be reached.
        """
        if self.observe is None:
            return self._run(work)
        started = time.perf_counter()
        try:
            return self._run(work)
        finally:
            self.observe(operation or operation_of(work), time.perf_counter() - started)

    def _run(self, work: Callable[[psycopg.Connection[tuple[object, ...]]], T]) -> T:
        failure: Exception | None = None
        for _attempt in range(3):
            try:
                with self.pool.connection() as conn:
                    return work(conn)
            except PoolClosed as exc:  # replaced meanwhile (reset): try the new one
                failure = exc
            except PoolTimeout as exc:
                failure = exc
                break
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                failure = exc  # the pool drops the broken connection; try another
        raise SharedStateUnavailable(str(failure).strip().splitlines()[0] if failure else "")

    def close(self) -> None:
        self.pool.close(timeout=2.0)


def operation_of(work: Callable[..., object]) -> str:
    """The function that made ``work`` (``PgBans.is_banned`` for its nested ``work``)."""
    return getattr(work, "__qualname__", "work").split(".<locals>", 1)[0]


def migrate(db: Database) -> int:
    """Create or upgrade the tables to :data:`SCHEMA_VERSION`; the version found before."""

    def work(conn: psycopg.Connection[tuple[object, ...]]) -> int:
        with conn.transaction():
            conn.execute("select pg_advisory_xact_lock(%s)", (LOCK_MIGRATE,))
            conn.execute("create table if not exists ft_schema (version integer not null)")
            row = conn.execute("select coalesce(max(version), 0) from ft_schema").fetchone()
            found = int(str(row[0])) if row else 0
            for version in range(found + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[version - 1]:
                    conn.execute(statement.encode())
                conn.execute("insert into ft_schema (version) values (%s)", (version,))
                log.info("shared state: schema upgraded to version %d", version)
            if found > SCHEMA_VERSION:
                log.info(
                    "shared state: schema version %d is newer than this node's %d",
                    found,
                    SCHEMA_VERSION,
                )
            return found

    return db.run(work)
