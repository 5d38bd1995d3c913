"""The listening server: a ``ThreadingTCPServer`` holding settings, users and shared guards.

One daemon thread per connection runs a :class:`~ftpserver.handler.SessionHandler`.
What sessions share across processes (the quota book, session slots, bans
and bandwidth) is a :class:`~ftpserver.state.shared.Shared`: the server's
own :class:`~ftpserver.state.shared.LocalState`, or with several worker
processes (:mod:`ftpserver.workers`) proxies on the one copy the main
process keeps.  The password gate and the live sessions are per process.
Settings and the user store are replaced whole on
:meth:`FileTransferServer.reload` (through :func:`reload_config`, which the
main process of several workers uses too), never edited in place, so
sessions read them without a lock.  :meth:`FileTransferServer.drain` ends
the sessions for a graceful shutdown.
"""

from __future__ import annotations

import logging
import os
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ftpserver.activity import AdminHooks, ReloadLog
from ftpserver.audit import Audit, configure_logging
from ftpserver.changes import changes, problems_of
from ftpserver.config import Settings, keep_restart_only
from ftpserver.digests import DigestCache
from ftpserver.guards import PasswordGate
from ftpserver.handler import SessionHandler
from ftpserver.keys import load_checker
from ftpserver.limits import AcceptGate, evict_oldest_waiting, refuse_busy
from ftpserver.login import server_binding
from ftpserver.state.shared import LocalState, Shared
from ftpserver.state.wire import StateUnavailable
from ftpserver.storage.base import Storage
from ftpserver.storage.local import LocalStorage
from ftpserver.storage.temps import UploadOwners
from ftpserver.users import User, UserStore, load_users
from ftpserver.userwatch import UsersFileWatch

if TYPE_CHECKING:
    import ssl

__all__ = [
    "FileTransferServer",
    "Reloaded",
    "StorageFactory",
    "local_storage",
    "reload_config",
    "report_reload",
    "s3_storage",
    "tls_context",
]

log = logging.getLogger("ftpserver")


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The server's TLS context from ``tls_cert``/``tls_key``, or None without TLS."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    import ssl  # here, not at the top: without TLS every process is 4 MiB smaller

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context


@dataclass(frozen=True)
class Reloaded:
    """Settings and users read again for a reload, and what they change."""

    settings: Settings  # with the restart-only settings kept as they run
    users: UserStore
    restart: list[str]  # restart-only settings the files would change
    lines: list[str]  # what changed, in words (ftpserver.changes), for ``ftpserver reload``


def reload_config(
    running: Settings,
    running_users: UserStore,
    read: Callable[[], Settings],
    reloads: ReloadLog,
) -> Reloaded | None:
    """Read the settings (``read()``) and their users file again, for a reload.

    Returns the new settings, with the restart-only ones kept as they run,
    the users, the names of the restart-only settings the files would
    change, and what changed in words; the caller records those in
    ``reloads`` once it has applied them.  If a file is bad it returns None,
    with a log line, and records the problems in ``reloads`` (the old
    configuration stays in force).  The log file is opened again either
    way, so that after a log rotation this line and the next go to the new
    file.
    """
    try:
        fresh = read()
        settings, restart = keep_restart_only(running, fresh)
        users = load_users(settings.users, settings.home)
    except Exception as exc:
        configure_logging(running)
        log.error("reload refused, the old configuration stays in force: %s", exc)
        reloads.record(False, problems_of(exc))
        return None
    configure_logging(settings)
    lines = changes(running, fresh, running_users, users)
    return Reloaded(settings, users, restart, lines)


def report_reload(changed: list[str], users: UserStore) -> None:
    """Log a reload's outcome (once per server: by the supervisor when there are workers)."""
    if changed:
        them = "it" if len(changed) == 1 else "them"
        log.warning(
            "reload: %s kept as before: changing %s takes a restart", ", ".join(changed), them
        )
    log.info("reloaded: %d users", len(users.users))


StorageFactory = Callable[["FileTransferServer", User], Storage]


def local_storage(server: FileTransferServer, user: User) -> Storage:
    """The default :data:`StorageFactory`: the user's home folder on this host."""
    settings = server.settings
    return LocalStorage(
        user,
        server.quotas,
        server.digests,
        file_mode=server.file_mode,
        fsync=settings.fsync_uploads,
        stale_after=max(3600.0, 2 * settings.idle_timeout),
        owners=server.upload_owners,
    )


def s3_storage(server: FileTransferServer, user: User) -> Storage:
    """The :data:`StorageFactory` for ``storage: s3``: the user's key prefix in the bucket."""
    from ftpserver.storage.s3 import S3Storage  # imports boto3: only when configured
    from ftpserver.storage.s3client import shared_client

    settings = server.settings
    return S3Storage(
        user,
        server.quotas,
        shared_client(settings),
        settings.s3_bucket,
        settings.s3_prefix,
        settings.s3_part_size,
        stage=settings.shared_state is not None,  # a cluster: a resume may come to any node
    )


class _Sessions:
    """The live sessions, for shutdown."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: set[SessionHandler] = set()

    def add(self, session: SessionHandler) -> None:
        with self._lock:
            self._items.add(session)

    def discard(self, session: SessionHandler) -> None:
        with self._lock:
            self._items.discard(session)

    def snapshot(self) -> list[SessionHandler]:
        with self._lock:
            return list(self._items)


class FileTransferServer(socketserver.ThreadingTCPServer):
    """Accepts connections and serves each in its own daemon thread."""

    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(
        self,
        settings: Settings,
        users: UserStore,
        reload_settings: Callable[[], Settings] | None = None,
        shared: Shared | None = None,
        listener: socket.socket | None = None,
    ) -> None:
        """Listen on ``settings``' address, or serve ``listener`` (already listening).

        Without ``shared`` the server keeps its own shared state, and a
        reload applies the new limits to it; with it, whoever owns it does
        (and says which settings need a restart).
        """
        self.settings = settings
        self.users = users
        load_checker(user.keys for user in users.users.values())  # then no import at a first login
        self.reload_settings = reload_settings
        self.local_state: LocalState | None = None
        if shared is None:
            self.local_state = LocalState.create(settings)
            shared = self.local_state.shared
        self.shared = shared
        self.quotas = self.shared.quotas
        self.limiter = self.shared.limiter
        self.bans = self.shared.bans
        self.bandwidth = self.shared.bandwidth
        self.users_watch = UsersFileWatch()
        self.passwords = PasswordGate(settings.password_checks, settings.password_cache_ttl)
        self.digests = DigestCache()
        self.storage_factory: StorageFactory = (  # where users' files are stored
            s3_storage if settings.storage == "s3" else local_storage
        )
        self.upload_owners: UploadOwners | None = None  # a cluster's nodes (shared homes)
        self.audit = Audit()
        self.tls = tls_context(settings)
        self.tls_binding = server_binding(settings.tls_cert if self.tls else None)  # key logins
        self.sessions = _Sessions()
        self.admin = AdminHooks()  # session ids, metrics, reload outcomes (ftpserver.control)
        self.gate = AcceptGate(make_room=lambda: evict_oldest_waiting(self.sessions.snapshot()))
        self.stopping = False
        self._stop_sweeping = threading.Event()
        self.request_queue_size = settings.listen_backlog
        umask = os.umask(0o022)
        os.umask(umask)
        self.file_mode = 0o666 & ~umask
        if ":" in settings.host:
            self.address_family = socket.AF_INET6
        if listener is None:
            super().__init__((settings.host, settings.port), SessionHandler)
        else:
            super().__init__(listener.getsockname()[:2], SessionHandler, bind_and_activate=False)
            self.socket.close()
            self.socket = listener

    def current_users(self) -> UserStore:
        """The users, read again first if the users file changed since (a login calls this)."""
        fresh = self.users_watch.check(self.settings, self.users)
        if fresh is not self.users:
            self.users = fresh
            self.passwords.forget()
        return self.users

    @property
    def address(self) -> tuple[str, int]:
        """The bound host and port (the real port when 0 was asked for)."""
        host, port = self.socket.getsockname()[:2]
        return str(host), int(port)

    def open_storage(self, user: User) -> Storage:
        """The storage of ``user``'s files, for one session: ``storage_factory(self, user)``."""
        return self.storage_factory(self, user)

    def reload(self) -> bool:
        """Read the settings and users again and apply them atomically.

        A bad file is refused with a log line and the old configuration stays
        in force.  Sessions already logged in keep working as they are.
        """
        loaded = reload_config(
            self.settings,
            self.users,
            self.reload_settings or (lambda: self.settings),
            self.admin.reloads,
        )
        if loaded is None:
            return False
        settings, users = loaded.settings, loaded.users
        self.settings = settings
        self.users = users
        if self.local_state is not None:
            self.local_state.configure(settings, users)
        self.passwords.ttl = settings.password_cache_ttl
        self.passwords.forget()
        if self.local_state is not None:
            report_reload(loaded.restart, users)
        else:  # a worker: its supervisor reported the reload once for all
            log.debug("reloaded")
        self.admin.reloads.record(True, loaded.lines)
        return True

    def start_sweeper(self) -> threading.Thread:
        """Start the thread that removes partial uploads older than ``partial_upload_ttl``."""

        def sweep() -> None:
            while True:
                ttl = self.settings.partial_upload_ttl
                try:
                    removed = self.sweep_partials(ttl)
                    if removed:
                        log.info("removed %d stale partial uploads", removed)
                except Exception:
                    log.exception("sweeping partial uploads failed")
                if self._stop_sweeping.wait(min(ttl / 2, 600.0)):
                    return

        thread = threading.Thread(target=sweep, name="partial-sweeper", daemon=True)
        thread.start()
        return thread

    def sweep_partials(self, max_age: float) -> int:
        """Remove every user's partial uploads untouched for ``max_age`` seconds; how many."""
        users = list(self.users.users.values())
        return sum(self.open_storage(user).remove_stale_partials(max_age) for user in users)

    def drain(self, grace: float, force: Callable[[], bool]) -> int:
        """End every session: idle ones now, busy ones after ``grace`` seconds or once ``force()``.

        Call after :meth:`shutdown` (no new connections).  Returns how many
        sessions had to be cut off.  Cut-off uploads are cleaned up by their
        own threads (nothing partial is left visible).
        """
        self.stopping = True
        self.socket.close()
        deadline = time.monotonic() + grace
        while True:
            sessions = self.sessions.snapshot()
            for session in sessions:
                if not session.busy:
                    session.interrupt()
            busy = [s for s in sessions if s.busy]
            if not sessions:
                return 0
            if force() or time.monotonic() >= deadline:
                for session in busy:
                    session.interrupt()
                self._wait_for_sessions(5.0)
                return len(busy)
            time.sleep(0.05)

    def _wait_for_sessions(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.sessions.snapshot() and time.monotonic() < deadline:
            time.sleep(0.02)

    def get_request(self) -> tuple[socket.socket, Any]:
        return self.gate.accept(self.socket)  # waits, not spins, when out of descriptors

    def process_request(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request(request, client_address)
        except RuntimeError as exc:  # "can't start new thread": refuse it, then back off
            refuse_busy(request, plain=self.tls is None)
            self.shutdown_request(request)
            self.gate.no_thread(str(exc))

    def close_request(self, request: Any) -> None:
        super().close_request(request)
        self.gate.freed()

    def server_close(self) -> None:
        self._stop_sweeping.set()
        super().server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], StateUnavailable):
            log.info("session %s ended: the main process is gone", client_address)
            return
        log.exception("unhandled error serving %s", client_address)
