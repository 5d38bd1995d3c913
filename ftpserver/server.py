"""The listening server: a ``ThreadingTCPServer`` holding settings, users and shared guards.

One daemon thread per connection runs a :class:`~ftpserver.handler.SessionHandler`.
Everything sessions share lives here, each piece owning its lock: the quota
book, the session limiter, the ban list, the password gate, the bandwidth
buckets and the set of live sessions.  With several worker processes
(:mod:`ftpserver.workers`) each runs one of these servers on the same
listening socket, and the first four (:class:`Shared`) are handles on the
one copy the main process keeps.  Settings and the user store are
replaced whole on :meth:`FileTransferServer.reload`, never edited in place,
so sessions read them without a lock.  :meth:`FileTransferServer.drain`
ends the sessions for a graceful shutdown.
"""

from __future__ import annotations

import logging
import os
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ftpserver.audit import Audit, configure_logging
from ftpserver.config import Settings
from ftpserver.digests import DigestCache
from ftpserver.fsops import sweep_partials
from ftpserver.guards import Bandwidth, BanList, PasswordGate, SessionLimiter
from ftpserver.handler import SessionHandler
from ftpserver.limits import AcceptGate, evict_oldest_waiting, refuse_busy
from ftpserver.quota import QuotaBook
from ftpserver.users import UserStore, load_users

if TYPE_CHECKING:
    import ssl

__all__ = ["FileTransferServer", "Shared", "apply_shared_settings", "tls_context"]

log = logging.getLogger("ftpserver")

# Settings that need a restart: the listening socket, the paths, TLS.
FIXED_SETTINGS = (
    "host",
    "port",
    "listen_backlog",
    "users",
    "home",
    "tls_cert",
    "tls_key",
    "workers",
)


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The server's TLS context from ``tls_cert``/``tls_key``, or None without TLS."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    import ssl  # here, not at the top: without TLS every process is 4 MiB smaller

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context


@dataclass
class Shared:
    """The state every session of the server shares, whichever process serves it."""

    quotas: QuotaBook
    limiter: SessionLimiter
    bans: BanList
    bandwidth: Bandwidth

    @classmethod
    def create(cls, settings: Settings) -> Shared:
        """Fresh state for ``settings``."""
        return cls(
            QuotaBook(stale_after=max(3600.0, 2 * settings.idle_timeout)),
            SessionLimiter(settings.max_sessions, settings.max_sessions_per_ip),
            BanList(settings.ban_failures, settings.ban_window, settings.ban_time),
            Bandwidth(),
        )


def apply_shared_settings(shared: Shared, settings: Settings, users: UserStore) -> None:
    """Give the shared state the limits of freshly reloaded settings and users."""
    shared.limiter.configure(settings.max_sessions, settings.max_sessions_per_ip)
    shared.bans.configure(settings.ban_failures, settings.ban_window, settings.ban_time)
    for name in users.users:
        shared.quotas.forget(name)


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
        reload applies the new limits to it; with it, whoever owns it does.
        """
        self.settings = settings
        self.users = users
        self.reload_settings = reload_settings
        self.owns_shared = shared is None
        self.shared = shared if shared is not None else Shared.create(settings)
        self.quotas = self.shared.quotas
        self.limiter = self.shared.limiter
        self.bans = self.shared.bans
        self.bandwidth = self.shared.bandwidth
        self.passwords = PasswordGate(settings.password_checks, settings.password_cache_ttl)
        self.digests = DigestCache()
        self.audit = Audit(settings.audit_json)
        self.tls = tls_context(settings)
        self.sessions = _Sessions()
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

    @property
    def address(self) -> tuple[str, int]:
        """The bound host and port (the real port when 0 was asked for)."""
        host, port = self.socket.getsockname()[:2]
        return str(host), int(port)

    def reload(self) -> bool:
        """Read the settings and users again and apply them atomically.

        A bad file is refused with a log line and the old configuration stays
        in force.  Sessions already logged in keep working as they are.
        """
        try:
            fresh = self.reload_settings() if self.reload_settings else self.settings
            fixed = {key: getattr(self.settings, key) for key in FIXED_SETTINGS}
            changed = [k for k, v in fixed.items() if getattr(fresh, k) != v]
            settings = fresh.replace(**fixed)
            users = load_users(settings.users, settings.home)
        except Exception as exc:
            log.error("reload refused, the old configuration stays in force: %s", exc)
            return False
        if changed:
            log.warning("reload: %s need a restart to change", ", ".join(changed))
        self.settings = settings
        self.users = users
        if self.owns_shared:
            apply_shared_settings(self.shared, settings, users)
        self.passwords.ttl = settings.password_cache_ttl
        self.passwords.forget()
        self.audit.json_lines = settings.audit_json
        configure_logging(settings)
        log.info("reloaded: %d users", len(users.users))
        return True

    def start_sweeper(self) -> threading.Thread:
        """Start the thread that removes partial uploads older than ``partial_upload_ttl``."""

        def sweep() -> None:
            while True:
                ttl = self.settings.partial_upload_ttl
                try:
                    removed = sweep_partials(self.quotas, list(self.users.users.values()), ttl)
                    if removed:
                        log.info("removed %d stale partial uploads", removed)
                except Exception:
                    log.exception("sweeping partial uploads failed")
                if self._stop_sweeping.wait(min(ttl / 2, 600.0)):
                    return

        thread = threading.Thread(target=sweep, name="partial-sweeper", daemon=True)
        thread.start()
        return thread

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
        log.exception("unhandled error serving %s", client_address)
