"""Prometheus metrics and ``/healthz`` over HTTP (``metrics_listen``), with prometheus-client.

Every server process counts into :class:`Metrics` (logins by outcome, bytes
and files by direction, transfer durations, error replies by code).  The
counts live in prometheus-client's multiprocess files, in a private folder
that the main process makes before it forks the workers
(:func:`enable_multiprocess`; ``PROMETHEUS_MULTIPROC_DIR``) and removes at
exit, so a scrape adds up every worker's figures, also those of workers
that have ended.  With ``shared_state`` in PostgreSQL every call to it is
timed, by operation (``ftpserver_shared_state_seconds``).  What only the
main process knows (sessions open, bans in force, workers, quota used per
user when ``metrics_user_quota`` is set) is read at each scrape from its
:class:`~ftpserver.adminstate.AdminState` (:class:`StateCollector`): this
server's sessions, and in a cluster the cluster's bans; a user's quota
figure is shown once the ledger has it (a session measured the home since
the start or the last reload).  While the shared state cannot be reached
those gauges are left out of the scrape.

:class:`MetricsServer` answers ``GET /metrics`` and ``GET /healthz`` (200
``ok``, or 503 and the reason) on its own thread.  prometheus-client is
imported only when metrics are turned on.
"""

from __future__ import annotations

import http.server
import logging
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ftpserver.config import split_address

if TYPE_CHECKING:
    from prometheus_client.core import GaugeMetricFamily

    from ftpserver.adminstate import AdminState
    from ftpserver.users import UserStore

__all__ = ["Metrics", "MetricsServer", "StateCollector", "enable_multiprocess"]

log = logging.getLogger("ftpserver")

DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
Health = Callable[[], "str | None"]


def enable_multiprocess() -> str:
    """Make a private folder for the processes' counts and switch prometheus-client to it."""
    folder = tempfile.mkdtemp(prefix="ftpserver-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    from prometheus_client import values

    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
    return folder


class Metrics:
    """The counters of one server process (after :func:`enable_multiprocess`)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram

        # registry=None: the scrape reads the multiprocess files, not a registry.
        self.logins = Counter(
            "ftpserver_logins", "Login attempts by outcome", ["outcome"], registry=None
        )
        self.bytes = Counter(
            "ftpserver_transfer_bytes",
            "File bytes moved by direction (failed transfers included)",
            ["direction"],
            registry=None,
        )
        self.files = Counter(
            "ftpserver_transfer_files",
            "Completed transfers by direction",
            ["direction"],
            registry=None,
        )
        self.durations = Histogram(
            "ftpserver_transfer_seconds",
            "Duration of completed transfers",
            ["direction"],
            buckets=DURATION_BUCKETS,
            registry=None,
        )
        self.errors = Counter(
            "ftpserver_errors", "Error replies by protocol error code", ["code"], registry=None
        )
        self.shared_state = Histogram(
            "ftpserver_shared_state_seconds",
            "Duration of calls to the shared state in PostgreSQL, by operation",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=None,
        )

    def login(self, outcome: str) -> None:
        self.logins.labels(outcome).inc()

    def error(self, code: int) -> None:
        self.errors.labels(str(code)).inc()

    def transfer(self, direction: str, moved: int, seconds: float, ok: bool) -> None:
        self.bytes.labels(direction).inc(moved)
        if ok:
            self.files.labels(direction).inc()
            self.durations.labels(direction).observe(seconds)

    def shared_state_call(self, operation: str, seconds: float) -> None:
        self.shared_state.labels(operation).observe(seconds)


class StateCollector:
    """Gauges read from the shared state at each scrape."""

    def __init__(
        self,
        state: AdminState,
        users: Callable[[], UserStore],
        user_quota: int,
        workers: Callable[[], int] | None = None,
    ) -> None:
        self.state = state
        self.users = users
        self.user_quota = user_quota
        self.workers = workers

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        if self.workers is not None:
            yield GaugeMetricFamily("ftpserver_workers", "Worker processes", value=self.workers())
        try:
            gauges = [
                GaugeMetricFamily(
                    "ftpserver_sessions", "Sessions open now", value=self.state.session_count()
                ),
                GaugeMetricFamily(
                    "ftpserver_bans", "Client addresses banned now", value=len(self.state.banned())
                ),
            ]
            if self.user_quota:
                gauges.append(self._quota_used())
        except TimeoutError as exc:  # the shared state is away: /healthz says so
            log.debug("metrics: no gauges from the shared state: %s", exc)
            return
        yield from gauges

    def _quota_used(self) -> GaugeMetricFamily:
        """Bytes used by the first ``user_quota`` users by name whose home has been measured."""
        from prometheus_client.core import GaugeMetricFamily

        used = GaugeMetricFamily(
            "ftpserver_quota_used_bytes",
            f"Bytes used by each user (the first {self.user_quota} by name, once measured)",
            labels=["user"],
        )
        names = sorted(self.users().users)[: self.user_quota]
        for name, figure in sorted(self.state.quota_used(names).items()):
            used.add_metric([name], figure)
        return used


class MetricsServer:
    """``/metrics`` and ``/healthz`` on ``metrics_listen``, in a daemon thread."""

    def __init__(self, address: str, folder: str, state: StateCollector, health: Health) -> None:
        from prometheus_client import CollectorRegistry, multiprocess

        self.folder = folder
        self.registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(self.registry, path=folder)  # type: ignore[no-untyped-call]
        self.registry.register(state)
        self.health = health
        host, port = split_address(address) or ("127.0.0.1", 9102)
        handler = _handler_for(self)
        if ":" in host:
            self.httpd: http.server.ThreadingHTTPServer = _HTTPServer6((host, port), handler)
        else:
            self.httpd = http.server.ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        serve = self.httpd.serve_forever
        self._thread = threading.Thread(target=serve, name="metrics", daemon=True)

    @property
    def url(self) -> str:
        """The address it listens on, as a URL (the real port when 0 was asked for)."""
        host, port = self.httpd.server_address[:2]
        shown = f"[{host!s}]" if ":" in str(host) else str(host)
        return f"http://{shown}:{port}"

    def start(self) -> None:
        self._thread.start()

    def scrape(self) -> bytes:
        from prometheus_client import generate_latest

        return bytes(generate_latest(self.registry))

    def close(self) -> None:
        """Stop serving and remove the counts folder."""
        if self._thread.is_alive():
            self.httpd.shutdown()
        self.httpd.server_close()
        shutil.rmtree(self.folder, ignore_errors=True)


class _HTTPServer6(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _handler_for(owner: MetricsServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.partition("?")[0]
            if path == "/metrics":
                from prometheus_client import CONTENT_TYPE_LATEST

                self._reply(200, owner.scrape(), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                problem = owner.health()
                body = f"{problem or 'ok'}\n".encode()
                self._reply(503 if problem else 200, body, "text/plain; charset=utf-8")
            else:
                self._reply(404, b"not found: try /metrics or /healthz\n", "text/plain")

        def _reply(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("metrics: %s %s", self.address_string(), format % args)

    return Handler
