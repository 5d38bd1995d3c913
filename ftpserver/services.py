"""The administrator's side of a running server: pid file, process titles, control socket, metrics.

:class:`AdminServices` starts them in the main process (the supervisor, or
the one server with ``workers: 1``) and takes them down at exit:

* the pid file (``pid_file``), written at start and removed at exit;
* the process title (``ftpserver: supervisor``, ``ftpserver: worker N``,
  ``ftpserver: server``) with setproctitle, when it can be imported;
* the control socket (:mod:`ftpserver.control`, ``control_socket``); if its
  path is held by another running server, this one logs why and runs
  without it;
* the metrics endpoint (:mod:`ftpserver.metrics`, ``metrics_listen``).

With workers, :meth:`AdminServices.prepare_worker` readies each worker's
server: its number (in session ids), its metrics and the thread answering
the supervisor's requests (:func:`ftpserver.adminpipe.answer_requests`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ftpserver.activity import ReloadLog
from ftpserver.adminpipe import AnsweringEnd, WorkerLinks, answer_requests
from ftpserver.adminstate import AdminState, LocalAdminState
from ftpserver.config import Settings
from ftpserver.control import ControlServer
from ftpserver.live import LocalView, SupervisorView, View, commands, kick_sessions, session_infos

if TYPE_CHECKING:
    from ftpserver.metrics import Metrics, MetricsServer
    from ftpserver.server import FileTransferServer
    from ftpserver.users import UserStore

__all__ = ["AdminServices", "set_title"]

log = logging.getLogger("ftpserver")


def set_title(role: str) -> None:
    """Show ``ftpserver: ROLE`` in ``ps`` (quietly nothing without setproctitle)."""
    try:
        from setproctitle import setproctitle
    except ImportError:
        return
    setproctitle(f"ftpserver: {role}")


def _write_pid(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}")
    temp.write_text(f"{os.getpid()}\n")
    os.replace(temp, path)


class AdminServices:
    """Pid file, control socket and metrics of one running server."""

    def __init__(
        self,
        settings: Settings,
        view: View,
        state: AdminState,
        users: Callable[[], UserStore],
        health: Callable[[], str | None],
        workers: Callable[[], int] | None = None,
        role: str = "server",
    ) -> None:
        self.settings = settings
        self.role = role
        self.view = view
        self.control: ControlServer | None = None
        self.metrics: MetricsServer | None = None
        self._pid_written = False
        self.state = state
        self._users = users
        self._workers = workers
        self._health = health
        self.stopping = False  # set when a stop was asked for: /healthz says so

    @classmethod
    def alone(cls, server: FileTransferServer, state: AdminState | None = None) -> AdminServices:
        """The services of a server serving alone (``workers: 1``).

        ``state`` is its shared state (a cluster's); by default the state it keeps itself.
        """
        if state is None:
            assert server.local_state is not None, "a server without shared_state keeps its own"
            state = LocalAdminState(server.local_state)
        shared = state

        def health() -> str | None:
            if server.stopping or server.socket.fileno() < 0:
                return "not accepting connections: stopping"
            return shared.problem()

        view = LocalView(server, state)
        return cls(server.settings, view, state, lambda: server.users, health)

    @classmethod
    def supervisor(
        cls,
        settings: Settings,
        state: AdminState,
        users: Callable[[], UserStore],
        listener: socket.socket,
    ) -> AdminServices:
        """The services of a supervisor of workers; its view asks them through ``links``."""
        links = WorkerLinks()
        view = SupervisorView(state, links, ReloadLog())

        def health() -> str | None:
            if listener.fileno() < 0:
                return "not accepting connections: stopping"
            if not links.pids():
                return "not accepting connections: no worker running"
            return state.problem()

        return cls(settings, view, state, users, health, lambda: len(links.pids()), "supervisor")

    @property
    def links(self) -> WorkerLinks:
        """The supervisor's pipes to its workers."""
        assert isinstance(self.view, SupervisorView)
        return self.view.links

    def __enter__(self) -> AdminServices:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Write the pid file, turn on metrics and the control socket; print the metrics URL.

        Serving alone, the server's own sessions count into the metrics from now on.
        """
        set_title(self.role)
        try:
            self._start()
        except BaseException:
            self.close()  # the pid file goes again
            raise

    def _start(self) -> None:
        settings = self.settings
        if settings.pid_file is not None:
            _write_pid(settings.pid_file)
            self._pid_written = True
        if settings.metrics_listen is not None:
            # Imported only when turned on: prometheus-client and http.server
            # (which brings ssl) cost every process memory.
            from ftpserver.metrics import MetricsServer, StateCollector, enable_multiprocess

            collector = StateCollector(
                self.state, self._users, settings.metrics_user_quota, self._workers
            )
            address, folder = settings.metrics_listen, enable_multiprocess()
            try:
                self.metrics = MetricsServer(address, folder, collector, self.health)
            except OSError as exc:
                shutil.rmtree(folder, ignore_errors=True)
                raise OSError(f"metrics_listen {address}: {exc.strerror or exc}") from None
            self.metrics.start()
            print(f"metrics on {self.metrics.url}/metrics", flush=True)
            if isinstance(self.view, LocalView):
                self.view.server.admin.metrics = self.process_metrics()
        if settings.control_socket is not None:
            try:
                self.control = ControlServer(settings.control_socket, commands(self.view))
            except OSError as exc:
                log.warning("no control socket: %s", exc)
            else:
                self.control.start()
                log.info("control socket %s", settings.control_socket)

    def health(self) -> str | None:
        """None when the server accepts connections and reaches its shared state; else why not."""
        if self.stopping:
            return "not accepting connections: stopping"
        return self._health()

    def process_metrics(self) -> Metrics | None:
        """The counters for this process (each worker makes its own after the fork)."""
        if self.metrics is None:
            return None
        from ftpserver.metrics import Metrics  # only when metrics are on

        return Metrics()

    def prepare_worker(
        self, index: int, server: FileTransferServer, requests: AnsweringEnd
    ) -> None:
        """In worker ``index`` (from 0): name it, count into metrics, answer the supervisor."""
        set_title(f"worker {index + 1}")
        server.admin.worker = index + 1
        server.admin.metrics = self.process_metrics()
        answer_requests(
            requests,
            lambda: session_infos(server),
            lambda selector: kick_sessions(server, selector),
        )

    def close_in_child(self) -> None:
        """In a newly forked worker: close the copies of the supervisor's listening sockets."""
        if self.control is not None:
            self.control.close_copy()
        if self.metrics is not None:
            self.metrics.httpd.socket.close()
        if isinstance(self.view, SupervisorView):
            self.view.links.close_in_child()

    def close(self) -> None:
        """Stop the control socket and metrics, remove the pid file (if it is still ours)."""
        if self.control is not None:
            self.control.close()
        if self.metrics is not None:
            self.metrics.close()
        self.state.close()
        pid_file = self.settings.pid_file
        if self._pid_written and pid_file is not None:
            with contextlib.suppress(OSError, ValueError):
                if int(pid_file.read_text().strip()) == os.getpid():
                    pid_file.unlink()
