"""What the PostgreSQL shared state costs a session, and that it stays exact under concurrency.

A real server (in this process, ``workers: 1``) whose shared state is a
:class:`ClusterState` on a throwaway PostgreSQL (``services.py``), driven by
the real client: the round trips to the database are counted per step
(session start, login, commands, quit, upload, download), so that a change
that makes ``pwd``/``ls``/``stat`` or a download touch the database, or a
login or an upload cost more, shows (docs/CLUSTER.md has the table).
Then many threads take and give back slots while the node writes its
counts back whole (:meth:`resync`), and the table must end as the node's
own counts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import psycopg
import pytest
from conftest import ALICE, ALICE_PASSWORD, CLIENT_TIMEOUT, HOST, wait_until, write_users_file
from services import Postgres, find_pg_bin, free_port, pg_url, postgres  # noqa: F401

from ftpclient.client import FileTransferClient
from ftpproto.errors import ErrorCode, RemoteError
from ftpserver.cluster import pgstate
from ftpserver.cluster.node import ClusterState
from ftpserver.cluster.serving import join, leave
from ftpserver.config import Settings
from ftpserver.server import FileTransferServer
from ftpserver.users import load_users

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]

T = TypeVar("T")


class Counted:
    """A node whose database round trips from session threads are counted."""

    def __init__(self, state: ClusterState, server: FileTransferServer) -> None:
        self.state = state
        self.server = server
        self.calls = 0
        self.delay = 0.0  # seconds each round trip is held back (a slower network)
        self.before: Callable[[], None] | None = None  # run before each round trip
        self._lock = threading.Lock()
        run = state.db.run

        def counting(
            work: Callable[[psycopg.Connection[tuple[object, ...]]], T],
            operation: str | None = None,
        ) -> T:
            if threading.current_thread().name != "node-lease":
                with self._lock:
                    self.calls += 1
                time.sleep(self.delay)
                if self.before is not None:
                    self.before()
            return run(work, operation)

        state.db.run = counting  # type: ignore[method-assign]

    def take(self) -> int:
        """The round trips counted since the last call."""
        with self._lock:
            calls, self.calls = self.calls, 0
        return calls


@pytest.fixture
def counted(tmp_path: Path, pg_url: str) -> Iterator[Counted]:  # noqa: F811
    homes = tmp_path / "homes"
    users = write_users_file(tmp_path / "users.yaml", homes, {ALICE: (ALICE_PASSWORD, {})})
    settings = Settings(
        host=HOST,
        port=0,
        users=users,
        home=homes,
        workers=1,
        shared_state=pg_url,
        node_name="costs",
        node_lease=600.0,  # no renewal during the test
        fsync_uploads=False,
    )
    state = ClusterState(settings)
    server = FileTransferServer(settings, load_users(users, homes), shared=state.shared)
    join(state, server)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    try:
        yield Counted(state, server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        leave(state)


def test_a_command_costs_no_round_trip_a_session_two(counted: Counted, tmp_path: Path) -> None:
    (tmp_path / "homes" / ALICE / "a.txt").write_bytes(b"x" * 10)
    for _ in range(3):  # the first session also fills the password cache
        counted.take()
        client = FileTransferClient(HOST, counted.server.address[1], timeout=CLIENT_TIMEOUT)
        assert wait_until(lambda: counted.calls >= 1), "the session start took no slot"
        assert counted.take() == 1  # the session slot and the ban check (ft_open)
        assert client.login(ALICE, ALICE_PASSWORD) == ALICE
        assert counted.take() == 0  # banned or not: from ft_open (no max_sessions: no user slot)
        for _ in range(10):
            assert client.pwd() == "/"
            assert [e.name for e in client.ls("/")] == ["a.txt"]
            assert client.stat("a.txt").size == 10
        assert counted.take() == 0, "plain commands went to the database"
        client.quit()
        client.close()
        assert wait_until(lambda: counted.calls >= 1), "the slot was not given back"
        assert counted.take() == 1  # the session slot back
        assert counted.state.slots.counts() == {} and counted.state.user_slots.counts() == {}


def test_a_late_login_asks_again_and_sees_a_ban_made_meanwhile(
    counted: Counted,
    pg_url: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The session start's "not banned" stands only for BAN_FRESH seconds: a later login
    asks the database again, and a ban another node made meanwhile refuses it."""
    monkeypatch.setattr(pgstate, "BAN_FRESH", 0.3)
    counted.take()
    client = FileTransferClient(HOST, counted.server.address[1], timeout=CLIENT_TIMEOUT)
    assert wait_until(lambda: counted.calls >= 1), "the session start took no slot"
    assert counted.take() == 1
    with psycopg.connect(pg_url, autocommit=True) as conn:  # as if another node banned it
        conn.execute("insert into ft_bans (ip, until) values (%s, now() + interval '1 hour')",
                     (HOST,))  # fmt: skip
    time.sleep(0.4)
    with pytest.raises(RemoteError) as refused:
        client.login(ALICE, ALICE_PASSWORD)
    assert refused.value.code == ErrorCode.LOGIN_FAILED
    assert counted.take() == 1  # the ban check, asked again
    client.close()


def test_a_download_costs_no_round_trip_and_an_upload_two(counted: Counted, tmp_path: Path) -> None:
    source = tmp_path / "up.bin"
    source.write_bytes(b"y" * 300_000)
    client = FileTransferClient(HOST, counted.server.address[1], timeout=CLIENT_TIMEOUT)
    assert client.login(ALICE, ALICE_PASSWORD) == ALICE
    client.put(str(source), "first.bin")  # the home is measured and recorded here
    for name in ("second.bin", "third.bin"):
        counted.take()
        client.put(str(source), name)
        assert counted.take() == 2  # reserve, settle
        client.get(name, str(tmp_path / name))
        assert counted.take() == 0
        assert (tmp_path / name).read_bytes() == source.read_bytes()
        assert (tmp_path / "homes" / ALICE / name).read_bytes() == source.read_bytes()
    client.quit()
    client.close()


def rows(url: str, table: str, column: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        found = conn.execute(f"select {column}, count from {table} where node = 'costs'").fetchall()
    return {str(key): int(str(count)) for key, count in found}


def test_slots_stay_exact_while_takes_race_with_a_resync(
    counted: Counted,
    pg_url: str,  # noqa: F811
) -> None:
    state = counted.state
    counted.delay = 0.002  # room for a resync between a change and its round trip
    resynced = threading.Event()  # the resyncs are over: later writes must keep the table exact
    errors: list[BaseException] = []
    kept = [0] * 6

    def churn(index: int) -> None:
        ip, user = f"10.1.0.{index % 3}", f"user{index % 2}"
        try:
            round_ = after = 0
            while after < 8:
                assert state.slots.acquire(ip) is None
                assert state.user_slots.acquire(user, 0)
                if round_ % 4:  # three of four given back, one of four kept
                    state.slots.release(ip)
                    state.user_slots.release(user)
                else:
                    kept[index] += 1
                round_ += 1
                after += resynced.is_set()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    def resyncs() -> None:
        for _ in range(30):
            state.slots.dirty = state.user_slots.dirty = True
            assert state.renew()
        resynced.set()

    threads = [threading.Thread(target=churn, args=(i,)) for i in range(6)]
    writer = threading.Thread(target=resyncs)
    for thread in threads:
        thread.start()
    writer.start()
    writer.join(timeout=60)
    resynced.set()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert sum(state.slots.counts().values()) == sum(kept)
    assert rows(pg_url, "ft_slots", "ip") == state.slots.counts()
    assert rows(pg_url, "ft_user_slots", "user_name") == state.user_slots.counts()


def test_a_resync_while_a_slot_is_given_back_writes_the_right_count(
    counted: Counted,
    pg_url: str,  # noqa: F811
) -> None:
    state = counted.state
    assert state.slots.acquire("10.2.0.1") is None and state.slots.acquire("10.2.0.1") is None
    helpers: list[threading.Thread] = []

    def resync_meanwhile() -> None:
        """A lease renewal that writes the counts back, between a change and its round trip."""
        counted.before = None  # once
        state.slots.dirty = True
        helper = threading.Thread(target=state.renew)
        helper.start()
        helper.join(timeout=0.5)  # it may wait for this give-back to finish
        helpers.append(helper)

    counted.before = resync_meanwhile
    state.slots.release("10.2.0.1")
    for helper in helpers:
        helper.join(timeout=10)
    assert state.slots.counts() == {"10.2.0.1": 1}
    assert rows(pg_url, "ft_slots", "ip") == {"10.2.0.1": 1}


def test_give_backs_at_once_for_one_address_keep_the_count_exact(
    counted: Counted,
    pg_url: str,  # noqa: F811
) -> None:
    """Sessions from one address ending together (a crowd behind one NAT, or the benchmark).

    Version 2's give-back (delete at 1, then count down) could count a row
    down to 0 when two ran at once, which its check refused: the slot then
    stayed counted in the database for as long as the node lived.
    """
    state = counted.state
    threads, rounds = 8, 6
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def give_back() -> None:
        try:
            start.wait(timeout=30)
            state.slots.release("10.3.0.1")
            state.user_slots.release("crowd")
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    for _ in range(rounds):
        for _ in range(threads):
            assert state.slots.acquire("10.3.0.1") is None
            assert state.user_slots.acquire("crowd", 0)
        workers = [threading.Thread(target=give_back) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
        assert not errors, errors
        assert state.slots.counts() == {} and state.user_slots.counts() == {}
        assert rows(pg_url, "ft_slots", "ip") == {}
        assert rows(pg_url, "ft_user_slots", "user_name") == {}
