"""The PostgreSQL shared state (ftpserver.cluster): the same answers as the in-process classes.

Two or three :class:`ClusterState` nodes on one fresh database (a real,
throwaway PostgreSQL from ``services.py``) are driven side by side with
:mod:`ftpserver.guards`' classes; leases, dead nodes, the schema and an
unreachable database are checked too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import psycopg
import pytest
from conftest import wait_until
from services import Postgres, find_pg_bin, free_port, pg_url, postgres  # noqa: F401

from ftpproto.errors import ProtocolError
from ftpserver.cluster.database import SCHEMA_VERSION, SharedStateUnavailable
from ftpserver.cluster.node import ClusterState, list_nodes
from ftpserver.config import Settings
from ftpserver.guards import Bandwidth, BanList, SessionLimiter
from ftpserver.state.ledger import QuotaBook, Unmeasured
from ftpserver.usersessions import UserSessions

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]

Node = Callable[..., ClusterState]


@pytest.fixture
def node(pg_url: str) -> Iterator[Node]:  # noqa: F811
    """A factory: ``node(name, **settings)`` is a started ClusterState on the test database."""
    made: list[ClusterState] = []

    def make(name: str, url: str = pg_url, **changes: object) -> ClusterState:
        fields: dict[str, object] = {"shared_state": url, "node_name": name, "node_lease": 3.0}
        fields.update(changes)
        settings = Settings(**fields)  # type: ignore[arg-type]
        state = ClusterState(settings)
        made.append(state)
        state.start(("127.0.0.1", 9000 + len(made)), lambda: settings, lambda: (0, 0))
        return state

    yield make
    for state in made:
        state.close()


def test_session_slots_count_every_node(node: Node) -> None:
    a = node("a", max_sessions=3, max_sessions_per_ip=2)
    b = node("b", max_sessions=3, max_sessions_per_ip=2)
    local = SessionLimiter(3, 2)
    steps: list[tuple[ClusterState, str, str]] = [
        (a, "acquire", "10.0.0.1"),
        (b, "acquire", "10.0.0.1"),
        (a, "acquire", "10.0.0.1"),  # a third from one address, across nodes
        (b, "acquire", "10.0.0.2"),
        (a, "acquire", "10.0.0.3"),  # a fourth in total
        (a, "release", "10.0.0.1"),
        (b, "acquire", "10.0.0.1"),
        (b, "acquire", "10.0.0.3"),
    ]
    for state, method, ip in steps:
        expected = getattr(local, method)(ip)
        assert getattr(state.slots, method)(ip) == expected, (state.name, method, ip)
    assert a.slots.counts() == {} and b.slots.counts() == {"10.0.0.1": 2, "10.0.0.2": 1}


def test_a_dead_nodes_slots_are_released_when_its_lease_runs_out(node: Node, pg_url: str) -> None:  # noqa: F811
    a = node("a", max_sessions_per_ip=2)
    b = node("b", max_sessions_per_ip=2)
    assert a.slots.acquire("10.0.0.9") is None and a.slots.acquire("10.0.0.9") is None
    a._stop.set()  # a dies: no more renewals, nothing given back
    assert b.slots.acquire("10.0.0.9") == "too many sessions from your address"
    died = time.monotonic()
    while b.slots.acquire("10.0.0.9") is not None:
        assert time.monotonic() - died < 3.0 + 2.0, "the dead node's slots were not released"
        time.sleep(0.2)
    b.renew()  # sweeps the dead node's row
    names = [row.name for row in list_nodes(pg_url)]
    assert names == ["b"]


def test_a_node_that_comes_back_writes_its_slots_again(node: Node, pg_url: str) -> None:  # noqa: F811
    a = node("a", max_sessions_per_ip=1)
    assert a.slots.acquire("10.0.1.1") is None
    with psycopg.connect(pg_url, autocommit=True) as conn:  # as if the others had swept it
        conn.execute("delete from ft_nodes where name = 'a'")
    assert a.renew()
    b = node("b", max_sessions_per_ip=1)
    assert b.slots.acquire("10.0.1.1") == "too many sessions from your address"
    a.slots.release("10.0.1.1")
    assert b.slots.acquire("10.0.1.1") is None


def test_bans_are_shared_and_match_the_in_process_list(node: Node) -> None:
    rules = {"ban_failures": 3, "ban_window": 60.0, "ban_time": 1.5}
    a, b = node("a", **rules), node("b", **rules)
    local = BanList(3, 60.0, 1.5)
    for state, ip in [(a, "10.1.0.1"), (b, "10.1.0.1"), (a, "10.1.0.2"), (b, "10.1.0.1")]:
        assert state.bans.failure(ip) == local.failure(ip)
    for state in (a, b):
        assert state.bans.is_banned("10.1.0.1") and not state.bans.is_banned("10.1.0.2")
    time.sleep(1.7)
    assert not a.bans.is_banned("10.1.0.1") and not local.is_banned("10.1.0.1")
    assert not node("c", ban_failures=0).bans.failure("10.1.0.3")  # 0: no bans


def test_bandwidth_is_one_bucket_for_all_nodes(node: Node) -> None:
    a, b = node("a"), node("b")
    local = Bandwidth()
    rate = 100_000
    assert a.bandwidth.take("alice", "get", rate, rate) == local.take("alice", "get", rate, rate)
    wait = b.bandwidth.take("alice", "get", rate, 50_000)
    assert wait == pytest.approx(local.take("alice", "get", rate, 50_000), abs=0.05)
    assert 0.4 < wait <= 0.5
    assert a.bandwidth.take("alice", "put", rate, 10) == 0.0  # another direction
    assert a.bandwidth.take("bob", "get", rate, 10) == 0.0  # another user


def test_the_schema_is_versioned_and_created_once(node: Node, pg_url: str) -> None:  # noqa: F811
    for name in "abc":
        node(name)
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("select version from ft_schema order by version").fetchall()
    assert rows == [(v,) for v in range(1, SCHEMA_VERSION + 1)]


def test_an_unreachable_database_refuses_sessions_and_paces_locally(node: Node) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/none"
    down = node("down", url=url)
    assert not down.healthy()
    assert down.slots.acquire("10.2.0.1") == "shared state unavailable"
    with pytest.raises(SharedStateUnavailable) as info:
        down.bans.is_banned("10.2.0.1")
    assert info.value.code == 421 and str(info.value) == "shared state unavailable"
    assert down.bandwidth.take("alice", "get", 1000, 2000) == pytest.approx(1.0, abs=0.05)


def test_a_node_started_before_its_database_joins_when_it_comes_up(node: Node) -> None:
    bin_dir = find_pg_bin()
    assert bin_dir is not None  # the postgres fixture found it
    late = Postgres(bin_dir)
    try:
        early = node("early", url=late.url())
        assert not early.healthy()
        assert early.slots.acquire("10.3.0.1") == "shared state unavailable"
        late.start()
        assert wait_until(early.healthy, timeout=15, step=0.2)
        assert early.slots.acquire("10.3.0.1") is None
        assert [row.name for row in list_nodes(late.url())] == ["early"]
        early.close()
    finally:
        late.close()


def test_the_quota_ledger_matches_the_book_across_nodes(node: Node) -> None:
    a, b = node("a"), node("b")
    book = QuotaBook()
    mib = 1024 * 1024
    for ledger in (a.quotas, book):
        with pytest.raises(Unmeasured):
            ledger.usage("carol", 10 * mib, 100 * mib)
    for ledger in (a.quotas, book):
        ledger.record("carol", 0)
    # two 6 MiB uploads against 10 MiB, on two nodes: the second is refused
    first = a.quotas.reserve("carol", 10 * mib, 6 * mib, 0, 100 * mib, "t1")
    book_first = book.reserve("carol", 10 * mib, 6 * mib, 0, 100 * mib, "t1")
    for ledger in (b.quotas, book):
        with pytest.raises(ProtocolError) as info:
            ledger.reserve("carol", 10 * mib, 6 * mib, 0, 100 * mib, "t2")
        assert info.value.code == 508 and "quota exceeded" in str(info.value)
    assert b.quotas.usage("carol", 10 * mib, 100 * mib) == book.usage("carol", 10 * mib, 100 * mib)
    b.quotas.record("dave", 0)
    with pytest.raises(ProtocolError) as info:  # the disk is shared: 6 MiB of 8 held
        b.quotas.reserve("dave", None, 3 * mib, 0, 8 * mib, "t3")
    assert info.value.code == 507
    a.quotas.settle("carol", 6 * mib, 10 * mib, first)
    book.settle("carol", 6 * mib, 10 * mib, book_first)
    assert first.quota_bytes == first.disk_bytes == 0
    assert a.quotas.usage("carol", 10 * mib, 100 * mib) == book.usage("carol", 10 * mib, 100 * mib)
    a.quotas.release(first)  # twice: nothing happens
    for ledger in (b.quotas, book):
        with pytest.raises(ProtocolError):
            ledger.settle("carol", 5 * mib, 10 * mib)  # over the quota: nothing counted
        ledger.settle("carol", -mib)
    assert b.quotas.usage("carol", 10 * mib, 100 * mib).used == 5 * mib


def test_a_dead_nodes_reservations_stop_counting(node: Node) -> None:
    a, b = node("a"), node("b")
    mib = 1024 * 1024
    a.quotas.record("erin", 0)
    a.quotas.reserve("erin", 10 * mib, 8 * mib, 0, 100 * mib, "t")
    assert b.quotas.usage("erin", 10 * mib, 100 * mib).reserved == 8 * mib
    a._stop.set()  # a dies holding the reservation
    assert wait_until(
        lambda: b.quotas.usage("erin", 10 * mib, 100 * mib).reserved == 0, timeout=3.0 + 2.0
    )
    b.quotas.reserve("erin", 10 * mib, 8 * mib, 0, 100 * mib, "t")


def test_user_sessions_count_every_node(node: Node) -> None:
    a, b = node("a"), node("b")
    local = UserSessions()
    steps: list[tuple[ClusterState, str, tuple[object, ...]]] = [
        (a, "acquire", ("carol", 2)),
        (b, "acquire", ("carol", 2)),
        (a, "acquire", ("carol", 2)),  # a third across nodes: refused
        (b, "acquire", ("dora", 0)),  # 0: no limit
        (b, "release", ("carol",)),
        (a, "acquire", ("carol", 2)),
    ]
    for state, method, args in steps:
        expected = getattr(local, method)(*args)
        assert getattr(state.user_slots, method)(*args) == expected, (state.name, method, args)
    a._stop.set()  # a dies with two of carol's sessions
    assert wait_until(lambda: b.user_slots.acquire("carol", 2), timeout=3.0 + 2.0)


def test_record_first_keeps_figures_another_node_recorded(node: Node) -> None:
    """A measurement made because the ledger had none loses to one recorded meanwhile."""
    a, b = node("a"), node("b")
    a.quotas.record("fay", 7, first=True)
    b.quotas.record("fay", 9, first=True)  # measured after a's: a's figure and settles stay
    assert b.quotas.usage("fay", None, 100).used == 7
    b.quotas.record("fay", 9)  # a plain record sets it
    assert a.quotas.usage("fay", None, 100).used == 9
