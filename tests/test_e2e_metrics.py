"""End to end: the Prometheus endpoint (``metrics_listen``) and ``/healthz``.

A real ``ftpserver serve`` (two workers, and ``workers: 1``) with
``metrics_listen: 127.0.0.1:0`` prints ``metrics on URL``; the test scrapes
it with urllib, moves files with the real client, and checks the figures
moved: logins by outcome, bytes and files by direction, the transfer
duration histogram, errors by code, sessions, bans, quota used per user.
``/healthz`` answers ``ok`` while serving and 503 once a stop began; the
private folder of the workers' counts is gone after the server stops.
Metrics are off unless configured; a port in use stops ``serve`` with one
clear line.
"""

from __future__ import annotations

import glob
import os
import signal
import socket
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import (
    ALICE,
    ALICE_PASSWORD,
    BOB,
    RunFtpserver,
    ServerProcess,
    wait_until,
)
from test_e2e_admin import WORKER_MODES, catches_sigterm, rated_users
from test_e2e_lifecycle import (
    StartServer,
    configure,
    connect,
    login_result,
    serve_refusal,
    sigterm_and_wait,
    start_slow_upload,
)

pytestmark = pytest.mark.timeout(90)

Samples = dict[str, float]


def fetch(url: str) -> tuple[int, str]:
    """GET ``url`` with a real HTTP client: ``(status, body)``."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def scrape(base: str) -> Samples:
    """The samples of ``/metrics``: ``'name{labels}' -> value``."""
    status, text = fetch(f"{base}/metrics")
    assert status == 200, text
    samples: Samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def metrics_base(running: ServerProcess) -> str:
    """The endpoint's base URL from the ``metrics on URL/metrics`` line printed at start."""
    lines = [line for line in running.lines if line.startswith("metrics on ")]
    assert len(lines) == 1, running.lines
    url = lines[0].removeprefix("metrics on ")
    assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics"), url
    return url.removesuffix("/metrics")


def metrics_folders() -> set[str]:
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "ftpserver-metrics-*")))


@pytest.mark.parametrize("workers", WORKER_MODES)
def test_scraped_values_move_after_transfers(
    workers: int,
    users_file: Path,
    homes: Path,
    local: Path,
    server_config: Path,
    server_process: StartServer,
) -> None:
    before_start = metrics_folders()
    configure(
        server_config,
        workers=workers,
        metrics_listen="127.0.0.1:0",
        metrics_user_quota=5,
        ban_failures=2,
    )
    running = server_process(users_file, homes)
    base = metrics_base(running)
    assert fetch(f"{base}/healthz") == (200, "ok\n")
    assert fetch(f"{base}/nothing")[0] == 404
    first = scrape(base)
    assert first["ftpserver_sessions"] == 0 and first["ftpserver_bans"] == 0
    # No session has measured a home yet: the ledger has no figure to show.
    assert not any(key.startswith("ftpserver_quota_used_bytes{") for key in first)
    assert "ftpserver_logins_total" not in str(first)
    assert ("ftpserver_workers" in first) == (workers == 2)
    ours = metrics_folders() - before_start  # other servers on this machine may come and go
    assert len(ours) == 1

    data = os.urandom(300_000)
    (local / "up.bin").write_bytes(data)
    with connect(running.port) as conn:
        conn.login(ALICE, ALICE_PASSWORD)
        conn.put(str(local / "up.bin"), "up.bin")
        conn.get("up.bin", str(local / "down.bin"))
        with pytest.raises(Exception, match="no such file"):
            conn.get("missing.bin", str(local / "missing.bin"))
        assert not login_result(running.port, BOB, "wrong password")
        assert not login_result(running.port, BOB, "wrong password")  # now banned
        assert wait_until(lambda: scrape(base)["ftpserver_sessions"] == 1, 10, 0.1)
        after = scrape(base)
    assert (local / "down.bin").read_bytes() == data
    assert after['ftpserver_logins_total{outcome="ok"}'] == 1
    assert after['ftpserver_logins_total{outcome="failed"}'] == 2
    for direction in ("upload", "download"):
        assert after[f'ftpserver_transfer_bytes_total{{direction="{direction}"}}'] == len(data)
        assert after[f'ftpserver_transfer_files_total{{direction="{direction}"}}'] == 1
        assert after[f'ftpserver_transfer_seconds_count{{direction="{direction}"}}'] == 1
        assert after[f'ftpserver_transfer_seconds_bucket{{direction="{direction}",le="+Inf"}}'] == 1
        assert after[f'ftpserver_transfer_seconds_sum{{direction="{direction}"}}'] > 0
    assert after['ftpserver_errors_total{code="404"}'] == 1
    assert after['ftpserver_errors_total{code="430"}'] == 2  # the two wrong passwords
    assert after["ftpserver_bans"] == 1
    assert after['ftpserver_quota_used_bytes{user="alice"}'] == len(data)
    assert 'ftpserver_quota_used_bytes{user="bob"}' not in after  # bob never logged in
    if workers == 2:
        assert after["ftpserver_workers"] == 2
    assert wait_until(lambda: scrape(base)["ftpserver_sessions"] == 0, 10, 0.1)

    assert wait_until(lambda: catches_sigterm(running.proc.pid), 10)
    sigterm_and_wait(running, 20)
    assert not ours & metrics_folders(), "the metrics folder was left behind"


@pytest.mark.parametrize("workers", WORKER_MODES)
def test_healthz_says_stopping_while_transfers_finish(
    workers: int,
    tmp_path: Path,
    local: Path,
    server_config: Path,
    server_process: StartServer,
) -> None:
    users, homes = rated_users(tmp_path, "128K")
    configure(server_config, workers=workers, metrics_listen="127.0.0.1:0", shutdown_grace=20)
    running = server_process(users, homes)
    base = metrics_base(running)
    conn, upload = start_slow_upload(running.port, local, homes / ALICE, 4 * 1024 * 1024)
    with conn:
        assert fetch(f"{base}/healthz") == (200, "ok\n")
        running.proc.send_signal(signal.SIGTERM)
        assert wait_until(lambda: fetch(f"{base}/healthz")[0] == 503, 10, 0.1)
        assert fetch(f"{base}/healthz") == (503, "not accepting connections: stopping\n")
        running.proc.send_signal(signal.SIGTERM)  # a second one cuts the upload off
        upload.join(15)
    assert running.proc.wait(20) == 0


def test_metrics_are_off_by_default_and_a_busy_port_is_one_clear_line(
    tmp_path: Path,
    users_file: Path,
    homes: Path,
    server_config: Path,
    server_process: StartServer,
    ftpserver_cli: RunFtpserver,
) -> None:
    configure(server_config, workers=1)
    running = server_process(users_file, homes)
    assert not any("metrics" in line for line in running.lines)
    assert wait_until(lambda: catches_sigterm(running.proc.pid), 10)
    sigterm_and_wait(running, 20)

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        for workers in (1, 2):
            config = tmp_path / f"busy-{workers}.yaml"
            config.write_text(
                f"workers: {workers}\nmetrics_listen: 127.0.0.1:{port}\npid_file: busy.pid\n"
            )
            line = serve_refusal(ftpserver_cli, config, users_file, homes)
            assert line == (
                f"ftpserver: error: metrics_listen 127.0.0.1:{port}: Address already in use"
            )
            assert not (tmp_path / "busy.pid").exists()  # written, then removed again
