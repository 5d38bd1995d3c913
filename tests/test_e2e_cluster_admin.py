"""The administrator's services on cluster nodes: control socket, metrics and ``/healthz``.

Two real ``ftpserver serve`` nodes (``tests/cluster_nodes.py``) on one
throwaway PostgreSQL of this module's own (stopping it hurts no other test):
node ``a`` serving alone (``workers: 1``) and node ``b`` with two workers,
each with a control socket and ``metrics_listen``.  ``status`` lists the
nodes, ``sessions`` and ``kick`` are each node's own, ``ftpserver nodes``
counts running transfers, ``bans`` shows the
cluster's bans and an ``unban`` through ``a`` lifts a ban on ``b``; a scrape
shows the shared-state latency histogram, and ``/healthz`` answers 503 while
PostgreSQL is stopped and 200 again once it is back.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cluster_nodes import Node, Nodes, Session
from conftest import (
    ALICE,
    ALICE_PASSWORD,
    BOB,
    BOB_PASSWORD,
    HOST,
    RunFtpserver,
    wait_until,
)
from services import Postgres, free_port, started_postgres
from test_e2e_admin import admin, admin_ok
from test_e2e_cluster import RATE, base_settings, login_code
from test_e2e_metrics import fetch, scrape

from ftpclient.client import FileTransferClient

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

BANNED = "127.0.0.5"


@pytest.fixture(scope="module")
def pg() -> Iterator[Postgres]:
    """This module's own PostgreSQL (one for all its tests)."""
    yield from started_postgres()


@pytest.fixture
def nodes(tmp_path: Path, pg: Postgres) -> Iterator[Nodes]:
    made = Nodes(tmp_path, base_settings(tmp_path, pg.create_database()))
    try:
        yield made
    finally:
        made.stop_all()


def start_node(nodes: Nodes, name: str, workers: int) -> tuple[Node, str]:
    """Node ``name`` with a control socket (``NAME.sock``) and metrics; it and its metrics URL."""
    port = free_port()
    node = nodes.start(
        name,
        workers=workers,
        control_socket=f"{name}.sock",
        metrics_listen=f"127.0.0.1:{port}",
    )
    return node, f"http://127.0.0.1:{port}"


def healthy(base: str) -> Callable[[], bool]:
    """Whether the ``/healthz`` at ``base`` answers 200 ``ok``, to ask again and again."""
    return lambda: fetch(f"{base}/healthz") == (200, "ok\n")


def test_status_sessions_bans_and_unban_across_nodes(
    nodes: Nodes, ftpserver_cli: RunFtpserver
) -> None:
    a, a_metrics = start_node(nodes, "a", 1)
    b, b_metrics = start_node(nodes, "b", 2)
    opened: list[Session] = []
    try:
        on_a, on_b = Session(a.port), Session(b.port)
        opened += [on_a, on_b]
        assert login_code(on_a) == 0 and login_code(on_b) == 0

        # status: this node's sessions, and every node with its lease and sessions
        status = admin_ok(ftpserver_cli, a.config, "status")
        assert "sessions: 1\n" in status and "nodes: 3\n" in status, status
        listed = {line.split()[0]: line for line in status.splitlines() if line.startswith("  ")}
        assert set(listed) == {"a", "b/0", "b/1"}, status
        assert f" 127.0.0.1:{a.port} lease " in listed["a"], status

        def counted() -> bool:  # as of the node's last lease renewal (node_lease / 3)
            text = admin_ok(ftpserver_cli, a.config, "status")
            return ", 1 sessions, 0 transfers" in next(
                line for line in text.splitlines() if line.startswith("  a ")
            )

        assert wait_until(counted, timeout=10)
        assert "sessions: 1\n" in admin_ok(ftpserver_cli, b.config, "status")

        # sessions and kick: each node's own (b's through its workers)
        for node in (a, b):
            rows = json.loads(admin_ok(ftpserver_cli, node.config, "sessions", "--json"))
            assert [row["user"] for row in rows] == [ALICE], rows
        kicked = admin_ok(ftpserver_cli, b.config, "kick", "--user", ALICE)
        assert kicked.startswith("ended session "), kicked
        assert wait_until(
            lambda: json.loads(admin_ok(ftpserver_cli, b.config, "sessions", "--json")) == [],
            timeout=10,
        )
        assert len(json.loads(admin_ok(ftpserver_cli, a.config, "sessions", "--json"))) == 1

        # bans: failed logins spread over both nodes ban the address everywhere
        assert admin_ok(ftpserver_cli, a.config, "bans") == "no bans\n"
        for node in (a, b, b):  # ban_failures: 3
            bad = Session(node.port, BANNED)
            opened.append(bad)
            assert login_code(bad, ALICE, "wrong") == 430
            bad.close()  # max_sessions_per_ip: 2
        for node in (a, b):
            rows = json.loads(admin_ok(ftpserver_cli, node.config, "bans", "--json"))
            assert [row["ip"] for row in rows] == [BANNED], rows
            assert "bans: 1\n" in admin_ok(ftpserver_cli, node.config, "status")
        refused = Session(b.port, BANNED)
        opened.append(refused)
        assert login_code(refused) == 430
        refused.close()

        # an unban through a lifts the ban on b
        assert admin_ok(ftpserver_cli, a.config, "unban", BANNED) == f"unbanned {BANNED}\n"
        again = Session(b.port, BANNED)
        opened.append(again)
        assert login_code(again) == 0
        assert admin_ok(ftpserver_cli, b.config, "bans") == "no bans\n"
        twice = admin(ftpserver_cli, b.config, "unban", BANNED)
        assert twice.returncode == 1 and f"{BANNED} is not banned" in twice.stderr

        # reload works on a node with workers
        assert admin_ok(ftpserver_cli, b.config, "reload").startswith("reloaded")

        # metrics: the latency of each node's calls to PostgreSQL, by operation
        for base in (a_metrics, b_metrics):
            samples = scrape(base)
            starts = 'ftpserver_shared_state_seconds_count{operation="PgSessionSlots.acquire"}'
            assert samples.get(starts, 0) >= 1, sorted(samples)
            renewals = 'ftpserver_shared_state_seconds_count{operation="ClusterState.renew"}'
            assert samples.get(renewals, 0) >= 1, sorted(samples)
            assert samples["ftpserver_bans"] == 0
        assert scrape(a_metrics)["ftpserver_sessions"] == 1
        assert scrape(b_metrics)["ftpserver_sessions"] == 1  # the unbanned session
        assert fetch(f"{a_metrics}/healthz") == (200, "ok\n")
    finally:
        for session in opened:
            session.close()


def test_nodes_count_running_transfers(
    nodes: Nodes, tmp_path: Path, ftpserver_cli: RunFtpserver
) -> None:
    a, _ = start_node(nodes, "a", 1)
    data = b"t" * (3 * RATE)  # bob downloads at RATE: about 2 s
    (tmp_path / "homes" / BOB / "slow.bin").write_bytes(data)
    client = FileTransferClient(HOST, a.port, timeout=30)
    client.login(BOB, BOB_PASSWORD)
    idle = FileTransferClient(HOST, a.port, timeout=30)  # a session without a transfer
    idle.login(ALICE, ALICE_PASSWORD)
    getting = threading.Thread(target=client.get, args=("slow.bin", str(tmp_path / "copy.bin")))
    getting.start()
    try:

        def row_of_a() -> list[str]:
            listed = admin_ok(ftpserver_cli, a.config, "nodes").splitlines()
            assert listed[0].split() == ["NODE", "ADDRESS", "LEASE", "AGE", "SESSIONS", "TRANSFERS"]
            return next(line.split() for line in listed[1:] if line.startswith("a "))

        assert wait_until(lambda: row_of_a()[-2:] == ["2", "1"], timeout=10), row_of_a()
    finally:
        getting.join(timeout=30)
        client.close()
        idle.close()
    assert (tmp_path / "copy.bin").read_bytes() == data
    assert wait_until(lambda: row_of_a()[-2:] == ["0", "0"], timeout=10), row_of_a()


def test_healthz_follows_the_database(
    nodes: Nodes, pg: Postgres, ftpserver_cli: RunFtpserver
) -> None:
    a, a_metrics = start_node(nodes, "a", 1)
    b, b_metrics = start_node(nodes, "b", 2)
    for base in (a_metrics, b_metrics):
        assert fetch(f"{base}/healthz") == (200, "ok\n")
    pg.run_ctl("stop")
    try:
        for base in (a_metrics, b_metrics):
            status, body = fetch(f"{base}/healthz")
            assert status == 503 and body.startswith("shared state unavailable: "), body
        away = admin(ftpserver_cli, a.config, "bans")
        assert away.returncode == 1 and "shared state unavailable" in away.stderr, away
        status = admin_ok(ftpserver_cli, b.config, "status")  # what the node knows itself
        assert "sessions: 0\n" in status and "bans: unknown (shared state unavailable" in status
        assert scrape(b_metrics)  # the counters are still served
    finally:
        pg.run_ctl("start")
    for base in (a_metrics, b_metrics):
        assert wait_until(healthy(base), timeout=30, step=0.5)
    assert admin_ok(ftpserver_cli, a.config, "bans") == "no bans\n"
