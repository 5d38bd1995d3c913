"""Three nodes behind HAProxy (TCP, ``send-proxy-v2``, ``deploy/haproxy.cfg``), one PostgreSQL.

HAProxy from the machine (Debian's package) runs the example configuration
with the test's addresses in its environment, in front of three
``ftpserver serve`` nodes with ``proxy_protocol: true`` sharing one home
root and one database.  Test clients bind to 127.0.0.2, 127.0.0.3 ... so
HAProxy passes distinct client addresses; round-robin balancing spreads
consecutive connections over the nodes.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cluster_nodes import Node, Nodes, Session
from conftest import (
    ALICE,
    ALICE_PASSWORD,
    BOB,
    BOB_PASSWORD,
    HOST,
    digest_of,
    subprocess_env,
    wait_until,
)
from services import (  # noqa: F401  (fixtures)
    find_haproxy,
    free_port,
    pg_url,
    postgres,
    require,
    start_haproxy,
)
from test_e2e_cluster import RATE, base_settings

from ftpclient.client import FileTransferClient

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]


@dataclass
class Cluster:
    """The nodes, and HAProxy's port in front of them."""

    nodes: list[Node]
    port: int
    homes: Path
    log: Path


@pytest.fixture
def cluster(tmp_path: Path, pg_url: str) -> Iterator[Cluster]:  # noqa: F811
    settings = base_settings(tmp_path, pg_url)
    settings.update(proxy_protocol=True, proxy_trusted=["127.0.0.1/32"])
    nodes = Nodes(tmp_path, settings)
    proc: subprocess.Popen[bytes] | None = None
    try:
        started = [nodes.start(f"n{i}") for i in (1, 2, 3)]
        binary = find_haproxy()
        require(binary, "HAProxy is not installed (apt-get install haproxy)")
        assert binary is not None
        port, log = free_port(), tmp_path / "haproxy.log"
        extra = {"FT_BALANCE": "roundrobin", "FT_CHECK_INTERVAL": "500ms"}
        proc = start_haproxy(binary, port, [node.port for node in started], log, **extra)
        # every node is checked (v2 LOCAL) and up before the test starts
        assert wait_until(
            lambda: all("PROXY LOCAL" in node.log_text() for node in started), timeout=15
        )
        yield Cluster(started, port, tmp_path / "homes", log)
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        nodes.stop_all()


def session(made: list[Session], cluster: Cluster, source: str) -> Session:
    opened = Session(cluster.port, source)
    made.append(opened)
    return opened


@pytest.fixture
def sessions() -> Iterator[list[Session]]:
    made: list[Session] = []
    yield made
    for opened in made:
        opened.close()


def login_code(opened: Session, password: str = ALICE_PASSWORD) -> int:
    return opened.code(opened.call("login", ALICE, password))


def test_a_file_put_through_one_node_is_fetched_through_the_others(
    cluster: Cluster, tmp_path: Path
) -> None:
    data = os.urandom(300_000)
    (tmp_path / "up.bin").write_bytes(data)
    with FileTransferClient(HOST, cluster.port, timeout=30) as conn:
        conn.login(ALICE, ALICE_PASSWORD)
        conn.put(str(tmp_path / "up.bin"), "shared.bin")
        conn.quit()
    for index in range(3):  # round robin: each of the three nodes once
        with FileTransferClient(HOST, cluster.port, timeout=30) as conn:
            conn.login(ALICE, ALICE_PASSWORD)
            assert "shared.bin" in [entry.name for entry in conn.ls("/")]
            conn.get("shared.bin", str(tmp_path / f"down{index}.bin"))
            conn.quit()
        assert digest_of((tmp_path / f"down{index}.bin").read_bytes()) == digest_of(data)
    served = [n.name for n in cluster.nodes if "path='/shared.bin'" in n.log_text()]
    assert len(served) == 3, served


def test_session_limits_hold_across_the_nodes_behind_haproxy(
    cluster: Cluster, sessions: list[Session]
) -> None:
    assert login_code(session(sessions, cluster, "127.0.0.2")) == 0
    assert login_code(session(sessions, cluster, "127.0.0.2")) == 0
    for _ in range(3):  # the third from 127.0.0.2, through any node
        third = session(sessions, cluster, "127.0.0.2")
        reply = third.recv()
        assert (third.code(reply), reply.fields[2]) == (421, "too many sessions from your address")
        third.close()
    assert login_code(session(sessions, cluster, "127.0.0.3")) == 0
    audit = "".join(node.log_text() for node in cluster.nodes)
    assert "ip='127.0.0.2'" in audit and "ip='127.0.0.3'" in audit


def test_failed_logins_over_all_nodes_ban_that_address_only(
    cluster: Cluster, sessions: list[Session]
) -> None:
    for _ in range(3):  # ban_failures: 3, one per node (round robin)
        bad = session(sessions, cluster, "127.0.0.4")
        assert login_code(bad, "wrong") == 430
        bad.close()
    for _ in range(3):
        banned = session(sessions, cluster, "127.0.0.4")
        assert login_code(banned) == 430
        banned.close()
    assert login_code(session(sessions, cluster, "127.0.0.5")) == 0
    refusing = [n.name for n in cluster.nodes if "refused (address banned)" in n.log_text()]
    assert len(refusing) == 3, refusing


def test_health_checks_are_closed_quietly(cluster: Cluster) -> None:
    for node in cluster.nodes:
        text = node.log_text()
        assert "PROXY LOCAL" in text
        assert "refused 127.0.0.1" not in text, text[-2000:]


def test_a_node_killed_mid_upload_the_client_finishes_through_another(
    cluster: Cluster, tmp_path: Path
) -> None:
    data = os.urandom(3 * RATE)  # bob uploads at RATE: a few seconds
    folder = tmp_path / "client"
    folder.mkdir()
    (folder / "big.bin").write_bytes(data)
    where = ["--host", HOST, "--port", str(cluster.port), "--user", BOB]
    client = subprocess.Popen(
        [sys.executable, "-m", "ftpclient", *where, "--retries", "5", "-q", "-c", "put big.bin"],
        cwd=folder,
        env=subprocess_env(BOB_PASSWORD),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        home = cluster.homes / BOB
        assert wait_until(
            lambda: any(p.stat().st_size > RATE // 4 for p in home.rglob(".ftp-upload-*")),
            timeout=20,
        ), "the upload did not start"
        serving = [n for n in cluster.nodes if "login user='bob'" in n.log_text()]
        assert len(serving) == 1
        os.kill(serving[0].proc.pid, signal.SIGKILL)
        serving[0].proc.wait(timeout=10)
        out, err = client.communicate(timeout=60)
    finally:
        if client.poll() is None:
            client.kill()
            client.communicate()
    assert client.returncode == 0, (out, err)
    assert "connection lost" in err
    assert digest_of((home / "big.bin").read_bytes()) == digest_of(data)
    others = [n for n in cluster.nodes if n is not serving[0]]
    assert any("login user='bob'" in n.log_text() for n in others)
    # resumed on the other node from what the dead one had written: fewer bytes sent
    puts = [
        m
        for n in others
        for m in re.finditer(r"put user='bob'.* bytes=(\d+) .*outcome='ok'", n.log_text())
    ]
    assert len(puts) == 1 and 0 < int(puts[0][1]) < len(data) - RATE // 4, puts
    assert not list(home.glob(".ftp-upload-*")) and not list(home.glob(".ftp-partial/*"))
