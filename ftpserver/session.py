"""The plumbing of one client session, under its commands.

:class:`SessionBase` is the ``socketserver`` handler's life cycle apart from
its dispatch loop: the session state set up per connection, the session
slot and TLS handshake (:meth:`SessionBase._open`), their release, how
another thread interrupts or evicts the session, and what the commands
share: the logged-in user and storage, :meth:`SessionBase.meter` for a
transfer's bytes (rate limit, shutdown) and the audit records of
:meth:`SessionBase.log_transfer` / :meth:`SessionBase.log_failed`, which the
pipelined transfers (:mod:`ftpserver.batch`) use too.  Like the handler,
this module never calls ``os``: files are the storage's.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import threading
import time
from typing import TYPE_CHECKING

from ftpproto.channel import Channel, Deadlines, Progress
from ftpproto.errors import ErrorCode, ProtocolError
from ftpproto.messages import Message, error
from ftpserver.activity import Activity
from ftpserver.batch import Pipeline
from ftpserver.cluster.proxied import Networks, client_address
from ftpserver.guards import pacer
from ftpserver.login import Login
from ftpserver.storage.base import Storage
from ftpserver.users import User

if TYPE_CHECKING:
    from ftpserver.server import FileTransferServer

__all__ = ["Meter", "SessionBase"]

log = logging.getLogger("ftpserver.session")


class SessionBase(socketserver.BaseRequestHandler):
    """One connection's state and life cycle (the commands: ``SessionHandler``)."""

    server: FileTransferServer
    request: socket.socket

    def setup(self) -> None:
        self.settings = self.server.settings
        self.user: User | None = None
        self._storage: Storage | None = None
        self.logins = Login(self.server, str(self.client_address[0]))
        self.busy = False
        self._has_slot = False
        self._user_slot: str | None = None  # the user whose max_sessions slot this holds
        self._cancelled = threading.Event()
        self.ip = str(self.client_address[0])
        self.peer = f"{self.ip}:{self.client_address[1]}"
        self.activity = Activity(self.server.admin)
        self.pipeline = Pipeline(self, self.settings.pipeline_files, self.settings.pipeline_bytes)
        self.connected_at = time.monotonic()
        self._fileno = self.request.fileno()
        self._closed = False  # set, under _fd_lock, once the descriptor is closed
        self._fd_lock = threading.Lock()
        self._login_by = self.connected_at + self.settings.login_timeout
        self.evicted = False

    def _open(self) -> bool:
        """A session slot and the TLS handshake (if configured); False if the session must end.

        The slot comes first, so a connection still in its handshake counts
        against the session limits; a refused one still gets its ``421``
        over TLS, and holds no slot meanwhile.
        """
        settings = self.settings
        sock = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if settings.proxy_protocol:  # the client's address, from the balancer's header
            peer = (self.ip, int(self.client_address[1]))
            source = client_address(sock, peer, Networks(settings.proxy_trusted))
            if source is None:
                return False
            self.ip, self.peer = source[0], f"{source[0]}:{source[1]}"
            self.logins.ip = self.ip
        refused = self.server.limiter.acquire(self.ip)
        self._has_slot = refused is None
        if self.server.tls is not None:
            sock.settimeout(min(settings.request_timeout, settings.login_timeout))
            try:
                sock = self.server.tls.wrap_socket(sock, server_side=True)
            except (OSError, ValueError) as exc:
                with self._fd_lock:
                    self._closed = True  # the failed handshake closed the descriptor
                log.info("TLS handshake with %s failed: %s", self.peer, exc)
                return False
            self.request = sock
        self._deadlines = deadlines = Deadlines(
            settings.idle_timeout,
            settings.request_timeout,
            settings.stall_timeout,
            settings.min_transfer_rate,
        )
        self.channel = Channel(sock, deadlines=deadlines)
        if refused is not None:
            log.warning("refused %s: %s", self.peer, refused)
            self._try_send(error("error", ProtocolError(ErrorCode.TOO_MANY_SESSIONS, refused)))
            return False
        return True

    def finish(self) -> None:
        self.pipeline.close()
        if self._has_slot:
            self.server.limiter.release(self.ip)
            self._has_slot = False
        if self._user_slot is not None:
            self.server.shared.user_sessions.release(self._user_slot)
            self._user_slot = None
        if self.request is not None:
            with self._fd_lock:  # no shutdown by number once the number may be reused
                self._closed = True
                self.request.close()

    def interrupt(self) -> None:
        """End this session from another thread (server shutdown).

        Its next read fails, and a transfer stops at its next chunk (also
        out of a bandwidth-limit pause); an upload cleans up after itself.
        """
        self._cancelled.set()
        self._shutdown(socket.SHUT_RDWR)

    def evict(self) -> None:
        """Close this session, not logged in yet, to make room (from another thread).

        Its thread wakes from its read, tells the client why (error 421) and ends.
        """
        if self.user is not None or self.evicted:
            return
        self.evicted = True
        # Over plain TCP the reply can still be sent; over TLS nothing more is.
        self._shutdown(socket.SHUT_RD if self.server.tls is None else socket.SHUT_RDWR)

    def _shutdown(self, how: int) -> None:
        """``shutdown(how)`` on the connection, from another thread.

        By its descriptor number: during a TLS handshake ``self.request`` is
        the plain socket the handshake detached, and shutting the TLS socket
        down would also drop its TLS state under the reading thread.
        """
        with self._fd_lock, contextlib.suppress(OSError):
            if self._closed:
                return
            view = socket.socket(fileno=self._fileno)
            try:
                view.shutdown(how)
            finally:
                view.detach()  # the session's thread still owns the descriptor

    def _wait(self, seconds: float) -> None:
        """Sleep ``seconds`` (0: only look), raising if the session is being closed meanwhile."""
        if self._cancelled.is_set() if seconds <= 0 else self._cancelled.wait(seconds):
            raise ConnectionAbortedError("session closed by the server")

    def meter(self, direction: str, rate: int | None, virtual: str) -> Meter:
        """The per-piece callback of a transfer of ``virtual`` (counts, rate limit, shutdown)."""
        pace = pacer(self.server.bandwidth, self.user_account.name, direction, rate, self._wait)
        meter = Meter(self._cancelled, pace)
        self.activity.metered(direction, meter, virtual)
        return meter

    @property
    def storage(self) -> Storage:
        """The logged-in user's files (the dispatcher guarantees a login first)."""
        assert self._storage is not None
        return self._storage

    @property
    def user_account(self) -> User:
        """The logged-in user (the dispatcher guarantees a login first)."""
        assert self.user is not None
        return self.user

    def _try_send(self, message: Message) -> None:
        """Send a last message before closing, if the client can still read it as one."""
        self.channel.send_last(message)

    # -- logging -------------------------------------------------------------

    def _audit(self, action: str, **fields: object) -> None:
        self.server.audit(action, user=self.user_account.name, ip=self.ip, **fields)

    def log_failed(
        self, kind: str, virtual: str, moved: int, started: float, exc: BaseException
    ) -> None:
        """Audit a failed transfer with the bytes that moved before it failed."""
        self.log_transfer(kind, virtual, moved, started, "", str(exc) or type(exc).__name__)

    def log_transfer(
        self, kind: str, virtual: str, size: int, started: float, hexdigest: str, outcome: str
    ) -> None:
        """Audit a transfer: its path, bytes, seconds, digest and outcome."""
        self._audit(
            kind,
            path=virtual,
            bytes=size,
            seconds=round(time.monotonic() - started, 3),
            blake3=hexdigest or None,
            outcome=outcome,
        )


class Meter:
    """The per-piece callback of one transfer.

    It counts the bytes moved, applies the user's rate limit, and stops the
    transfer when the session is cancelled.
    """

    def __init__(self, cancelled: threading.Event, pace: Progress | None) -> None:
        self.moved = 0
        self._cancelled = cancelled
        self._pace = pace

    def __call__(self, count: int) -> None:
        self.moved += count
        if self._cancelled.is_set():
            raise ConnectionAbortedError("session closed by the server")
        if self._pace is not None:
            self._pace(count)
