"""The listening server: a ``ThreadingTCPServer`` holding the settings and the user store.

One daemon thread per connection runs a :class:`~ftpserver.handler.SessionHandler`.
The settings are read-only; the user store is replaced whole, never edited
in place, so sessions can read ``server.users`` without a lock.
"""

from __future__ import annotations

import logging
import os
import socket
import socketserver
import threading
from typing import Any

from ftpserver.config import Settings
from ftpserver.fsops import sweep_partials
from ftpserver.handler import SessionHandler
from ftpserver.quota import QuotaBook
from ftpserver.users import UserStore

__all__ = ["FileTransferServer"]

log = logging.getLogger("ftpserver")


class FileTransferServer(socketserver.ThreadingTCPServer):
    """Accepts connections and serves each in its own daemon thread."""

    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, settings: Settings, users: UserStore) -> None:
        self.settings = settings
        self.users = users
        self.quotas = QuotaBook(stale_after=max(3600.0, 2 * settings.idle_timeout))
        self._stop_sweeping = threading.Event()
        self.request_queue_size = settings.listen_backlog
        umask = os.umask(0o022)
        os.umask(umask)
        self.file_mode = 0o666 & ~umask
        if ":" in settings.host:
            self.address_family = socket.AF_INET6
        super().__init__((settings.host, settings.port), SessionHandler)

    @property
    def address(self) -> tuple[str, int]:
        """The bound host and port (the real port when 0 was asked for)."""
        host, port = self.socket.getsockname()[:2]
        return str(host), int(port)

    def start_sweeper(self) -> threading.Thread:
        """Start the thread that removes partial uploads older than ``partial_upload_ttl``."""
        ttl = self.settings.partial_upload_ttl
        interval = min(ttl / 2, 600.0)

        def sweep() -> None:
            while True:
                try:
                    removed = sweep_partials(self.quotas, list(self.users.users.values()), ttl)
                    if removed:
                        log.info("removed %d stale partial uploads", removed)
                except Exception:
                    log.exception("sweeping partial uploads failed")
                if self._stop_sweeping.wait(interval):
                    return

        thread = threading.Thread(target=sweep, name="partial-sweeper", daemon=True)
        thread.start()
        return thread

    def server_close(self) -> None:
        self._stop_sweeping.set()
        super().server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("unhandled error serving %s", client_address)
